"""Generate throughput: the generate pipeline against raw vLLM on the same requests, and stream-mode prefill cost.

For each prompt mode (summary, stream) this one run does, on one model with one set of engine settings:

1. pipeline: the generate job's stages in this process (plan -> teach -> filter -> write a corpus) with the vLLM
   teacher's async engine, `--max-in-flight` documents at once. Every engine request is recorded (prompt token
   ids, sampling settings, tokens generated, prompt tokens served from the prefix cache).
2. raw: vLLM's offline `LLM.generate` on exactly those recorded requests, all submitted at once (the upper bound:
   no round waits for the previous one), with the same engine settings.

(a) ratio = pipeline generated tokens/s / raw generated tokens/s (goal >= 0.95), over `--passes` pairs of timed
passes on the same documents, one pass on each side's engine, each from an empty prefix cache. Both engines stay up
and their passes alternate (P R, R P, P R, ...), so the two passes of a pair run back to back: this machine's speed
drifts over minutes and a tiny-model pass lasts seconds, so two blocks of passes one after the other measured the
drift as much as the engines. The ratio is the geometric mean of the pairs' ratios with a 95% bootstrap interval over
the pairs (`pipeline.metrics.paired_difference95` on log tokens/s). Both engines are warmed up first; times run from
the first request to the last result (the pipeline's includes filtering each document as it finishes and writing
the corpus in read order after the last one, as the job does; the writing is reported apart).
(b) engine slots filled: over the pipeline's run, the time-weighted mean of min(requests in the engine, max_num_seqs)
/ max_num_seqs, and the share of time with fewer requests than slots. Raw submits everything at once, so its slots
stay full until its last max_num_seqs requests drain: what the pipeline loses here is dependency between rounds (a
document's next round waits for its last), not per-request cost.
(c) stream mode only: prefill per round / new tokens per round, over rounds after the first. Prefill actually
computed = prompt tokens - tokens vLLM served from its prefix cache (num_cached_tokens); new tokens = prompt
tokens - (the previous request's prompt + its generated tokens), i.e. what this round added (goal <= 1.2).

    python benchmarks/generate_throughput.py                      # a tiny random Llama made in code
    python benchmarks/generate_throughput.py --model ~/.cache/smooth-reading/SmolLM2-135M-Instruct --dtype bfloat16

Writes benchmarks/results/generate_throughput.{json,md}. The Ray actor layer of the job is not in the timing
(it adds one task per document, not per token).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.metrics import paired_difference95
from students.reading_vllm import close_engine

REPO = Path(__file__).resolve().parents[1]
# The package is installed; the repository root is added only for tests.tiny_models (the tiny teacher), which is a
# test helper and not part of the installed package.
sys.path.insert(0, str(REPO))


READING: contextvars.ContextVar[str] = contextvars.ContextVar("reading", default="")
PROMPT_IDS: contextvars.ContextVar[list[int]] = contextvars.ContextVar("prompt_ids")


@dataclass
class Request:
    document_id: str
    prompt_ids: list[int]
    max_tokens: int
    kind: str
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    submitted: float = 0.0  # perf_counter seconds: the request handed to the engine, and its result back
    finished: float = 0.0


@dataclass
class BenchConfig:
    model: str
    dtype: str
    documents: int
    length: int
    chunk_low: int
    chunk_high: int
    max_rounds: int
    max_in_flight: int
    max_num_seqs: int
    block_size: int | None
    kv_cache_gb: float
    teacher_extra: dict = field(default_factory=dict)


def make_tiny_llama(folder: Path) -> Path:
    """The tests' tiny Llama (2 layers, hidden 64) with their stream tokenizer trained on the shipped data."""
    from tests.tiny_models import save_tiny_llama, train_tiny_tokenizer

    return save_tiny_llama(folder, train_tiny_tokenizer())


def stop_bias(model: str) -> dict[int, float]:
    from transformers import AutoTokenizer

    from tests.tiny_models import stop_spelling_bias

    return stop_spelling_bias(AutoTokenizer.from_pretrained(model))


