"""The one interface the generate job drives, and the per-document reading loop every LLM backend shares.

A teacher reads one document along a chunk plan and returns a `Trajectory`. Rounds of one document are
sequential (round k needs the summary of round k-1); many documents are in flight at once because the job
awaits many `read` coroutines concurrently, so an async engine batches their rounds continuously.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from pipeline.chunking import ChunkPlan
from pipeline.config import Config
from pipeline.documents import Document, chunk_texts, question_text
from pipeline.metrics import score_answer
from pipeline.stream import (
    ACTION_TOKEN, END, READ, STOP, Action, MalformedOutput, Summary, parse_summary_and_action, quote,
)
from pipeline.trajectory import TeacherRound, Trajectory
from teachers.hints import HINTS, EvidenceHints, FixedParts, HintRound, no_context_prompt
from teachers.templates import PromptMode, PromptTemplates, ReplyKind


class TeacherError(RuntimeError):
    """A document the teacher could not read: names the document, the round, and quotes what went wrong."""

    def __init__(self, document_id: str, round_index: int | None, problem: str, output: str | None = None):
        self.document_id, self.round_index, self.problem, self.output = document_id, round_index, problem, output
        where = f"document {document_id!r}" + (f", round {round_index}" if round_index is not None else "")
        quoted = f"; output: {quote(output, 300)}" if output is not None else ""
        super().__init__(f"{where}: {problem}{quoted}")


class RequestRejected(ValueError):
    """The backend refuses this one request (a prompt longer than the model takes): the document is rejected."""


class TeacherUnavailable(RuntimeError):
    """The backend itself is down after its retries (server unreachable, engine dead): stop the job, reject nothing."""


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0  # prompt tokens served from the prefix cache (0 where the backend cannot tell)


def record_metadata(doc: Document) -> dict[str, Any]:
    """A trajectory's metadata: the document's, plus where its evidence lies (the verifier checks against it)."""
    spans = {"evidence_spans": [[e.start, e.end] for e in doc.evidence]} if doc.evidence else {}
    return {**doc.metadata, **spans}


def check_plan(doc: Document, plan: ChunkPlan, max_rounds: int) -> tuple[int, ...]:
    """The plan's chunk ends, after checking they cut exactly this document's context."""
    if plan.document_id != doc.id:
        raise TeacherError(doc.id, None, f"chunk plan is for document {plan.document_id!r}, not this one")
    ends = tuple(int(e) for e in plan.chunk_ends)
    if not ends or ends[-1] != len(doc.context) or any(b <= a for a, b in zip((0,) + ends, ends)):
        raise TeacherError(
            doc.id, None,
            f"chunk plan ends {list(ends[:8])}{'...' if len(ends) > 8 else ''} do not cut the context "
            f"(length {len(doc.context)}) into non-empty chunks; rebuild the plan with pipeline.chunking.plan_chunks",
        )
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
    return ends


class Teacher(ABC):
    """Reads a document chunk by chunk and writes the summaries, the actions and the answer."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Who wrote a trajectory: name, model, sampling settings, prompt template name and sha256.

        Stored in every record, so two corpora from different teachers or prompts never mix unnoticed.
        """

    @abstractmethod
    async def read(self, doc: Document, plan: ChunkPlan, max_rounds: int) -> Trajectory:
        """Read `doc` along `plan`, at most `max_rounds` rounds; raise TeacherError when it cannot."""

    async def close(self) -> None:
        """Release the backend (engine processes, HTTP connections). Safe to call twice."""


class LLMTeacherConfig(Config):
    """What every LLM backend shares; backend configs extend it."""

    model_config = ConfigDict(frozen=True)

    prompt_mode: PromptMode = "summary"
    prompt_template: str = "smooth_reading_v1"
    max_round_tokens: int = Field(256, ge=1)  # cap on one summary (Target/Clues/Reason + action)
    max_answer_tokens: int = Field(64, ge=1)
    max_retries: int = Field(1, ge=0)  # re-asks of a malformed round before the document is rejected
    # "evidence": each round's prompt says whether the chunk holds evidence and, at the last, the reference answer
    # (rationalization: the teacher writes the summary a reader should have written). Needs documents with evidence.
    hint: str = "none"
    no_context_check: bool = False  # also ask the question without the document (MemAgent's check; the verifier)

    @field_validator("hint")
    @classmethod
    def _known_hint(cls, hint: str) -> str:
        if hint not in HINTS:
            raise ValueError(f"hint {hint!r} is not one of {HINTS}. Fix: use 'evidence' or leave it out")
        return hint


class LLMTeacher(Teacher):
    """The reading loop, written once for every LLM backend; a backend only implements `complete`.

    Message convention for `complete`: a list of {"role", "content"} dicts; when the last message is from the
    assistant, the backend continues that message (no new turn) — this is how the answer follows `<STOP>`.
    """

    name = "llm"

    def __init__(self, config: LLMTeacherConfig):
        self.config = config
        self.templates = PromptTemplates.load(config.prompt_template)
        self.hints = EvidenceHints() if config.hint == "evidence" else None
        self.no_context_prompt = no_context_prompt() if config.no_context_check else ""

    @abstractmethod
    async def complete(self, messages: list[dict[str, str]], max_tokens: int, kind: ReplyKind = "round",
                       fixed: FixedParts | None = None) -> Completion:
        """Generate one reply of `kind`, at most `max_tokens` tokens; backends with structured output write the
        `fixed` parts as given (others ignore them).

        "round": a summary that ends with READ or STOP (the marker kept in the text); "final": the same, but the
        round must STOP (backends that constrain decoding use this); "answer": continue the last assistant
        message (which ends with STOP) with the answer, up to END; "read": a round that must READ.
        """

    def model_name(self) -> str:
        return ""

    def sampling(self) -> dict[str, Any]:
        return {}

    def identity(self) -> dict[str, Any]:
        # As it reads back from a stored record (JSON: e.g. logit_bias token ids become string keys).
        return json.loads(json.dumps({
            "name": self.name,
            "model": self.model_name(),
            "sampling": self.sampling(),
            "prompt_mode": self.config.prompt_mode,
            "prompt_template": self.templates.name,
            "prompt_sha256": self.templates.sha256,
            "max_round_tokens": self.config.max_round_tokens,
            "max_answer_tokens": self.config.max_answer_tokens,
            **self._hint_identity(),
        }, sort_keys=True))

    def _hint_identity(self) -> dict[str, Any]:
        """Only hinted or no-context teachers add keys: unhinted records keep the identity (and hash) they had."""
        extra: dict[str, Any] = self.hints.identity(self.constrains()) if self.hints else {}
        if self.no_context_prompt:
            extra["no_context_sha256"] = hashlib.sha256(self.no_context_prompt.encode()).hexdigest()
        return extra

    def constrains(self) -> bool:
        """Whether hinted rounds are decoded with their fixed parts (backends with structured output on)."""
        return bool(self.hints) and bool(getattr(self.config, "structured_output", False))

    def _round_hints(self, doc: Document, ends: tuple[int, ...]) -> tuple[list[HintRound], int | None]:
        """Per chunk, the hint for its prompt, and the chunk to stop at (None: unhinted)."""
        if not self.hints:
            return [HintRound("", "")] * len(ends), None
        if not doc.evidence:
            raise TeacherError(doc.id, None, "field 'evidence' is empty, so the hinted teacher cannot tell which chunk "
                               "holds the answer. Fix: give the document evidence spans, or read it unhinted")
        return self.hints.rounds(doc, ends)

    async def read(self, doc: Document, plan: ChunkPlan, max_rounds: int) -> Trajectory:
        ends = check_plan(doc, plan, max_rounds)
        chunks = chunk_texts(doc.context, ends)
        question = question_text(doc)
        t = self.templates
        hints, stop_at = self._round_hints(doc, ends)
        n_rounds = min(len(chunks), max_rounds, stop_at + 1 if stop_at is not None else len(chunks))
        system = {"role": "system", "content": t.system}
        conversation: list[dict[str, str]] = [system]  # stream mode: grows round by round
        summary_so_far = "None yet: this is the first chunk."
        clues_so_far = "None yet."
        rounds: list[TeacherRound] = []
        cached: list[int] = []
        retries = 0
        answer = ""

        for k in range(n_rounds):
            final = k == n_rounds - 1
            last = t.last.format(chunk_number=k + 1) if final and k != stop_at else ""
            fields = dict(question=question, chunk=chunks[k], chunk_number=k + 1, num_chunks=len(chunks),
                          summary=summary_so_far, last=last + hints[k].text)
            if self.config.prompt_mode == "stream":
                user = (t.stream_first if k == 0 else t.stream_next).format(**fields)
                messages = conversation + [{"role": "user", "content": user}]
            else:
                messages = [system, {"role": "user", "content": t.round.format(**fields)}]

            fixed = None
            if self.constrains():
                fixed = self.hints.fixed(hints[k], question, clues_so_far, doc.answers[0])
            prompt_tokens = completion_tokens = cached_tokens = 0
            attempt_messages = messages
            for attempt in range(self.config.max_retries + 1):
                kind = "final" if final else "read" if self.hints else "round"
                out = await _complete_or_reject(self, doc, k, attempt_messages, self.config.max_round_tokens, kind,
                                                fixed)
                prompt_tokens += out.prompt_tokens
                completion_tokens += out.completion_tokens
                cached_tokens += out.cached_tokens
                raw = out.text
                try:
                    summary, action, reply = _parse_round(raw, final)
                    break
                except MalformedOutput as e:
                    if attempt == self.config.max_retries:
                        raise TeacherError(
                            doc.id, k, f"malformed output after {attempt + 1} attempt(s): {e}", raw
                        ) from None
                    retries += 1
                    attempt_messages = messages + [
                        {"role": "assistant", "content": raw},
                        {"role": "user", "content": t.reask.format(problem=str(e), **fields)},
                    ]

            if action == "STOP":
                answer_messages = messages + [{"role": "assistant", "content": reply}]
                out = await _complete_or_reject(self, doc, k, answer_messages, self.config.max_answer_tokens, "answer",
                                                fixed)
                prompt_tokens += out.prompt_tokens
                completion_tokens += out.completion_tokens
                cached_tokens += out.cached_tokens
                answer = _clean_answer(out.text)
                if not answer:
                    raise TeacherError(doc.id, k, f"{STOP} is not followed by an answer", out.text)
                raw = raw + out.text

            rounds.append(TeacherRound(k, summary, action, raw, prompt_tokens, completion_tokens))
            cached.append(cached_tokens)
            if action == "STOP":
                break
            summary_so_far = summary.render().strip()
            clues_so_far = summary.clues
            conversation = messages + [{"role": "assistant", "content": reply}]

        metadata = {**record_metadata(doc), "teacher_usage": {"cached_tokens": cached, "retries": retries}}
        if self.no_context_prompt:
            metadata["no_context_answer"] = await self._answer_without_context(doc, question)
        answer_score, passed = score_answer(doc, answer)
        return Trajectory(
            document_id=doc.id, question=question, context=doc.context,
            chunk_ends=ends, rounds=tuple(rounds), answer=answer, references=doc.answers, teacher=self.identity(),
            answer_passed=passed, answer_score=answer_score, source=doc.source, metadata=metadata,
        )

    async def _answer_without_context(self, doc: Document, question: str) -> str:
        """The teacher's answer to the question alone: a question it answers so does not test reading."""
        messages = [{"role": "user", "content": self.no_context_prompt.format(question=question)},
                    {"role": "assistant", "content": "Answer:"}]
        out = await _complete_or_reject(self, doc, None, messages, self.config.max_answer_tokens, "answer")
        return _clean_answer(out.text)


