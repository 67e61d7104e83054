"""One-pass throughput: the generate job's one-pass mode against Ray Data LLM on the same prompts.

One run, one model, one set of vLLM engine settings (max_num_seqs, max_model_len, dtype, KV block size, KV cache
size, enforce_eager, seed; prefix caching on in both):

1. ours: the generate job's stages (plan -> teach -> filter -> write, benchmarks/generate_throughput.py's
   `run_pipeline`) with the vLLM teacher in one-pass mode: chunks larger than any document and max_rounds 1, so
   each document is one round (the whole document, a summary ending with <STOP>) and then one answer request
   continuing that message. Every engine request is recorded (prompt token ids, max_tokens, kind, tokens made).
2. Ray Data LLM (`ray.data.llm.vLLMEngineProcessorConfig` + `build_processor`, concurrency 1) over
   `ray.data.from_items` of exactly those recorded requests, round and answer requests alike (so Ray never waits
   for a round before its answer; ours must), as prompt token ids with the chat-template, tokenize and detokenize
   stages off, and the teacher's own sampling settings (`teacher.sampling_params`: max_tokens, stop strings,
   temperature 0, skip_special_tokens False, the structured-output regex). On a machine without a GPU the engine
   actor asks for one CPU through `placement_group_config` (one bundle {"CPU": 1}), so Ray reserves no GPU.

Timed (generation only, engine startup excluded in both):
  ours: from the first request after a warm-up request to the last trajectory filtered and written;
  Ray:  from the first request's arrival in its engine (vLLM's `metrics.arrival_time`, wall clock) to the last
        output row reaching this process. Its engine is not warmed by a request (Ray builds the actor per run),
        but vLLM has already run its start-up profiling and warm-up passes.
tokens/s = generated tokens / those seconds; ratio = ours / Ray Data LLM (goal >= 1.0).

    python benchmarks/one_pass_throughput.py                    # a tiny random Llama made in code, 64 documents
    python benchmarks/one_pass_throughput.py --model ~/.cache/smooth-reading/SmolLM2-135M-Instruct --dtype bfloat16

Writes benchmarks/results/one_pass_throughput.{json,md} (or under --output).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.generate_throughput import (
    BenchConfig,
    _pipeline_and_close,
    make_tiny_llama,
    recording_teacher,
    teacher_config,
)
from pipeline.kv_cache import kv_cache_bytes
from pipeline.precision import resolve_dtype

WHOLE_DOCUMENT = 10**6  # chunk size in tokens: larger than any document, so each document is one chunk


def engine_settings(config: dict) -> dict:
    """The vLLM engine arguments both sides use (those of teachers/vllm_engine.py)."""
    return {
        "dtype": resolve_dtype(config["dtype"]), "max_model_len": config["max_model_len"], "max_num_seqs": config["max_num_seqs"],
        # Set on both sides: left out, each engine takes the default of its usage context (ours vLLM's offline one,
        # Ray Data LLM's engine the server one, 2,048 on CPU).
        "max_num_batched_tokens": config["max_num_batched_tokens"],
        "kv_cache_memory_bytes": kv_cache_bytes(config["kv_cache_gb"]), "enable_prefix_caching": True,
        "enforce_eager": config["enforce_eager"], "seed": 0, "block_size": config["block_size"],
        # Ray Data LLM's rows carry a request's arrival time only with statistics on; ours runs without them
        # (teachers/vllm_engine.py), which the Ray side's timing from its first arrival does not see.
        "disable_log_stats": False,
    }


def sampling_dict(teacher, request) -> dict:
    """The teacher's SamplingParams for a recorded request, as the plain dict a Ray Data row carries."""
    from teachers.vllm_engine import _RESERVED_SAMPLING

    params = teacher.sampling_params(request.max_tokens, request.kind)
    out = {key: getattr(params, key) for key in [*teacher.config.sampling, *_RESERVED_SAMPLING]}
    structured = out.pop("structured_outputs")
    if structured is not None:
        out["structured_outputs"] = {k: v for k, v in dataclasses.asdict(structured).items() if v is not None}
    return out


def run_ours(bench: BenchConfig, config: dict, docs, work: Path):
    teacher, requests = recording_teacher(config)
    [result] = asyncio.run(_pipeline_and_close(teacher, requests, docs, bench, work / "corpus", 1))
    if any(r.kind not in ("final", "answer") for r in requests):
        raise RuntimeError("a document was read in more than one round: not one-pass")
    generated = sum(r.completion_tokens for r in requests)
    return teacher, requests, {"seconds": result["seconds"], "requests": len(requests), "generated_tokens": generated,
                               "documents": result["documents"], "written": result["written"]}


def keep_counts(row: dict) -> dict:  # Ray Data postprocess (runs in a Ray worker)
    return {"kind": row["kind"], "generated": row["num_generated_tokens"], "arrival": row["metrics"]["arrival_time"]}