def teacher_config(bench: BenchConfig, mode: str) -> dict:
    return {
        "backend": "vllm", "model": bench.model, "dtype": bench.dtype, "max_model_len": 4096,
        "max_num_seqs": bench.max_num_seqs, "kv_cache_gb": bench.kv_cache_gb, "enforce_eager": True, "prompt_mode": mode,
        # The format is imposed, as the SmolLM2 generate configs do: a 135M model left free writes no summary.
        "structured_output": True, "field_max_chars": 12, "max_round_tokens": 64,
        "max_answer_tokens": 16, "sampling": {"temperature": 0.0}, "block_size": bench.block_size,
        **bench.teacher_extra,
    }


def recording_teacher(config: dict):
    """The vLLM teacher, recording every engine request it makes (the benchmark's only addition)."""
    from teachers import build_teacher

    teacher = build_teacher(config)
    requests: list[Request] = []
    complete, render_prompt = teacher.complete, teacher.render_prompt

    def rendered(messages):
        ids = render_prompt(messages)
        PROMPT_IDS.set(ids)  # complete() renders in the reading's own task: recorded() reads it back there
        return ids

    async def recorded(messages, max_tokens, kind="round", fixed=None):
        submitted = time.perf_counter()
        out = await complete(messages, max_tokens, kind, fixed)
        requests.append(Request(READING.get(), PROMPT_IDS.get(), max_tokens, kind, out.prompt_tokens,
                                out.cached_tokens, out.completion_tokens, submitted, time.perf_counter()))
        return out

    teacher.complete, teacher.render_prompt = recorded, rendered
    return teacher, requests


async def pipeline_passes(teacher, requests: list[Request], docs, bench: BenchConfig, output: Path):
    """The generate job's stages on one engine (plan, then a warm-up request); returns `one_pass(i)`, which runs
    them once over every document (teach max_in_flight at once, each filtered as it finishes, then written in read
    order, as the job does) from an empty prefix cache, timed.
    Each pass leaves its own requests in `requests`."""
    from jobs.generate import filter_trajectories, plan
    from jobs.generate_config import ChunkingConfig, FilterConfig
    from jobs.teacher_pool import Progress
    from pipeline.chunking import WordEstimate
    from pipeline.corpus import CorpusWriter
    from pipeline.trajectory import Trajectory
    from teachers.base import TeacherError

    counter = WordEstimate()
    chunking = ChunkingConfig(low=bench.chunk_low, high=bench.chunk_high)
    planned = [p for p in plan(docs, chunking, 0, counter) if isinstance(p, tuple)]
    await teacher.complete([{"role": "user", "content": "warm up"}], 4)  # engine start is not throughput

    gate = asyncio.Semaphore(bench.max_in_flight)
    filtering = FilterConfig(min_answer_score=0.0)

    async def read(doc, chunk_plan, progress: Progress) -> list:
        async with gate:
            READING.set(doc.id)  # each gathered read is its own task, with its own copy of the context
            try:
                taught = await teacher.read(doc, chunk_plan, bench.max_rounds)
            except TeacherError as e:
                print(f"left out: {e}"[:300])
                return []
        # As in the job, a document is filtered when it finishes, while others are still being read.
        return list(filter_trajectories([taught], filtering, counter, progress))

    async def one_pass(i: int) -> dict:
        await teacher.reset_prefix_cache()
        requests.clear()
        progress = Progress("bench", len(planned), 1e9)
        cpu = CPUClock()
        start = time.perf_counter()
        filtered = await asyncio.gather(*(read(d, p, progress) for d, p in planned))
        read_end = time.perf_counter()
        with CorpusWriter(output / f"pass-{i}", shard_size=64) as writer:
            for item in (item for items in filtered for item in items):  # in read order, as the job writes
                if isinstance(item, Trajectory):
                    writer.write(item)
                else:
                    writer.reject(item)
        end = time.perf_counter()
        return {"seconds": end - start, "write_s": end - read_end, "documents": len(planned), **cpu.read(),
                "written": progress.done, "generated_tokens": sum(r.completion_tokens for r in requests),
                "requests": len(requests), "slots": slots_filled(requests, bench.max_num_seqs, start, end),
                "stream_prefill": stream_prefill(requests)}

    return one_pass