async def _complete_or_reject(teacher: "LLMTeacher", doc: Document, round_index: int | None,
                              messages: list[dict[str, str]], max_tokens: int, kind: ReplyKind,
                              fixed: FixedParts | None = None) -> Completion:
    try:
        return await teacher.complete(messages, max_tokens, kind, fixed)
    except RequestRejected as e:
        raise TeacherError(doc.id, round_index, f"the {teacher.name} backend rejected the request: {e}") from e


def _parse_round(raw: str, final: bool) -> tuple[Summary, Action, str]:
    """The summary, the action, and the reply as the model wrote it up to and including the action marker.

    The conversation continues with the model's own text (not a re-rendering) so the prefix cache still holds it.
    """
    positions = {action: raw.find(token) for action, token in ACTION_TOKEN.items() if token in raw}
    if not positions:
        raise MalformedOutput(f"no action: expected {READ} or {STOP} after the summary, got {quote(raw.strip(), 300)}")
    action: Action = min(positions, key=positions.get)
    if final and action != "STOP":
        raise MalformedOutput(f"this was the last round, so it must end with {STOP}, but it ends with {READ}")
    # Parsed as a READ round whatever the action: the answer after STOP is asked for in its own completion.
    summary, _, _ = parse_summary_and_action(raw[: positions[action]] + READ)
    return summary, action, raw[: positions[action] + len(ACTION_TOKEN[action])]


_ANSWER_PREFIX = re.compile(r"^\s*answer\s*:\s*", re.IGNORECASE)


def _clean_answer(text: str) -> str:
    answer = text.split(END, 1)[0]
    for marker in (READ, STOP):
        answer = answer.split(marker, 1)[0]
    return _ANSWER_PREFIX.sub("", answer).strip()
