"""The one document schema every source is converted into, and its validation."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any


class DocumentError(ValueError):
    """A document that cannot be used, with the document id, the field and the fix in the message."""

    def __init__(self, document_id: str, field_name: str, problem: str, fix: str):
        self.document_id, self.field_name, self.problem, self.fix = document_id, field_name, problem, fix
        super().__init__(f"document {document_id!r}, field {field_name!r}: {problem}. Fix: {fix}")


@dataclass(frozen=True)
class Evidence:
    """Where a piece of evidence lies in the context (character offsets, end exclusive).

    `heading`: the title of the paragraph it lies in, where the source has one (HotpotQA). A supporting sentence
    alone may say only "It competed with the Nintendo DS"; a clue quoting it needs the title to mean anything."""

    start: int
    end: int
    text: str
    heading: str = ""

    def one_line(self) -> str:
        """The text on one line, under its heading where it has one ("Title: sentence")."""
        text = " ".join(self.text.split())
        return f"{' '.join(self.heading.split())}: {text}" if self.heading else text


@dataclass(frozen=True)
class Document:
    id: str
    question: str
    context: str
    answers: tuple[str, ...]
    options: tuple[str, ...] = ()  # multiple choice: answers hold the correct option's letter ("A".."D")
    evidence: tuple[Evidence, ...] = ()
    source: str = ""
    license: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["answers"], d["options"] = list(self.answers), list(self.options)
        d["evidence"] = [asdict(e) for e in self.evidence]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Document":
        """Build and validate a document from a plain record (jsonl line, parquet row, HF dataset row)."""
        doc_id = str(d.get("id") or "").strip() or "<missing id>"
        for name in ("id", "question", "context", "answers"):
            if name not in d or d[name] is None:
                raise DocumentError(doc_id, name, "is missing", f"add a {name!r} value to the record")
        for name in ("id", "question", "context"):
            if not isinstance(d[name], str):
                raise DocumentError(doc_id, name, f"is a {type(d[name]).__name__}, not a string", "store it as text")
        answers = d["answers"]
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, (list, tuple)):
            raise DocumentError(doc_id, "answers", f"is a {type(answers).__name__}", "store a list of reference answers")
        try:
            evidence = tuple(
                e if isinstance(e, Evidence) else Evidence(int(e["start"]), int(e["end"]), str(e["text"]),
                                                        str(e.get("heading") or ""))
                for e in (d.get("evidence") or ())
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DocumentError(
                doc_id, "evidence", f"holds an entry that is not {{start, end, text}} ({type(e).__name__}: {e})",
                "record evidence as a list of {start, end, text} with character offsets into the context",
            ) from e
        metadata = d.get("metadata") or {}
        if isinstance(metadata, str):  # parquet corpora store metadata as JSON text
            try:
                metadata = json.loads(metadata)
            except json.JSONDecodeError as e:
                raise DocumentError(doc_id, "metadata", f"is text but not JSON ({e.msg})", "store a JSON object") from e
        if not isinstance(metadata, dict):
            raise DocumentError(doc_id, "metadata", f"is a {type(metadata).__name__}", "store metadata as an object")
        doc = cls(
            id=d["id"],
            question=d["question"],
            context=d["context"],
            answers=tuple(str(a) for a in answers),
            options=tuple(str(o) for o in (d.get("options") or ())),
            evidence=evidence,
            source=str(d.get("source") or ""),
            license=str(d.get("license") or ""),
            metadata=dict(metadata),
        )
        doc.validate()
        return doc

    def validate(self) -> None:
        if not self.id.strip():
            raise DocumentError("<missing id>", "id", "is empty", "give every document a unique, non-empty id")
        if not self.question.strip():
            raise DocumentError(self.id, "question", "is empty", "give the document the question it answers")
        if not self.context.strip():
            raise DocumentError(self.id, "context", "is empty", "drop the document or supply its text")
        if not self.answers or not any(a.strip() for a in self.answers):
            raise DocumentError(self.id, "answers", "holds no answer", "add at least one reference answer")
        if self.options:
            letters = [chr(ord("A") + i) for i in range(len(self.options))]
            bad = [a for a in self.answers if a not in letters]
            if bad:
                raise DocumentError(
                    self.id, "answers", f"{bad} are not option letters {letters}",
                    "for multiple choice, store the correct option's letter as the answer",
                )
        for e in self.evidence:
            if not (0 <= e.start <= e.end <= len(self.context)) or self.context[e.start : e.end] != e.text:
                raise DocumentError(
                    self.id, "evidence", f"span [{e.start}, {e.end}) does not hold its text {e.text[:40]!r}",
                    "record evidence as character offsets into the context",
                )


_SENTENCE_END = re.compile(r"[.?!](?=\s)|\n")


def sentence_around(context: str, start: int, end: int) -> Evidence:
    """The sentence (or line) of `context` that holds context[start:end], as an evidence span."""
    before = [m.end() for m in _SENTENCE_END.finditer(context, 0, start)]
    left = before[-1] if before else 0
    after = _SENTENCE_END.search(context, end)
    right = after.end() if after else len(context)
    while left < start and context[left].isspace():
        left += 1
    return Evidence(left, right, context[left:right])


def question_text(doc: Document) -> str:
    """The question as the reader sees it: multiple-choice options are part of it."""
    if not doc.options:
        return doc.question
    letters = [chr(ord("A") + i) for i in range(len(doc.options))]
    lines = [f"{letter}. {option}" for letter, option in zip(letters, doc.options)]
    return doc.question + "\n" + "\n".join(lines) + "\nAnswer with the letter of the correct option."


def chunk_texts(context: str, chunk_ends: tuple[int, ...] | list[int]) -> list[str]:
    """The chunks a plan cuts a context into, from each chunk's end offset."""
    starts = (0, *chunk_ends[:-1])
    return [context[s:e] for s, e in zip(starts, chunk_ends)]
