"""bf16 against fp32 on this machine, for the demo's SmolLM2 sliding-window student: is `auto`'s choice the fast one?

`auto` (pipeline.precision.native_bf16) picks bf16 wherever the hardware has bf16 instructions: a CUDA GPU with
bf16, or a CPU with AVX512-BF16 or AMX. This measures, side by side in one run, the two things `auto` decides:

  train  DeepSpeed optimizer steps (the training job's engine settings, ZeRO-1, torch AdamW) on one packed row of
         `--seq-len` random tokens, precision fp32 against bf16 (fp32 master weights); the two engines' steps
         interleaved, so that a change in machine load hits both alike; best step of `--steps` after a warm-up.
  read   vLLM generation on the student's reading engine (`students.reading_vllm.vllm_engine`), float32 against
         bfloat16, one engine at a time: `--docs` prompts of `--prompt-tokens` random ids, first prefill only
         (one token each), then `--new-tokens` greedy tokens each on fresh prompts (no prefix-cache hits).

The student is SmolLM2-135M-Instruct (`smooth-reading prepare-teacher`) converted to sliding-window attention
(`--window`), every weight kept. The ratio column is bf16 / fp32 throughput: above 1, bf16 is the faster.

    python benchmarks/precision_throughput.py                  # train at 3,072 tokens, read 32 x 256 + 32 tokens

Writes benchmarks/results/precision_throughput.{json,md} (or `--output`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.train_throughput import best_step_seconds, device_name, engine_for  # noqa: E402


@dataclass
class PrecisionBenchConfig:
    window: int = 512
    seq_len: int = 3072  # the demo's packed rows
    steps: int = 4
    docs: int = 32
    prompt_tokens: int = 256  # one EMR chunk
    new_tokens: int = 32  # about one compact summary


def hardware() -> dict:
    """The device as the other benchmarks name it, and the instructions `auto` looks for."""
    import torch

    if torch.cuda.is_available():
        return {"device": device_name(), "cuda_bf16": torch.cuda.is_bf16_supported()}
    return {"device": device_name(), "avx512_bf16": torch.cpu._is_avx512_bf16_supported(),
            "amx": torch.cpu._is_amx_tile_supported()}


def student(config: PrecisionBenchConfig):
    from transformers import AutoTokenizer

    from jobs.teacher_models import prepare_smollm2
    from students.convert import convert_to_sliding_window

    parent = prepare_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(parent)
    return convert_to_sliding_window(parent, config.window, tokenizer).float(), tokenizer


def measure_training(model, config: PrecisionBenchConfig) -> dict[str, float]:
    import copy

    import torch

    from students.train import setup_distributed

    setup_distributed()
    engines = {precision: engine_for(copy.deepcopy(model), precision) for precision in ("fp32", "bf16")}
    ids = torch.randint(0, model.config.vocab_size, (1, config.seq_len), generator=torch.Generator().manual_seed(0))
    return {name: config.seq_len / seconds for name, seconds in best_step_seconds(engines, ids, config.steps).items()}


def measure_reading(folder: Path, vocab_size: int, config: PrecisionBenchConfig) -> dict[str, dict[str, float]]:
    import torch
    from vllm import SamplingParams

    from students.reading_vllm import close_engine, vllm_engine

    def prompts(seed: int) -> list[dict]:
        generator = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, vocab_size, (config.docs, config.prompt_tokens), generator=generator)
        return [{"prompt_token_ids": row.tolist()} for row in ids]

    def timed(llm, seed: int, new_tokens: int) -> float:
        params = SamplingParams(max_tokens=new_tokens, temperature=0.0, ignore_eos=True)
        batch = prompts(seed)  # made before the clock starts: only the engine is timed
        start = time.perf_counter()
        llm.generate(batch, params, use_tqdm=False)
        return time.perf_counter() - start

    out = {}
    for dtype in ("float32", "bfloat16"):
        llm = vllm_engine(str(folder), dtype=dtype)
        timed(llm, 0, 2)  # warm-up
        prefill_s = timed(llm, 1, 1)
        generate_s = timed(llm, 2, config.new_tokens)
        close_engine(llm)
        out[dtype] = {
            "prefill_tokens_per_s": config.docs * config.prompt_tokens / prefill_s,
            "decode_tokens_per_s": config.docs * (config.new_tokens - 1) / max(generate_s - prefill_s, 1e-9),
            "read_tokens_per_s": config.docs * (config.prompt_tokens + config.new_tokens) / generate_s,
        }
        print(f"read {dtype}: {out[dtype]}", flush=True)
    return out


def write_results(config: PrecisionBenchConfig, facts: dict, train: dict, read: dict, out_dir: Path) -> None:
    from pipeline.precision import resolve_dtype

    rows = [("train: DeepSpeed step tokens/s", train["fp32"], train["bf16"])]
    for key, label in (("prefill_tokens_per_s", "read: vLLM prefill tokens/s"),
                       ("decode_tokens_per_s", "read: vLLM decode tokens/s"),
                       ("read_tokens_per_s", "read: vLLM prompt + generated tokens/s")):
        rows.append((label, read["float32"][key], read["bfloat16"][key]))
    auto = resolve_dtype("auto")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "precision_throughput.json").write_text(json.dumps(
        {"config": asdict(config), "hardware": facts, "auto": auto, "train": train, "read": read,
         "ratios_bf16_over_fp32": {label: bf16 / fp32 for label, fp32, bf16 in rows}}, indent=2) + "\n")
    lines = [
        f"# bf16 against fp32: SmolLM2-135M as a sliding-window student (window {config.window})", "",
        f"Hardware: {facts}. `auto` picks {auto} here. Training: best of {config.steps} DeepSpeed steps on one "
        f"{config.seq_len}-token row, the two precisions interleaved. Reading: vLLM, {config.docs} prompts of "
        f"{config.prompt_tokens} tokens, {config.new_tokens} new tokens each.", "",
        "| measure | fp32 | bf16 | bf16 / fp32 |", "|---|---:|---:|---:|",
    ]
    lines += [f"| {label} | {fp32:.0f} | {bf16:.0f} | {bf16 / fp32:.2f} |" for label, fp32, bf16 in rows]
    (out_dir / "precision_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = PrecisionBenchConfig()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    config = PrecisionBenchConfig(**{k: v for k, v in vars(args).items() if k != "output"})
    facts = hardware()
    model, tokenizer = student(config)
    train = measure_training(model, config)
    with tempfile.TemporaryDirectory(prefix="precision-bench-") as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        vocab_size = model.config.vocab_size
        del model
        read = measure_reading(Path(folder), vocab_size, config)
    write_results(config, facts, train, read, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
