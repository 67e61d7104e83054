"""Reading efficiency: Smooth Reading (EMR) by a sliding-window student against its parent's one-round reading.

The parent is a self-attention checkpoint (default: SmolLM2-135M-Instruct, prepared by `smooth-reading
prepare-teacher`); the student is the same network converted to sliding-window attention (`--window`, a stock
Mistral). Both get the stream tokens. Four readers, each at every length:

  emr/transformers        student, `students.reading.smooth_read`, one document at a time (batch 1)
  emr/vllm                student, `students.reading_vllm.smooth_read_batch`, `--docs` documents batched
  one-round/transformers  parent, `one_round_read`: the whole context in one prefill, one summary, the answer
  one-round/vllm          parent, `smooth_read_batch` with the whole context as the one chunk, batched

Reported per (reader, length): latency (wall time until every document of the run is answered), seconds per
document and documents per second (throughput), peak memory and tokens generated. The weights are real but the student is untrained: its
summaries run to `--summary-tokens` (the stream markers are new tokens it never picks), so every reader writes a known
number of tokens. Each measurement runs in a fresh subprocess: on CPU the peak is the growth of the peak resident set
of the process (transformers) or the summed peak resident sets of vLLM's engine processes, on CUDA the allocator's
peak (transformers).
vLLM engine start-up is timed apart and not counted.

    python benchmarks/reading_efficiency.py --lengths 8192 16384 32768       # SmolLM2 parent, window 512

Writes benchmarks/results/reading_efficiency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

READERS = ("emr/transformers", "emr/vllm", "one-round/transformers", "one-round/vllm")
QUESTION = "What is the special magic number mentioned in the text?"


@dataclass
class BenchConfig:
    lengths: list[int] = field(default_factory=lambda: [8192, 16384, 32768])
    parent: str = ""  # a Llama / Mistral / Qwen2 folder; "" = the prepared SmolLM2-135M-Instruct
    window: int = 512
    chunk_tokens: int = 0  # 0: window // 2
    summary_tokens: int = 24
    answer_tokens: int = 8
    docs: int = 8  # documents per batched (vLLM) measurement; batch-1 readers read one
    dtype: str = "bfloat16"
    kv_cache_gb: float = 4.0
    readers: list[str] = field(default_factory=lambda: list(READERS))

    @property
    def chunk(self) -> int:
        return self.chunk_tokens or self.window // 2


def haystack_text() -> str:
    questions = json.loads((REPO / "pipeline" / "data" / "hotpotqa_distractor_dev100.json").read_text())
    paragraphs = []
    for q in questions:
        paragraphs += ["".join(q["para_a"]), "".join(q["para_b"])]
        paragraphs += ["".join(sentences) for _title, sentences, *_ in q["distractors"]]
    return "\n\n".join(paragraphs)


def build(folder: Path, config: BenchConfig) -> None:
    """The parent with the stream tokens, its sliding-window student, both saved with the shared tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jobs.teacher_models import is_prepared, smollm2_dir
    from students.convert import convert_to_sliding_window
    from students.tokenizer import add_stream_tokens

    source = Path(config.parent) if config.parent else smollm2_dir()
    if not config.parent and not is_prepared(source):
        raise SystemExit(f"{source} is not prepared: run `smooth-reading prepare-teacher` first")
    tokenizer = AutoTokenizer.from_pretrained(source)
    add_stream_tokens(tokenizer)
    parent = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16)
    parent.resize_token_embeddings(len(tokenizer))
    student = convert_to_sliding_window(parent, config.window)
    for name, model in (("parent", parent), ("student", student)):
        model.save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)
    (folder / "haystack.txt").write_text(haystack_text())


