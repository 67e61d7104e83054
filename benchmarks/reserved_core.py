"""vLLM's CPU worker with one core reserved for the engine core (vLLM's default) against none (ours on small machines).

Each setting runs in its own process, since the engine's processes read `VLLM_CPU_NUM_OF_RESERVED_CPU` as they start;
the settings alternate (reserved, none, reserved, none, ...) so this machine's drift falls on both. Each process
times two batches on one `LLM` after a warm-up request: prefill-heavy (long prompts, 16 new tokens) and decode-heavy
(16 short prompts, 64 new tokens each).

    python benchmarks/reserved_core.py --model ~/.cache/smooth-reading/SmolLM2-135M-Instruct --repeats 2

Writes benchmarks/results/reserved_core.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pipeline.cpu_cores import VARIABLE

REPO = Path(__file__).resolve().parents[1]
TEXT = REPO / "pipeline" / "data" / "quality_example.jsonl"  # any long real text


def one_setting(model: str, dtype: str, prompt_tokens: int) -> dict:
    from vllm import LLM, SamplingParams

    from pipeline.kv_cache import kv_cache_bytes

    llm = LLM(model=model, dtype=dtype, max_model_len=prompt_tokens + 256, max_num_seqs=16,
              kv_cache_memory_bytes=kv_cache_bytes(2.0), enable_prefix_caching=False, enforce_eager=True, seed=0)
    ids = llm.get_tokenizer()(TEXT.read_text())["input_ids"]
    long_prompts = [{"prompt_token_ids": (ids * 4)[i * 100: i * 100 + prompt_tokens]} for i in range(2)]
    short_prompts = [{"prompt_token_ids": ids[i * 50: i * 50 + 200]} for i in range(16)]
    llm.generate(short_prompts[:1], SamplingParams(max_tokens=4), use_tqdm=False)
    seconds = {}
    for name, prompts, new in (("prefill", long_prompts, 16), ("decode", short_prompts, 64)):
        start = time.perf_counter()
        llm.generate(prompts, SamplingParams(max_tokens=new, temperature=0.0, ignore_eos=True), use_tqdm=False)
        seconds[name] = time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a Hugging Face folder")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--prompt-tokens", type=int, default=6000, help="tokens in each of the two long prompts")
    parser.add_argument("--repeats", type=int, default=2, help="processes per setting, alternating")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: time one setting
    args = parser.parse_args()
    model = str(Path(args.model).expanduser())
    if args.one:
        print("RESULT " + json.dumps(one_setting(model, args.dtype, args.prompt_tokens)), flush=True)
        return

    runs = []
    for i in range(2 * args.repeats):
        reserved = "1" if i % 2 == 0 else "0"
        child = subprocess.run(
            [sys.executable, __file__, "--one", "--model", model, "--dtype", args.dtype,
             "--prompt-tokens", str(args.prompt_tokens)],
            env={**os.environ, VARIABLE: reserved}, capture_output=True, text=True)
        if child.returncode != 0:
            raise RuntimeError(f"the run with {VARIABLE}={reserved} failed:\n{child.stderr[-3000:]}")
        result = json.loads(next(line for line in child.stdout.splitlines() if line.startswith("RESULT "))[7:])
        runs.append({"reserved_cores": int(reserved), **result})
        print(runs[-1], flush=True)
    rows = []
    for batch in ("prefill", "decode"):
        reserved = [r[batch] for r in runs if r["reserved_cores"] == 1]
        none = [r[batch] for r in runs if r["reserved_cores"] == 0]
        rows.append({"batch": batch, "reserved_one_s": reserved, "reserved_none_s": none,
                     "speedup": statistics.median(reserved) / statistics.median(none)})
    args.output.mkdir(parents=True, exist_ok=True)
    config = {"model": Path(model).name, "dtype": args.dtype, "prompt_tokens": args.prompt_tokens,
              "usable_cores": len(os.sched_getaffinity(0)), "repeats": args.repeats}
    (args.output / "reserved_core.json").write_text(json.dumps({"config": config, "runs": runs, "rows": rows}, indent=2))
    lines = [f"# vLLM CPU worker: one core reserved for the engine core, or none ({config['model']}, {args.dtype}, "
             f"{config['usable_cores']} usable cores)", "",
             "| batch | one core reserved, s | none reserved, s | speed-up (medians) |", "|---|---|---|---|"]
    shapes = {"prefill": f"prefill: 2 prompts x {args.prompt_tokens} tokens, 16 new", "decode": "decode: 16 prompts x 200 tokens, 64 new"}
    for r in rows:
        lines.append(f"| {shapes[r['batch']]} | {' / '.join(f'{x:.1f}' for x in r['reserved_one_s'])} | "
                     f"{' / '.join(f'{x:.1f}' for x in r['reserved_none_s'])} | {r['speedup']:.2f}x |")
    (args.output / "reserved_core.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