async def run_pipeline(teacher, requests: list[Request], docs, bench: BenchConfig, output: Path,
                       passes: int) -> list[dict]:
    """`passes` timed passes of the generate job's stages on one engine; `requests` ends holding the first pass's."""
    one_pass = await pipeline_passes(teacher, requests, docs, bench, output)
    runs, first_requests = [], None
    for i in range(passes):
        runs.append(await one_pass(i))
        first_requests = first_requests or list(requests)
    requests[:] = first_requests
    return runs


class RawEngine:
    """vLLM's offline `LLM` with the teacher's engine settings, for `LLM.generate` on recorded requests, all at once."""

    def __init__(self, requests: list[Request], config: dict):
        from vllm import LLM

        from pipeline.cpu_cores import share_reserved_core
        from pipeline.kv_cache import kv_cache_bytes
        from pipeline.precision import resolve_dtype
        from teachers import build_teacher

        share_reserved_core()  # as the teacher's engine does
        params_of = build_teacher(config)  # the teacher's own SamplingParams (stop strings, structured output)
        self.llm = LLM(
            model=config["model"], dtype=resolve_dtype(config["dtype"]), max_model_len=config["max_model_len"],
            max_num_seqs=config["max_num_seqs"], max_num_batched_tokens=config.get("max_num_batched_tokens"),
            kv_cache_memory_bytes=kv_cache_bytes(config["kv_cache_gb"]),
            enable_prefix_caching=True, enforce_eager=config["enforce_eager"], seed=0, block_size=config["block_size"],
        )
        self.llm.generate([{"prompt_token_ids": requests[0].prompt_ids}], params_of.sampling_params(4, "round"),
                          use_tqdm=False)
        self.prompts = [{"prompt_token_ids": r.prompt_ids} for r in requests]
        self.params = [params_of.sampling_params(r.max_tokens, r.kind) for r in requests]

    def one_pass(self) -> dict:
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM did not reset its prefix cache between raw passes")
        cpu = CPUClock()
        start = time.perf_counter()
        outputs = self.llm.generate(self.prompts, self.params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        return {"seconds": elapsed, "generated_tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
                **cpu.read()}

    def close(self) -> None:
        close_engine(self.llm)
        del self.llm


class CPUClock:
    """CPU seconds over a pass: this process (the driver: the job's stages, or `LLM.generate`'s loop, and each side's
    engine front end) and its child processes (both engines' cores and workers; the idle one costs ~1% of a core).
    Wall time says which side is faster; CPU time says where the work went on these two shared cores."""

    def __init__(self):
        import psutil

        self._children = psutil.Process().children
        self._start = self._now()

    def _now(self) -> tuple[float, float]:
        engines = 0.0
        for child in self._children(recursive=True):
            try:
                times = child.cpu_times()
            except Exception:  # a child gone between listing and reading (a resource tracker)
                continue
            engines += times.user + times.system
        return time.process_time(), engines

    def read(self) -> dict:
        driver, engines = self._now()
        return {"driver_cpu_s": driver - self._start[0], "engines_cpu_s": engines - self._start[1]}


def slots_filled(requests: list[Request], slots: int, start: float, end: float) -> dict:
    """Time-weighted mean of min(requests in the engine, slots) / slots over [start, end], and the share of that
    time with fewer requests than slots."""
    events = sorted([(r.submitted, 1) for r in requests] + [(r.finished, -1) for r in requests])
    filled = short = 0.0
    outstanding, previous = 0, start
    for t, step in events + [(end, 0)]:
        filled += min(outstanding, slots) / slots * (t - previous)
        short += (t - previous) if outstanding < slots else 0.0
        outstanding, previous = outstanding + step, t
    return {"mean": filled / (end - start), "short_share": short / (end - start)}


def stream_prefill(requests: list[Request]) -> dict:
    """Prefill computed per round over new tokens per round, rounds after a document's first request."""
    computed = new = 0
    previous: dict[str, Request] = {}
    for r in requests:  # in completion order; a document's requests are sequential, so in its own order
        before = previous.get(r.document_id)
        previous[r.document_id] = r
        if before is None or r.kind == "answer":  # the answer continues its own round's prompt: not a round
            continue
        computed += r.prompt_tokens - r.cached_tokens
        new += r.prompt_tokens - (before.prompt_tokens + before.completion_tokens)
    return {"prefill_computed": computed, "new_tokens": new, "ratio": computed / new if new else float("nan")}


def bench_mode(bench: BenchConfig, mode: str, docs, work: Path, passes: int) -> dict:
    """`passes` pairs of timed passes, one on each engine, the two engines alive together (an idle vLLM engine costs
    about 1% of a core) and their passes interleaved P R, R P, P R, ...: this machine's speed drifts over minutes, and
    a pair's passes run back to back, so each pair's ratio sees the same machine. The row's ratio is the geometric
    mean of the pairs' ratios, with a bootstrap interval over the pairs; it carries the pipeline pass with the median
    throughput (slots, prefill) and every pass's tokens/s."""
    config = teacher_config(bench, mode)
    teacher, requests = recording_teacher(config)
    pipeline, raw = asyncio.run(_interleaved_and_close(teacher, requests, config, docs, bench, work / mode, passes))
    pipeline_rates = [p["generated_tokens"] / p["seconds"] for p in pipeline]
    raw_rates = [r["generated_tokens"] / r["seconds"] for r in raw]
    mean_log, low, high = paired_difference95([math.log(x) for x in pipeline_rates], [math.log(x) for x in raw_rates])
    middle = pipeline[sorted(range(passes), key=pipeline_rates.__getitem__)[(passes - 1) // 2]]
    row = {
        "mode": mode, "documents": middle["documents"], "requests": middle["requests"], "passes": passes,
        "throughput_ratio": math.exp(mean_log), "throughput_ratio_interval95": [math.exp(low), math.exp(high)],
        "pair_ratios": [p / r for p, r in zip(pipeline_rates, raw_rates)],
        "pipeline_tokens_per_s": statistics.median(pipeline_rates), "raw_tokens_per_s": statistics.median(raw_rates),
        "pipeline_tokens_per_s_passes": pipeline_rates, "raw_tokens_per_s_passes": raw_rates,
        "pipeline_s": middle["seconds"], "raw_s": statistics.median(r["seconds"] for r in raw),
        "pipeline_write_s": middle["write_s"],  # after the last reply: the job writes as documents finish
        "pipeline_generated": middle["generated_tokens"], "raw_generated": raw[0]["generated_tokens"],
        "pipeline_slots_filled": middle["slots"]["mean"], "pipeline_slots_short_share": middle["slots"]["short_share"],
        **{f"{side}_{clock}": statistics.median(p[clock] for p in passes_of)
           for side, passes_of in (("pipeline", pipeline), ("raw", raw)) for clock in ("driver_cpu_s", "engines_cpu_s")},
    }
    if mode == "stream":
        row["stream_prefill"] = middle["stream_prefill"]
    return row


async def _interleaved_and_close(teacher, requests, config, docs, bench, output, passes):
    """The pipeline's first pass records the requests raw replays, so raw's engine starts after it; then pairs in
    alternating order."""
    raw_engine = None
    try:
        one_pass = await pipeline_passes(teacher, requests, docs, bench, output)
        pipeline = [await one_pass(0)]
        raw_engine = RawEngine(list(requests), config)
        raw = [raw_engine.one_pass()]
        for i in range(1, passes):
            if i % 2:
                raw.append(raw_engine.one_pass())
                pipeline.append(await one_pass(i))
            else:
                pipeline.append(await one_pass(i))
                raw.append(raw_engine.one_pass())
        return pipeline, raw
    finally:
        if raw_engine is not None:
            raw_engine.close()
        await teacher.close()


async def _pipeline_and_close(teacher, requests, docs, bench, output, passes):
    try:
        return await run_pipeline(teacher, requests, docs, bench, output, passes)
    finally:
        await teacher.close()


def write_results(bench: BenchConfig, rows: list[dict], out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "generate_throughput.json").write_text(json.dumps({"config": bench.__dict__, "rows": rows}, indent=2))
    lines = [
        f"# Generate throughput ({Path(bench.model).name}, {bench.dtype}, {bench.documents} documents, "
        f"{bench.max_in_flight} in flight, max_num_seqs {bench.max_num_seqs}, KV block {bench.block_size} tokens, "
        f"KV cache {bench.kv_cache_gb:g} GiB, "
        f"at most {bench.max_rounds} rounds)", "",
        "| prompt mode | requests | pipeline tok/s | raw LLM.generate tok/s | pipeline / raw (goal >= 0.95): geometric "
        "mean of the pairs [95% interval] "
        "| pipeline slots filled (time short of full) | pipeline s (writing after the last reply) "
        "| stream prefill / new tokens (goal <= 1.2) | CPU s per pass, driver / engines: pipeline; raw |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        prefill = r.get("stream_prefill")
        cell = (f"{prefill['ratio']:.2f} ({prefill['prefill_computed']} / {prefill['new_tokens']})"
                if prefill else "n/a (summary prompts re-send the summary)")
        low, high = r["throughput_ratio_interval95"]
        below = sum(x < 1 for x in r["pair_ratios"])
        ratio = (f"{r['throughput_ratio']:.2f} [{low:.2f}, {high:.2f}], {below} of {r['passes']} pairs below 1"
                 if r["passes"] > 1 else f"{r['throughput_ratio']:.2f} (one pair)")
        lines.append(f"| {r['mode']} | {r['requests']} | {r['pipeline_tokens_per_s']:.0f} | "
                     f"{r['raw_tokens_per_s']:.0f} | {ratio} | "
                     f"{r['pipeline_slots_filled']:.2f} ({r['pipeline_slots_short_share']:.0%}) | "
                     f"{r['pipeline_s']:.1f} ({r['pipeline_write_s']:.1f}) | {cell} | "
                     f"{r['pipeline_driver_cpu_s']:.1f} / {r['pipeline_engines_cpu_s']:.1f}; "
                     f"{r['raw_driver_cpu_s']:.1f} / {r['raw_engines_cpu_s']:.1f} |")
    (out_dir / "generate_throughput.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a Hugging Face folder (default: a tiny random Llama made in code)")
    parser.add_argument("--dtype", default="float32", help="auto: bfloat16 where the hardware has it natively")
    parser.add_argument("--documents", type=int, default=32)
    parser.add_argument("--length", type=int, default=1200, help="document length in tokens (NIAH haystacks)")
    parser.add_argument("--chunk-low", type=int, default=160)
    parser.add_argument("--chunk-high", type=int, default=320)
    parser.add_argument("--max-rounds", type=int, default=4)
    parser.add_argument("--max-in-flight", type=int, default=0,
                        help="documents read at once; 0: as the generate job, twice --max-num-seqs")
    parser.add_argument("--max-num-seqs", type=int, default=32)
    parser.add_argument("--block-size", type=int, default=32,
                        help="KV cache block size (vLLM's CPU default is 128; the prefix cache reuses whole blocks)")
    parser.add_argument("--kv-cache-gb", type=float, default=1.0,
                        help="KV cache per engine; stream prompts need room for every conversation in flight")
    parser.add_argument("--modes", nargs="+", default=["summary", "stream"], choices=["summary", "stream"])
    parser.add_argument("--passes", type=int, default=5,
                        help="pairs of timed passes, one per engine each (prefix cache emptied before each pass)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()

    from pipeline.sources import niah_documents

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model or str(make_tiny_llama(work / "tiny-llama"))
        bench = BenchConfig(
            model=str(Path(model).expanduser()), dtype=args.dtype, documents=args.documents, length=args.length,
            chunk_low=args.chunk_low, chunk_high=args.chunk_high, max_rounds=args.max_rounds,
            max_in_flight=args.max_in_flight or 2 * args.max_num_seqs, max_num_seqs=args.max_num_seqs,
            # <STOP> biased against, so every document reads to the round cap: the multi-round shape under test.
            block_size=args.block_size, kv_cache_gb=args.kv_cache_gb,
            teacher_extra={"sampling": {"temperature": 0.0, "logit_bias": stop_bias(model)}},
        )
        n_cells = max(1, -(-args.documents // 5))
        depths = [0.1, 0.3, 0.5, 0.7, 0.9]
        docs = niah_documents([args.length], depths, n_cells, seed=0)[: args.documents]
        rows = [bench_mode(bench, mode, docs, work, args.passes) for mode in args.modes]
    if args.model is None:
        bench.model = "tiny-llama (random, made in code)"
    write_results(bench, rows, args.output)


if __name__ == "__main__":
    main()