def documents(tokenizer, text: str, length: int, count: int, chunk: int) -> list[tuple[list[str], str]]:
    """`count` contexts of `length` tokens starting at different places of the haystack: (chunks, whole context)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = ids * (length * (count + 1) // len(ids) + 2)
    docs = []
    for d in range(count):
        piece = ids[d * 997 : d * 997 + length]
        docs.append(([tokenizer.decode(piece[s : s + chunk]) for s in range(0, length, chunk)], tokenizer.decode(piece)))
    return docs


def measure(folder: Path, config: BenchConfig, reader: str, length: int) -> dict:
    """One reader at one length, in this process."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    mode, engine = reader.split("/")
    model_dir = folder / ("student" if mode == "emr" else "parent")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    count = config.docs if engine == "vllm" else 1
    docs = documents(tokenizer, (folder / "haystack.txt").read_text(), length, count, config.chunk)
    work = [(QUESTION, chunks if mode == "emr" else [context]) for chunks, context in docs]
    cuda = torch.cuda.is_available()
    startup = 0.0
    if engine == "vllm":
        from students.reading_vllm import smooth_read_batch, vllm_engine

        begin = time.perf_counter()
        # The parent's KV cache grows with the stream: its engine must hold one whole stream. The student's keeps a
        # window, so any stream length fits.
        longest = {} if mode == "emr" else {"max_model_len": length + 2048}
        llm = vllm_engine(str(model_dir), dtype=config.dtype, kv_cache_gb=config.kv_cache_gb, **longest)
        startup = time.perf_counter() - begin
        base = _rss_bytes()
        start = time.perf_counter()
        results = smooth_read_batch(llm, tokenizer, work, config.summary_tokens, config.answer_tokens)
    else:
        from students.reading import smooth_read

        device = torch.device("cuda" if cuda else "cpu")
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, config.dtype)).to(device).eval()
        with torch.inference_mode():  # touch every weight page first, so the peak below is the reading's own
            model(torch.tensor([[tokenizer.bos_token_id or 0]], device=device))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            _reset_peak_rss()  # loading the weights may have peaked higher than reading will
        base = torch.cuda.memory_allocated() if cuda else _rss_bytes()
        start = time.perf_counter()
        results = [smooth_read(model, tokenizer, q, chunks, config.summary_tokens, config.answer_tokens)
                   for q, chunks in work]
        if cuda:
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if engine == "transformers" and cuda:
        peak = torch.cuda.max_memory_allocated() - base
    elif engine == "transformers":
        peak = _peak_rss_bytes() - base
    else:  # the engine lives in child processes: their peaks (weights and reserved KV cache included), summed
        peak = sum(_peak_rss(pid) for pid in _descendants(os.getpid()))
    return {
        "reader": reader, "length": length, "documents": count, "seconds": seconds, "startup_seconds": startup,
        "seconds_per_document": seconds / count, "documents_per_second": count / seconds, "peak_bytes": max(0, peak),
        "rounds": sum(len(r.rounds) for r in results) / count,
        "tokens_generated": sum(r.tokens_generated for r in results) / count,
        "tokens_prefilled": sum(r.tokens_prefilled for r in results) / count,
        "stream_tokens": sum(len(r.stream_ids) for r in results) / count,
        # The KV cache as the reader's tensors hold it at its largest (transformers readers; vLLM's is its block pool).
        "cache_bytes": max((max(r.cache_bytes, default=0) for r in results), default=0),
    }