def run_ray(teacher, requests, config: dict, batch_size: int) -> dict:
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from pipeline.cpu_cores import share_reserved_core

    share_reserved_core()  # set before Ray starts its workers, so Ray Data LLM's engine inherits it, as ours does
    # Logical CPUs: one for the engine actor, the rest for Ray Data's small map tasks (also on a 2-core machine).
    ray.init(num_cpus=4, include_dashboard=False, object_store_memory=1 << 30, ignore_reinit_error=True)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        processor = build_processor(vLLMEngineProcessorConfig(
            model_source=config["model"], engine_kwargs=engine_settings(config), batch_size=batch_size,
            concurrency=1, chat_template_stage=False, tokenize_stage=False, detokenize_stage=False,
            placement_group_config={"bundles": [{"CPU": 1}]},  # the engine actor's resources: one CPU, no GPU
            log_engine_metrics=False,
        ), postprocess=keep_counts)
        rows = [{"tokenized_prompt": r.prompt_ids, "sampling_params": sampling_dict(teacher, r), "kind": r.kind}
                for r in requests]
        out, end = [], 0.0
        for row in processor(ray.data.from_items(rows)).iter_rows():
            out.append(row)
            end = time.time()
    finally:
        ray.shutdown()
    return {"seconds": end - min(r["arrival"] for r in out), "requests": len(out),
            "generated_tokens": sum(r["generated"] for r in out)}


def write_results(settings: dict, ours: dict, ray_row: dict, out_dir: Path) -> dict:
    for row in (ours, ray_row):
        if "seconds" in row:
            row["tokens_per_s"] = row["generated_tokens"] / row["seconds"]
    ratio = ours["tokens_per_s"] / ray_row["tokens_per_s"] if "tokens_per_s" in ray_row else None
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"settings": settings, "ours": ours, "ray_data_llm": ray_row, "ratio_ours_over_ray": ratio}
    (out_dir / "one_pass_throughput.json").write_text(json.dumps(result, indent=2))
    s = settings
    lines = [
        (f"# One-pass throughput ({s['model']}, {s['dtype']}, {s['documents']} documents of {s['length']} tokens, "
         f"max_num_seqs {s['max_num_seqs']}, max_model_len {s['max_model_len']}, KV block {s['block_size']}, "
         f"KV cache {s['kv_cache_gb']} GiB, enforce_eager {s['enforce_eager']}, prefix caching on, "
         f"Ray batch_size {s['ray_batch_size']})"), "",
        "| engine | requests | generated tokens | seconds | tok/s |", "|---|---|---|---|---|",
    ]
    for name, row in (("ours (one-pass job)", ours), ("Ray Data LLM", ray_row)):
        if "seconds" in row:
            lines.append(f"| {name} | {row['requests']} | {row['generated_tokens']} | {row['seconds']:.2f} | "
                         f"{row['tokens_per_s']:.0f} |")
        else:
            lines.append(f"| {name} | did not run: {row['error']} | | | |")
    lines += ["", f"ours / Ray Data LLM (goal >= 1.0): {ratio:.2f}" if ratio else "ours / Ray Data LLM: n/a"]
    (out_dir / "one_pass_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a Hugging Face folder (default: a tiny random Llama made in code)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--documents", type=int, default=64)
    parser.add_argument("--length", type=int, default=1200, help="document length in tokens (NIAH haystacks)")
    parser.add_argument("--max-num-seqs", type=int, default=32)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--max-num-batched-tokens", type=int, default=4096, help="vLLM's offline default on CPU")
    parser.add_argument("--block-size", type=int, default=32, help="KV cache block size in tokens")
    parser.add_argument("--kv-cache-gb", type=float, default=1.0, help="KV cache per engine (both engines)")
    parser.add_argument("--max-in-flight", type=int, default=0, help="ours: documents at once; 0: 2 x max-num-seqs")
    parser.add_argument("--ray-batch-size", type=int, default=0, help="Ray Data LLM batch_size; 0: max-num-seqs")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    from pipeline.sources import niah_documents

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = str(Path(args.model).expanduser()) if args.model else str(make_tiny_llama(work / "tiny-llama"))
        bench = BenchConfig(
            model=model, dtype=args.dtype, documents=args.documents, length=args.length, chunk_low=WHOLE_DOCUMENT,
            chunk_high=WHOLE_DOCUMENT, max_rounds=1, max_in_flight=args.max_in_flight or 2 * args.max_num_seqs,
            max_num_seqs=args.max_num_seqs, block_size=args.block_size, kv_cache_gb=args.kv_cache_gb,
            teacher_extra={"max_model_len": args.max_model_len, "max_num_batched_tokens": args.max_num_batched_tokens},
        )
        docs = niah_documents([args.length], [0.1, 0.3, 0.5, 0.7, 0.9], max(1, -(-args.documents // 5)), seed=0)
        config = teacher_config(bench, "summary")
        teacher, requests, ours = run_ours(bench, config, docs[: args.documents], work)
        ray_batch_size = args.ray_batch_size or args.max_num_seqs
        try:
            ray_row = run_ray(teacher, requests, config, ray_batch_size)
        except Exception as e:  # e.g. no way to place the engine actor here: still report ours
            ray_row = {"error": f"{type(e).__name__}: {e}"[:500]}
            print(f"Ray Data LLM did not run: {ray_row['error']}")
    settings = {**engine_settings(config), "kv_cache_gb": config["kv_cache_gb"], "documents": args.documents,
                "length": args.length, "ray_batch_size": ray_batch_size,
                "model": args.model or "tiny-llama (random, made in code)"}
    write_results(settings, ours, ray_row, args.output)


if __name__ == "__main__":
    main()
