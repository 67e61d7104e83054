"""The generate job's teach stage: a pool of Ray actors, one teacher each, many documents in flight per actor.

`EnginePool.teach` takes (document, chunk plan) pairs and yields trajectories and reject records in the order the
documents finish; the job puts them back in read order. Actors that die are restarted by Ray and their documents
retried; see `EnginePool` for what happens to a document that keeps killing its engine and to an actor that does not
come back. `Progress` is the one line per interval a person reads in `ray job logs`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Iterable, Iterator

import ray

from jobs.generate_config import EngineConfig, PartConfig
from jobs.teacher_models import resolve_model
from pipeline.rejects import Reject
from teachers import build_teacher, engine_slots
from teachers.base import TeacherError, TeacherUnavailable

log = logging.getLogger("smooth_reading.generate")


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


@dataclass(eq=False)  # an actor is itself, whatever its counts
class _Actor:
    """One teacher actor and what the pool knows of it."""

    handle: Any
    load: int = 0  # documents in flight on it
    alone: bool = False  # reading one suspect document and nothing else
    life: int = 0  # deaths seen: one death fails every document in flight on it
    lost: bool = False  # did not come back: no more work for it

    @property
    def open(self) -> bool:
        return not (self.alone or self.lost)


@dataclass
class _Flight:
    work: _Work
    actor: _Actor
    life: int  # the actor's life it was submitted in
    alone: bool  # read alone on its actor (a suspect)


class _WorkQueue:
    """What to read next: retries first, then the stage's input; rejects of earlier stages are kept to pass on."""

    def __init__(self, items: Iterable[Any]):
        self.source = iter(items)
        self.source_done = False
        self.retries: deque[_Work] = deque()
        self.suspects: deque[_Work] = deque()  # near two crashes: each is read alone on an idle actor
        self.passed_through: list[Any] = []

    def next(self) -> _Work | None:
        if self.retries:
            return self.retries.popleft()
        if not self.source_done:
            for item in self.source:
                if isinstance(item, tuple):
                    return _Work(*item)
                self.passed_through.append(item)
            self.source_done = True
        return None

    @property
    def empty(self) -> bool:
        return self.source_done and not self.retries and not self.suspects


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