def _descendants(pid: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _peak_rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> None:
    """Linux: start the process's peak resident set (VmHWM) again from its current size."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_all(config: BenchConfig, out_dir: Path) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="reading-efficiency-") as tmp:
        folder = Path(tmp)
        build(folder, config)
        for length in config.lengths:
            for reader in config.readers:
                result = folder / "result.json"
                cmd = [sys.executable, __file__, "--measure", reader, str(length), "--folder", str(folder),
                       "--config-json", json.dumps(asdict(config)), "--result", str(result)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{reader} at {length}: failed\n{done.stderr[-3000:]}", flush=True)
                    rows.append({"reader": reader, "length": length, "error": done.stderr.strip().splitlines()[-1]})
                    continue
                row = json.loads(result.read_text())
                rows.append(row)
                print(f"{reader:>22} {length:>6}: {row['seconds_per_document']:.1f} s/doc, "
                      f"{row['documents_per_second']:.4f} doc/s, peak {row['peak_bytes'] / 2**20:.0f} MiB", flush=True)
                write(rows, config, out_dir)
    write(rows, config, out_dir)
    return rows


def write(rows: list[dict], config: BenchConfig, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "reading_efficiency.json").write_text(json.dumps({"config": asdict(config), "rows": rows}, indent=2))
    lines = [
        f"# Reading efficiency: EMR by the SWA student (W={config.window}, chunks of {config.chunk}) vs the parent's "
        f"one-round reading ({config.parent or 'SmolLM2-135M-Instruct'}, {config.dtype})",
        "",
        "| length | reader | documents | latency s | s / document | documents / s | peak MiB | KV cache MiB | rounds | "
        "tokens generated | tokens prefilled | engine start s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['length']} | {r['reader']} | failed: {r['error'][:80]} | | | | | | | | | |")
            continue
        prefilled = f"{r['tokens_prefilled']:.0f}" if r["reader"].endswith("vllm") else "each once"
        lines.append(
            f"| {r['length']} | {r['reader']} | {r['documents']} | {r['seconds']:.1f} | {r['seconds_per_document']:.2f} "
            f"| {r['documents_per_second']:.4f} | {r['peak_bytes'] / 2**20:.0f} | {r.get('cache_bytes', 0) / 2**20:.1f} "
            f"| {r['rounds']:.0f} | "
            f"{r['tokens_generated']:.0f} | {prefilled} | {r['startup_seconds']:.0f} |"
        )
    lines += ["", "Latency: wall time until every document of the run has its answer (one document for the batch-1 "
              "readers, the whole batch for vLLM). Goals (best engine of each side): EMR throughput >= 2x the "
              "parent's one-round throughput; EMR latency <= the parent's.", "",
              "| length | EMR doc/s / one-round doc/s | EMR latency / one-round latency |", "|---:|---:|---:|"]
    for length in config.lengths:
        got = {r["reader"]: r for r in rows if r["length"] == length and "error" not in r}
        emr = [r for k, r in got.items() if k.startswith("emr/")]
        one = [r for k, r in got.items() if k.startswith("one-round/")]
        if emr and one:
            throughput = max(r["documents_per_second"] for r in emr) / max(r["documents_per_second"] for r in one)
            latency = min(r["seconds"] for r in emr) / min(r["seconds"] for r in one)
            lines.append(f"| {length} | {throughput:.2f}x | {latency:.2f}x |")
    lines += ["", "Peak: transformers on CPU = growth of the measuring process's peak resident set while reading (the "
              "peak is reset after loading, Linux clear_refs); vLLM = the summed peak resident sets of the engine's "
              "processes (weights and the reserved KV cache included); transformers on CUDA = allocator peak. KV cache: "
              "the largest size of the reader's cache tensors (transformers readers; 0 for vLLM, whose cache is its "
              "block pool)."]
    (out_dir / "reading_efficiency.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = BenchConfig()
    parser.add_argument("--lengths", type=int, nargs="+", default=defaults.lengths)
    parser.add_argument("--parent", default="", help="self-attention folder (default: the prepared SmolLM2)")
    parser.add_argument("--window", type=int, default=defaults.window)
    parser.add_argument("--chunk-tokens", type=int, default=0)
    parser.add_argument("--summary-tokens", type=int, default=defaults.summary_tokens)
    parser.add_argument("--docs", type=int, default=defaults.docs, help="documents per batched (vLLM) measurement")
    parser.add_argument("--dtype", default=defaults.dtype, choices=["float32", "bfloat16"])
    parser.add_argument("--kv-cache-gb", type=float, default=defaults.kv_cache_gb)
    parser.add_argument("--readers", nargs="+", default=list(READERS), choices=READERS)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--measure", nargs=2, metavar=("READER", "LENGTH"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        config = BenchConfig(**json.loads(args.config_json))
        args.result.write_text(json.dumps(measure(args.folder, config, args.measure[0], int(args.measure[1]))))
        return
    config = BenchConfig(
        lengths=args.lengths, parent=args.parent, window=args.window, chunk_tokens=args.chunk_tokens,
        summary_tokens=args.summary_tokens, docs=args.docs, dtype=args.dtype, kv_cache_gb=args.kv_cache_gb,
        readers=args.readers,
    )
    if config.chunk > config.window // 2:
        parser.error(f"--chunk-tokens {config.chunk} is above half the window ({config.window // 2})")
    run_all(config, args.output)
    print((args.output / "reading_efficiency.md").read_text())


if __name__ == "__main__":
    main()
