"""A teacher's reading of one document: the record the corpus stores and the students learn from."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.documents import chunk_texts
from pipeline.stream import Action, RenderedStream, StreamRound, Summary, render_stream


@dataclass(frozen=True)
class TeacherRound:
    """One round: the teacher read chunk `chunk_index` and wrote a summary and an action."""

    chunk_index: int
    summary: Summary
    action: Action
    raw: str = ""  # the teacher's output before parsing, kept for audit
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Trajectory:
    document_id: str
    question: str
    context: str
    chunk_ends: tuple[int, ...]  # character offsets; chunk i is context[chunk_ends[i-1]:chunk_ends[i]]
    rounds: tuple[TeacherRound, ...]
    answer: str
    references: tuple[str, ...]
    teacher: dict[str, Any]  # name, model, sampling settings, prompt template hash
    answer_passed: bool = False
    answer_score: float = 0.0
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def chunks(self) -> list[str]:
        return chunk_texts(self.context, self.chunk_ends)

    @property
    def prompt_tokens(self) -> int:
        return sum(r.prompt_tokens for r in self.rounds)

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.rounds)

    def render(self) -> RenderedStream:
        chunks = self.chunks
        return render_stream(
            self.question,
            [StreamRound(chunks[r.chunk_index], r.summary, r.action) for r in self.rounds],
            self.answer,
        )

    def to_record(self) -> dict[str, Any]:
        """A flat, parquet-friendly record (nested values are lists of structs, metadata is JSON text)."""
        d = asdict(self)
        d["chunk_ends"] = list(self.chunk_ends)
        d["references"] = list(self.references)
        d["rounds"] = [
            {**asdict(r), "summary": asdict(r.summary)} for r in self.rounds
        ]
        d["teacher"] = json.dumps(self.teacher, sort_keys=True)
        d["metadata"] = json.dumps(self.metadata, sort_keys=True)
        d["prompt_tokens"], d["completion_tokens"] = self.prompt_tokens, self.completion_tokens
        d["content_hash"] = self.content_hash()
        return d

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> "Trajectory":
        return cls(
            document_id=d["document_id"],
            question=d["question"],
            context=d["context"],
            chunk_ends=tuple(d["chunk_ends"]),
            rounds=tuple(
                TeacherRound(
                    chunk_index=r["chunk_index"],
                    summary=Summary(**r["summary"]),
                    action=r["action"],
                    raw=r.get("raw", ""),
                    prompt_tokens=r.get("prompt_tokens", 0),
                    completion_tokens=r.get("completion_tokens", 0),
                )
                for r in d["rounds"]
            ),
            answer=d["answer"],
            references=tuple(d["references"]),
            teacher=json.loads(d["teacher"]) if isinstance(d["teacher"], str) else dict(d["teacher"]),
            answer_passed=bool(d.get("answer_passed", False)),
            answer_score=float(d.get("answer_score", 0.0)),
            source=d.get("source", ""),
            metadata=json.loads(d["metadata"]) if isinstance(d.get("metadata"), str) else dict(d.get("metadata") or {}),
        )

    def content_hash(self) -> str:
        """Stable hash of what the student learns from (not of token counts or raw teacher text)."""
        payload = {
            "document_id": self.document_id,
            "question": self.question,
            "context": self.context,
            "chunk_ends": list(self.chunk_ends),
            "rounds": [[r.chunk_index, asdict(r.summary), r.action] for r in self.rounds],
            "answer": self.answer,
            "teacher": self.teacher,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