def documents_in_flight(teacher: dict[str, Any], engine: EngineConfig) -> int:
    """Documents one actor reads at once: as configured, else twice the teacher engine's slots (while a document's
    next prompt is being built, another's round fills its slot), else 16."""
    return engine.max_in_flight or 2 * (engine_slots(teacher) or 8)


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
        teacher = dict(part.teacher)
        self.max_in_flight = documents_in_flight(teacher, engine)
        actor_class = ray.remote(TeacherActor).options(
            max_restarts=engine.max_restarts, max_task_retries=0, max_concurrency=self.max_in_flight,
            scheduling_strategy="SPREAD", **resources,
        )
        if "model" in teacher:
            teacher["model"] = resolve_model(teacher["model"])
        self.actors = [_Actor(actor_class.remote(teacher)) for _ in range(num_actors)]
        log.info("[%s] %d teacher actor(s), %s each, up to %d documents in flight each", part.name, num_actors,
                 resources, self.max_in_flight)
        try:
            self.identity = ray.get(self.actors[0].handle.identity.remote(), timeout=engine.restart_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise GenerateError(
                f"part {part.name!r}: the teacher actor did not start within engine.restart_timeout_s="
                f"{engine.restart_timeout_s:g}s; it asks for {resources}, the cluster has "
                f"{ray.cluster_resources()}. Fix: lower engine.num_cpus / num_gpus, or add nodes"
            ) from None
        except ray.exceptions.RayActorError as e:
            raise GenerateError(f"part {part.name!r}: the teacher could not be built in its actor: {e}") from None

    def teach(self, items: Iterable[Any], progress: Progress) -> Iterator[Any]:
        """Stage teach: (document, plan) pairs in, trajectories and reject records out, in order of finishing."""
        queue = _WorkQueue(items)
        in_flight: dict[Any, _Flight] = {}
        while True:
            for actor in self.actors:
                if not actor.open:
                    continue
                if queue.suspects:  # hold new work back until an actor is idle, then give it one suspect
                    if actor.load == 0:
                        work = queue.suspects.popleft()
                        in_flight[self._submit(actor, work, alone=True)] = _Flight(work, actor, actor.life, True)
                    continue
                while actor.load < self.max_in_flight and (work := queue.next()) is not None:
                    in_flight[self._submit(actor, work)] = _Flight(work, actor, actor.life, False)
            progress.rejected += len(queue.passed_through)
            yield from queue.passed_through
            queue.passed_through.clear()
            progress.in_flight = len(in_flight)
            progress.maybe_log()
            if not in_flight:
                if queue.empty:
                    return
                continue

            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in ready:
                flight = in_flight.pop(ref)
                progress.in_flight = len(in_flight)
                work, actor = flight.work, flight.actor
                actor.load -= 1
                actor.alone = False
                try:
                    status, value = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    status, value = "crashed", f"the teacher actor died while reading it ({type(e).__name__})"
                    if flight.life == actor.life:  # the first sign of this death
                        actor.life += 1
                        self._await_restart(actor)
                if status == "done":
                    yield value
                    continue
                if status == "rejected":
                    round_index, message = value
                    progress.rejected += 1
                    field_name = "document" if round_index is None else f"round {round_index}"
                    yield replace(Reject(document_id=work.doc.id, field=field_name, reason=message, fix=_TEACHER_FIX,
                                         stage="teacher"),
                                  hint=self.identity.get("hint", ""))
                    continue
                if status == "unavailable":
                    raise GenerateError(f"the {self.part.name!r} teacher is unavailable: {value}. Fix: bring the "
                                        "backend up, then rerun the same command to resume")
                work.attempts += 1
                guilty = status == "failed" or flight.alone
                if guilty and work.attempts >= self.engine.max_attempts:
                    progress.rejected += 1
                    yield Reject(document_id=work.doc.id, field="teacher", stage="teacher",
                                 reason=f"failed {work.attempts} time(s); last: {value}",
                                 fix="see the error; raise engine.max_attempts if the failures are transient")
                elif status == "crashed" and (flight.alone or work.attempts >= 2
                                              or work.attempts >= self.engine.max_attempts):
                    queue.suspects.append(work)
                else:
                    queue.retries.append(work)

    def _submit(self, actor: _Actor, work: _Work, alone: bool = False):
        actor.load += 1
        actor.alone = alone
        return actor.handle.read.remote(work.doc, work.plan, self.part.max_rounds)

    def _await_restart(self, actor: _Actor) -> None:
        """Wait for the actor to be restarted; one that does not come back is left out while others remain."""
        deadline = time.monotonic() + self.engine.restart_timeout_s
        while True:
            try:
                ray.get(actor.handle.ready.remote(), timeout=max(1.0, deadline - time.monotonic()))
                break
            except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
                # Restarting, not dead: Ray refuses calls until the new process is up (seen on a loaded machine),
                # or holds them while the actor waits for a node with room for it (its own node was lost).
                if time.monotonic() >= deadline:
                    self._lose(actor, f"did not come back within engine.restart_timeout_s="
                               f"{self.engine.restart_timeout_s:g}", "raise it, add nodes with room for the actor, "
                               "or find why the engine starts slowly (Ray session logs)")
                    return
                time.sleep(0.5)
            except ray.exceptions.RayActorError as e:
                self._lose(actor, f"died more than engine.max_restarts={self.engine.max_restarts} times ({e})",
                           "find why the engine dies (its log is in the Ray session logs)")
                return
        log.warning("[%s] teacher actor %d died and was restarted; its documents are retried", self.part.name,
                    self.actors.index(actor))

    def _lose(self, actor: _Actor, what: str, fix: str) -> None:
        actor.lost = True
        i = self.actors.index(actor)
        if all(a.lost for a in self.actors):
            raise GenerateError(f"teacher actor {i} of part {self.part.name!r} {what}, and no other actor is left. "
                                f"Fix: {fix}, then rerun the same command to resume")
        log.warning("[%s] teacher actor %d %s; the other actors read its documents", self.part.name, i, what)

    def prefix_cache_stats(self) -> list[dict[str, Any]]:
        return ray.get([a.handle.prefix_cache_stats.remote() for a in self.actors if not a.lost])

    def close(self) -> None:
        for actor in self.actors:
            if not actor.lost:
                try:
                    ray.get(actor.handle.close.remote(), timeout=60)
                except (ray.exceptions.RayError, TimeoutError):
                    pass
            ray.kill(actor.handle)


_TEACHER_FIX = ("none needed for the run (the document is left out); if many documents fail so, use a stronger "
                "teacher, set structured_output, or plan smaller chunks")


