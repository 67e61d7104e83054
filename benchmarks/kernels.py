"""Time and peak memory of the kernels against torch SDPA with a sliding-window mask (and fla's chunk_gla).

Cases, each at every length, forward and forward+backward:
  swa   kernels.sliding_window_attention (Triton on CUDA, the PyTorch reference on CPU)
  gla   kernels.chunk_gated_linear_attention (same dispatch)
  sdpa  torch.nn.functional.scaled_dot_product_attention with a boolean window mask, the same heads (GQA) and window
  fla   fla.ops.gla.chunk_gla, only where flash-linear-attention is importable
Ratios (sdpa / ours, fla / ours) come from one run of this script. On CUDA every case runs in this process (peak =
growth of the allocator's peak); on CPU each runs in a fresh subprocess (peak = growth of the peak resident set).
A case that runs out of memory is reported as such.

    python benchmarks/kernels.py                          # CUDA: 4k ... 64k, bf16, Triton kernels
    python benchmarks/kernels.py --lengths 1024 2048      # CPU: PyTorch references vs SDPA, fp32

Writes benchmarks/results/kernels.{json,md}.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

DEFAULT_LENGTHS = [4096, 8192, 16384, 32768, 65536]


@dataclass
class KernelBenchConfig:
    lengths: list[int]
    window: int = 4096
    batch: int = 1
    heads: int = 16
    kv_heads: int = 4
    head_dim: int = 128
    gla_heads: int = 4
    gla_key_dim: int = 128
    gla_value_dim: int = 256
    repeats: int = 3
    device: str = "cpu"
    dtype: str = "float32"


def case_inputs(config: KernelBenchConfig, op: str, length: int):
    import torch

    device, dtype = torch.device(config.device), getattr(torch, config.dtype)
    gen = torch.Generator(device=device).manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device=device, dtype=dtype).requires_grad_()

    B, T = config.batch, length
    if op in ("swa", "sdpa"):
        return [randn(B, T, config.heads, config.head_dim), randn(B, T, config.kv_heads, config.head_dim),
                randn(B, T, config.kv_heads, config.head_dim)]
    H, K, V = config.gla_heads, config.gla_key_dim, config.gla_value_dim
    g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, K, generator=gen, device=device)) / 16
    return [randn(B, T, H, K), randn(B, T, H, K), randn(B, T, H, V), g.requires_grad_()]


def case_function(config: KernelBenchConfig, impl: str):
    import torch

    if impl == "swa":
        from kernels import sliding_window_attention

        return lambda q, k, v: sliding_window_attention(q, k, v, config.window)
    if impl == "gla":
        from kernels import chunk_gated_linear_attention

        return lambda q, k, v, g: chunk_gated_linear_attention(q, k, v, g)[0]
    if impl == "fla":
        from fla.ops.gla import chunk_gla

        return lambda q, k, v, g: chunk_gla(q, k, v, g)[0]

    def sdpa(q, k, v):
        T = q.shape[1]
        i = torch.arange(T, device=q.device)
        mask = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - config.window)
        o = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, enable_gqa=True
        )
        return o.transpose(1, 2)

    return sdpa


def measure(config: KernelBenchConfig, impl: str, length: int, mode: str) -> dict:
    """Median wall time over `repeats` runs after one warm-up, and the peak memory growth of one run."""
    import torch

    cuda = config.device == "cuda"
    op = "gla" if impl in ("gla", "fla") else ("swa" if impl == "swa" else "sdpa")
    result = {"impl": impl, "length": length, "mode": mode, "ms": None, "peak_mib": None, "error": None}
    try:
        inputs = case_inputs(config, op, length)
        fn = case_function(config, impl)

        def run():
            o = fn(*inputs)
            if mode == "fwd+bwd":
                o.backward(torch.ones_like(o))
            if cuda:
                torch.cuda.synchronize()

        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = rss_bytes()
        run()  # warm-up (compiles the Triton kernels), and the run whose peak is reported
        peak = torch.cuda.max_memory_allocated() - base if cuda else peak_rss_bytes() - base
        times = []
        for _ in range(config.repeats):
            for x in inputs:
                x.grad = None
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1000)
        result.update(ms=statistics.median(times), peak_mib=max(0, peak) / 2**20)
    except torch.OutOfMemoryError:
        result["error"] = "out of memory"
    finally:
        if cuda:
            torch.cuda.empty_cache()
    return result


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def implementations() -> list[str]:
    return ["swa", "sdpa", "gla"] + (["fla"] if importlib.util.find_spec("fla") is not None else [])


def run_all(config: KernelBenchConfig) -> list[dict]:
    rows = []
    for length in config.lengths:
        for mode in ("fwd", "fwd+bwd"):
            for impl in implementations():
                if config.device == "cuda":
                    row = measure(config, impl, length, mode)
                else:
                    cmd = [sys.executable, __file__, "--measure", impl, str(length), mode,
                           "--config-json", json.dumps(asdict(config))]
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                    row = json.loads(out.strip().splitlines()[-1])
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def ratio(baseline: dict | None, ours: dict, key: str) -> str:
    if baseline is None:
        return "-"
    if baseline["error"]:
        return baseline["error"]
    if ours[key] is None or not ours[key]:
        return "-"
    return f"{baseline[key] / ours[key]:.2f}x"


def fmt(row: dict | None, key: str) -> str:
    if row is None:
        return "-"
    return row["error"] or f"{row[key]:.1f}"


def write(rows: list[dict], config: KernelBenchConfig, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "kernels.json").write_text(json.dumps({"config": asdict(config), "rows": rows}, indent=2))
    by = {(r["impl"], r["length"], r["mode"]): r for r in rows}
    path = "Triton" if config.device == "cuda" else "PyTorch reference"
    lines = [
        f"# Kernels vs SDPA with a window mask ({config.device}, {config.dtype}, {path} path)",
        "",
        f"Sliding window: batch {config.batch}, {config.heads} query / {config.kv_heads} kv heads, head dim "
        f"{config.head_dim}, window {config.window}. GLA: {config.gla_heads} heads, key dim {config.gla_key_dim}, "
        f"value dim {config.gla_value_dim}. SDPA runs with the sliding-window attention shapes. Ratios > 1 mean "
        f"ours is faster / smaller; median of {config.repeats} runs.",
        "",
        "| op | length | mode | ours ms | SDPA ms | SDPA / ours | ours peak MiB | SDPA peak MiB | SDPA / ours "
        "| fla ms | fla / ours |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for op in ("swa", "gla"):
        for length in config.lengths:
            for mode in ("fwd", "fwd+bwd"):
                ours, sdpa = by[(op, length, mode)], by[(("sdpa", length, mode))]
                fla = by.get(("fla", length, mode)) if op == "gla" else None
                lines.append(
                    f"| {op} | {length} | {mode} | {fmt(ours, 'ms')} | {fmt(sdpa, 'ms')} | {ratio(sdpa, ours, 'ms')} | "
                    f"{fmt(ours, 'peak_mib')} | {fmt(sdpa, 'peak_mib')} | {ratio(sdpa, ours, 'peak_mib')} | "
                    f"{fmt(fla, 'ms')} | {ratio(fla, ours, 'ms')} |"
                )
    (out_dir / "kernels.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    import torch

    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=DEFAULT_LENGTHS if cuda else [1024, 2048])
    parser.add_argument("--window", type=int, default=4096 if cuda else 512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--dtype", default="bfloat16" if cuda else "float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--measure", nargs=3, metavar=("IMPL", "LENGTH", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--config-json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        config = KernelBenchConfig(**json.loads(args.config_json))
        print(json.dumps(measure(config, args.measure[0], int(args.measure[1]), args.measure[2])))
        return
    config = KernelBenchConfig(
        lengths=args.lengths, window=args.window, repeats=args.repeats, device=args.device, dtype=args.dtype
    )
    write(run_all(config), config, args.output)
    print((args.output / "kernels.md").read_text())


if __name__ == "__main__":
    main()
