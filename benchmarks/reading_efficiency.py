"""Time and peak memory of Smooth Reading (EMR, sliding-window student) against one-round self-attention reading.

Both readers are built from one config (hidden size, layers, heads, vocabulary): the student is
`SlidingWindowForCausalLM` with window W, read chunk by chunk with `students.reading.smooth_read` (chunks of
W/2 tokens, each followed by a summary of `--summary-tokens`); the reference is `LlamaForCausalLM` of the same size,
read with `one_round_read` (the whole context in one prefill, one summary, the answer). Weights are random: speed and
memory do not depend on them, and every summary is made to run to its full length so both readers generate a known
number of tokens.

Each (reader, length) is measured in a fresh subprocess so that peak memory is its own: on CUDA the allocator's
peak, on CPU the growth of the process's peak resident set over its size before reading. The cache each reader
holds at the end (ring buffer vs growing KV cache) is reported exactly.

    python benchmarks/reading_efficiency.py --lengths 4096 8192 16384 --window 1024      # a CPU run
    python benchmarks/reading_efficiency.py                                              # 4k ... 64k, W = 4096

Writes benchmarks/results/reading_efficiency.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_LENGTHS = [4096, 8192, 16384, 32768, 65536]


@dataclass
class BenchConfig:
    lengths: list[int]
    window: int = 4096
    chunk_tokens: int = 0  # 0: window // 2
    hidden_size: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    summary_tokens: int = 32
    answer_tokens: int = 8
    device: str = "cpu"
    dtype: str = "float32"

    @property
    def chunk(self) -> int:
        return self.chunk_tokens or self.window // 2


def haystack_text() -> str:
    """Real prose to read: the shipped HotpotQA paragraphs, joined."""
    questions = json.loads((REPO / "pipeline" / "data" / "hotpotqa_distractor_dev100.json").read_text())
    paragraphs = []
    for q in questions:
        paragraphs.append("".join(q["para_a"]))
        paragraphs.append("".join(q["para_b"]))
        paragraphs.extend("".join(sentences) for _title, sentences, *_ in q["distractors"])
    return "\n\n".join(paragraphs)


def build(folder: Path, config: BenchConfig) -> None:
    """Tokenizer, student and same-size Llama, saved once so that every measurement reads the same weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from students import SlidingWindowConfig, SlidingWindowForCausalLM
    from students.tokenizer import train_stream_tokenizer

    text = haystack_text()
    tokenizer = train_stream_tokenizer(text.split("\n\n"), vocab_size=2048)
    shape = dict(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=4 * config.hidden_size,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.kv_heads,
        head_dim=config.hidden_size // config.heads, max_position_embeddings=2 * max(config.lengths),
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    SlidingWindowForCausalLM(SlidingWindowConfig(window=config.window, **shape)).save_pretrained(folder / "student")
    LlamaForCausalLM(LlamaConfig(**shape)).save_pretrained(folder / "llama")
    tokenizer.save_pretrained(folder / "tokenizer")
    (folder / "haystack.txt").write_text(text)


def context_ids(tokenizer, text: str, length: int) -> list[int]:
    """`length` tokens of the haystack (repeated as needed)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = (ids * (length // len(ids) + 1))[:length]
    return ids


def measure(folder: Path, config: BenchConfig, reader: str, length: int) -> dict:
    """One reading in this process: wall time, peak memory growth, cache size, tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import students  # noqa: F401  (registers the student classes with AutoModelForCausalLM)
    from students.reading import one_round_read, smooth_read

    device, dtype = torch.device(config.device), getattr(torch, config.dtype)
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    model = AutoModelForCausalLM.from_pretrained(folder / ("student" if reader == "emr" else "llama"), dtype=dtype)
    model.to(device).eval()
    # Random weights would sometimes pick an action token; forbidding the markers makes every summary run its full
    # length and the answer its full length, so both readers generate a fixed, known number of tokens.
    forbidden = [tokenizer.convert_tokens_to_ids(t) for t in ("<READ>", "<STOP>", "<end>")]
    forbidden = torch.tensor(forbidden, device=device)
    model.lm_head.register_forward_hook(lambda _module, _inputs, logits: logits.index_fill(-1, forbidden, -1e4))

    ids = context_ids(tokenizer, (folder / "haystack.txt").read_text(), length)
    question = "What is the special magic number mentioned in the text?"
    # Chunks cut on token boundaries so that every chunk is exactly `chunk` tokens; decoding then re-encoding can
    # shift a token or two, which the counts below record.
    chunks = [tokenizer.decode(ids[s : s + config.chunk]) for s in range(0, len(ids), config.chunk)]
    context = tokenizer.decode(ids)

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    start = time.perf_counter()
    if reader == "emr":
        result = smooth_read(model, tokenizer, question, chunks, config.summary_tokens, config.answer_tokens)
    else:
        result = one_round_read(model, tokenizer, question, context, config.summary_tokens, config.answer_tokens)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {
        "reader": reader, "length": length, "seconds": seconds, "peak_bytes": max(0, peak),
        "cache_bytes": result.rounds[-1].cache_bytes, "rounds": len(result.rounds),
        "tokens_fed": result.tokens_fed, "tokens_generated": result.tokens_generated,
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_all(config: BenchConfig, out_dir: Path) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="reading-efficiency-") as tmp:
        folder = Path(tmp)
        build(folder, config)
        for length in config.lengths:
            pair = {}
            for reader in ("emr", "one-round"):
                cmd = [sys.executable, __file__, "--measure", reader, str(length), "--folder", str(folder),
                       "--config-json", json.dumps(asdict(config))]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                pair[reader] = json.loads(out.strip().splitlines()[-1])
                print(f"{reader:>9} {length:>6} tokens: {pair[reader]['seconds']:.2f} s, "
                      f"peak +{pair[reader]['peak_bytes'] / 2**20:.1f} MiB", flush=True)
            emr, one = pair["emr"], pair["one-round"]
            rows.append({
                "length": length, "window": config.window, "chunk_tokens": config.chunk,
                "emr_seconds": round(emr["seconds"], 3), "one_round_seconds": round(one["seconds"], 3),
                "speedup": round(one["seconds"] / emr["seconds"], 3),
                "emr_peak_mib": round(emr["peak_bytes"] / 2**20, 2),
                "one_round_peak_mib": round(one["peak_bytes"] / 2**20, 2),
                "memory_ratio": round(one["peak_bytes"] / emr["peak_bytes"], 3) if emr["peak_bytes"] else None,
                "emr_cache_mib": round(emr["cache_bytes"] / 2**20, 3),
                "one_round_cache_mib": round(one["cache_bytes"] / 2**20, 3),
                "cache_ratio": round(one["cache_bytes"] / emr["cache_bytes"], 3),
                "emr_rounds": emr["rounds"], "emr_tokens_generated": emr["tokens_generated"],
                "one_round_tokens_generated": one["tokens_generated"],
            })
    write(rows, config, out_dir)
    return rows


def write(rows: list[dict], config: BenchConfig, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "reading_efficiency.json").write_text(json.dumps({"config": asdict(config), "rows": rows}, indent=2))
    lines = [
        f"# Reading efficiency: EMR (SWA student, W={config.window}, chunks of {config.chunk}) vs one-round "
        f"self-attention (Llama), same size (hidden {config.hidden_size}, {config.layers} layers), {config.device}",
        "",
        "| length | EMR s | one-round s | speed-up (one-round / EMR) | EMR peak MiB | one-round peak MiB | "
        "memory ratio | EMR cache MiB | one-round cache MiB | cache ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['length']} | {r['emr_seconds']:.2f} | {r['one_round_seconds']:.2f} | {r['speedup']:.2f}x | "
            f"{r['emr_peak_mib']:.1f} | {r['one_round_peak_mib']:.1f} | "
            f"{r['memory_ratio'] if r['memory_ratio'] is not None else '-'}x | {r['emr_cache_mib']:.2f} | "
            f"{r['one_round_cache_mib']:.2f} | {r['cache_ratio']:.2f}x |"
        )
    lines += ["", f"Summaries of {config.summary_tokens} tokens per round, answers of {config.answer_tokens} tokens; "
              "EMR writes one summary per chunk, one-round writes one in all. Peak = growth over the size before "
              "reading (CUDA allocator peak on GPU, peak resident set on CPU)."]
    (out_dir / "reading_efficiency.md").write_text("\n".join(lines) + "\n")

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    lengths = [r["length"] for r in rows]
    ax_t.plot(lengths, [r["emr_seconds"] for r in rows], marker="o", label="EMR (SWA student)")
    ax_t.plot(lengths, [r["one_round_seconds"] for r in rows], marker="o", label="one-round (Llama)")
    ax_t.set_ylabel("seconds")
    ax_m.plot(lengths, [r["emr_peak_mib"] for r in rows], marker="o", label="EMR peak")
    ax_m.plot(lengths, [r["one_round_peak_mib"] for r in rows], marker="o", label="one-round peak")
    ax_m.plot(lengths, [r["emr_cache_mib"] for r in rows], linestyle="--", label="EMR cache")
    ax_m.plot(lengths, [r["one_round_cache_mib"] for r in rows], linestyle="--", label="one-round cache")
    ax_m.set_ylabel("MiB")
    for ax in (ax_t, ax_m):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("context length (tokens)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "reading_efficiency.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=DEFAULT_LENGTHS)
    parser.add_argument("--window", type=int, default=4096)
    parser.add_argument("--chunk-tokens", type=int, default=0)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--summary-tokens", type=int, default=32)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--measure", nargs=2, metavar=("READER", "LENGTH"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        config = BenchConfig(**json.loads(args.config_json))
        print(json.dumps(measure(args.folder, config, args.measure[0], int(args.measure[1]))))
        return
    config = BenchConfig(
        lengths=args.lengths, window=args.window, chunk_tokens=args.chunk_tokens, hidden_size=args.hidden_size,
        layers=args.layers, summary_tokens=args.summary_tokens, device=args.device, dtype=args.dtype,
    )
    if config.chunk > config.window // 2:
        parser.error(f"--chunk-tokens {config.chunk} is above half the window ({config.window // 2})")
    run_all(config, args.output)
    print((args.output / "reading_efficiency.md").read_text())


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    main()
