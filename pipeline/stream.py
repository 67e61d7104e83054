"""The end-to-end multi-round reading (EMR) stream: one specification, used by teachers, students and evaluation.

A stream is one continuous text, read left to right with no re-prefill between rounds:

    <query>QUESTION
    <chunk>CHUNK 1<summary>Target: ...
    Clues: ...
    Reason: ...
    <READ><chunk>CHUNK 2<summary>Target: ...
    ...
    Reason: ...
    <STOP>ANSWER<end>

The reader (or the data collator) writes the query, the chunks and the role markers `<chunk>` / `<summary>`;
the model writes the summary body, the action and, after `<STOP>`, the answer and `<end>`. The loss mask follows
that split exactly: loss on summary, action and answer tokens, never on query or chunk tokens. See
docs/stream-format.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

QUERY = "<query>"
CHUNK = "<chunk>"
SUMMARY = "<summary>"
READ = "<READ>"
STOP = "<STOP>"
END = "<end>"

# Added to every tokenizer as special tokens so that each marker is exactly one token.
SPECIAL_TOKENS: tuple[str, ...] = (QUERY, CHUNK, SUMMARY, READ, STOP, END)

Action = Literal["READ", "STOP"]
ACTION_TOKEN: dict[str, str] = {"READ": READ, "STOP": STOP}

# Roles of the spans of a rendered stream. Only LOSS_ROLES are trained on.
Role = Literal["query", "chunk", "summary", "action", "answer"]
LOSS_ROLES: frozenset[str] = frozenset({"summary", "action", "answer"})

SUMMARY_FIELDS: tuple[str, ...] = ("Target", "Clues", "Reason")


class MalformedOutput(ValueError):
    """A teacher's or student's raw output does not follow the stream format."""


@dataclass(frozen=True)
class Summary:
    """The running summary a reader keeps after each chunk."""

    target: str  # the task, restated so it never scrolls out of a sliding window
    clues: str  # what has been found so far that matters
    reason: str  # why the clues changed (or did not) with this chunk

    def render(self) -> str:
        return f"Target: {self.target}\nClues: {self.clues}\nReason: {self.reason}\n"


@dataclass(frozen=True)
class Span:
    role: Role
    start: int  # character offsets into the rendered text, end exclusive
    end: int


@dataclass(frozen=True)
class StreamRound:
    chunk: str
    summary: Summary
    action: Action


@dataclass(frozen=True)
class RenderedStream:
    text: str
    spans: tuple[Span, ...]


def render_prefix(question: str) -> str:
    return f"{QUERY}{question}\n"


def render_chunk(chunk: str) -> str:
    """What the reader feeds for one chunk: the chunk and the marker that asks for a summary."""
    return f"{CHUNK}{chunk}{SUMMARY}"


def render_stream(question: str, rounds: list[StreamRound], answer: str) -> RenderedStream:
    """Render a trajectory to the EMR text and the role of every character.

    The last round must be the one that stops; a stream that never stops has no answer to learn.
    """
    if not rounds:
        raise ValueError("a stream needs at least one round (chunk + summary + action)")
    for i, r in enumerate(rounds):
        last = i == len(rounds) - 1
        if last and r.action != "STOP":
            raise ValueError(f"round {i} is the last round but its action is {r.action!r}; the last round must STOP")
        if not last and r.action != "READ":
            raise ValueError(f"round {i} stops but {len(rounds) - 1 - i} round(s) follow it; only the last round may STOP")

    parts: list[tuple[Role, str]] = [("query", render_prefix(question))]
    for r in rounds:
        parts.append(("chunk", render_chunk(r.chunk)))
        parts.append(("summary", r.summary.render()))
        parts.append(("action", ACTION_TOKEN[r.action]))
    parts.append(("answer", f"{answer}{END}"))

    spans, text, pos = [], [], 0
    for role, piece in parts:
        spans.append(Span(role, pos, pos + len(piece)))
        text.append(piece)
        pos += len(piece)
    return RenderedStream("".join(text), tuple(spans))


def loss_mask_for_offsets(spans: tuple[Span, ...], offsets: list[tuple[int, int]]) -> list[bool]:
    """Loss mask per token, from the tokenizer's character offsets (end exclusive).

    A token is trained on when it starts inside a span whose role is in LOSS_ROLES.
    """
    mask, i = [], 0
    for start, _end in offsets:
        while i < len(spans) and spans[i].end <= start:
            i += 1
        mask.append(i < len(spans) and spans[i].start <= start and spans[i].role in LOSS_ROLES)
    return mask


_FIELD_RE = re.compile(r"^\s*(Target|Clues|Reason)\s*:\s*", re.MULTILINE)


def parse_summary_and_action(raw: str) -> tuple[Summary, Action, str | None]:
    """Parse what a model wrote after `<summary>`: the three fields, the action and (after STOP) the answer.

    Returns (summary, action, answer); answer is None for READ. Raises MalformedOutput quoting what was wrong.
    """
    text = raw.strip()
    has_read, has_stop = READ in text, STOP in text
    if not has_read and not has_stop:
        raise MalformedOutput(f"no action: expected {READ} or {STOP} after the summary, got {quote(text)}")
    cut = min(i for i in (text.find(READ), text.find(STOP)) if i >= 0)
    action: Action = "STOP" if text.startswith(STOP, cut) else "READ"
    body, rest = text[:cut], text[cut + len(ACTION_TOKEN[action]) :]

    fields: dict[str, str] = {}
    matches = list(_FIELD_RE.finditer(body))
    for m, nxt in zip(matches, matches[1:] + [None]):
        name = m.group(1)
        if name in fields:
            raise MalformedOutput(f"field {name!r} appears twice in {quote(body)}")
        fields[name] = body[m.end() : nxt.start() if nxt else len(body)].strip()
    missing = [f for f in SUMMARY_FIELDS if f not in fields]
    if missing:
        raise MalformedOutput(f"summary is missing field(s) {', '.join(missing)}: {quote(body)}")
    if not fields["Target"]:
        raise MalformedOutput(f"field 'Target' is empty in {quote(body)}")
    summary = Summary(fields["Target"], fields["Clues"], fields["Reason"])

    if action == "READ":
        return summary, action, None
    answer = rest.split(END, 1)[0].strip()
    if answer.lower().startswith("answer:"):
        answer = answer[len("answer:") :].strip()
    if not answer:
        raise MalformedOutput(f"{STOP} is not followed by an answer: {quote(text)}")
    return summary, action, answer


def quote(text: str, limit: int = 200) -> str:
    """A piece of text for an error message: repr'd, so whitespace shows, and cut at `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "…")
