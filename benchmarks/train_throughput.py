"""Training throughput (tokens/s) of the sliding-window student against a same-size self-attention Llama.

Both models share one shape (hidden size, layers, heads, vocabulary); the student attends to the last `--window`
tokens, the Llama to everything. For each sequence length both are trained side by side in this one process, through
the same DeepSpeed engine settings the training job uses (ZeRO-1, torch AdamW, precision `auto`: bf16 where the
hardware has it): one warm-up step, then `--steps` timed optimizer steps on one batch-1 row of random tokens, the
two models' steps interleaved so that a change in machine load hits both alike; the best step gives tokens/s. The
ratio column is student / Llama tokens/s: above 1 the student trains faster.

    python benchmarks/train_throughput.py                                   # CPU: 512 ... 8192 tokens, W = 256
    python benchmarks/train_throughput.py --lengths 8192 16384 32768 --window 4096 --hidden-size 1024 --layers 8

Writes benchmarks/results/train_throughput.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class BenchConfig:
    lengths: list[int]
    window: int = 256
    hidden_size: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    vocab_size: int = 4096
    steps: int = 4


def build_models(config: BenchConfig, length: int):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from students.swa import sliding_window_config, use_sliding_window_kernel

    shape = dict(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=4 * config.hidden_size,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.kv_heads,
        head_dim=config.hidden_size // config.heads, max_position_embeddings=max(length, 4096),
    )
    torch.manual_seed(0)
    student = AutoModelForCausalLM.from_config(sliding_window_config(config.window, **shape))
    if torch.cuda.is_available():  # as the training job does: the Triton kernel through AttentionInterface
        use_sliding_window_kernel(student)
    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(**shape))
    return {"swa": student, "llama": llama}


def engine_for(model, precision: str = "auto"):
    import deepspeed

    from students.train import build_optimizer
    from students.train_config import TrainConfig, deepspeed_config

    train_config = TrainConfig(engine={"precision": precision})
    engine, _, _, _ = deepspeed.initialize(
        model=model.train(), optimizer=build_optimizer(model, train_config.optim),
        config=deepspeed_config(train_config, world_size=1),
    )
    return engine


def timed_step(engine, ids) -> float:
    """Seconds for one optimizer step (forward, loss, backward, update) on the row `ids`."""
    import torch
    import torch.nn.functional as F

    start = time.perf_counter()
    logits = engine(input_ids=ids).logits
    loss = F.cross_entropy(logits[0, :-1].float(), ids[0, 1:])
    engine.backward(loss)
    engine.step()
    if ids.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def best_step_seconds(engines: dict, ids, steps: int) -> dict[str, float]:
    """Best step time of each engine after a warm-up step, their steps interleaved so that a change in machine load
    hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in engines}
    for step in range(steps + 1):
        for name, engine in engines.items():
            seconds = timed_step(engine, ids.to(engine.device))
            if step > 0:  # the first step pays for allocation and kernel selection
                times[name].append(seconds)
    return {name: min(t) for name, t in times.items()}


def measure(models: dict, length: int, config: BenchConfig) -> dict[str, float]:
    import torch

    engines = {name: engine_for(model) for name, model in models.items()}
    ids = torch.randint(0, config.vocab_size, (1, length), generator=torch.Generator().manual_seed(length))
    return best_step_seconds(engines, ids, config.steps)


def run(config: BenchConfig) -> list[dict]:
    from students.train import setup_distributed

    setup_distributed()
    rows = []
    for length in config.lengths:
        step_s = measure(build_models(config, length), length, config)
        row = {
            "length": length,
            "swa_tokens_per_s": length / step_s["swa"],
            "llama_tokens_per_s": length / step_s["llama"],
            "swa_step_s": step_s["swa"],
            "llama_step_s": step_s["llama"],
            "ratio": step_s["llama"] / step_s["swa"],
        }
        rows.append(row)
        print(f"{length:>7} tokens  swa {row['swa_tokens_per_s']:>9.0f} tok/s  llama {row['llama_tokens_per_s']:>9.0f} "
              f"tok/s  ratio {row['ratio']:.2f}", flush=True)
    return rows


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"


def write_results(config: BenchConfig, rows: list[dict], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    device = device_name()
    (out_dir / "train_throughput.json").write_text(
        json.dumps({"config": asdict(config), "device": device, "rows": rows}, indent=2) + "\n"
    )
    lines = [
        f"# Training throughput: SWA student (window {config.window}) vs same-size Llama",
        "",
        f"Device: {device}. Shape: hidden {config.hidden_size}, {config.layers} layers, {config.heads} heads "
        f"({config.kv_heads} KV), vocabulary {config.vocab_size}. Best of {config.steps} DeepSpeed optimizer steps "
        "on one batch-1 row; ratio = SWA / Llama tokens/s.",
        "",
        "| tokens per row | SWA tokens/s | Llama tokens/s | SWA step (s) | Llama step (s) | ratio |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['length']} | {r['swa_tokens_per_s']:.0f} | {r['llama_tokens_per_s']:.0f} | {r['swa_step_s']:.3f} "
            f"| {r['llama_step_s']:.3f} | {r['ratio']:.2f} |"
        )
    (out_dir / "train_throughput.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192])
    defaults = BenchConfig(lengths=[])
    for name in ("window", "hidden_size", "layers", "heads", "kv_heads", "vocab_size", "steps"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    config = BenchConfig(**{k: v for k, v in vars(args).items() if k != "output"})
    write_results(config, run(config), args.output)
    print(f"wrote {args.output / 'train_throughput.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
