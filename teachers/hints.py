"""The hinted teacher's parts (`hint: evidence`): rationalization, as in STaR and the paper's reasoning traces.

Each round's prompt tells the teacher whether its chunk holds evidence (quoting it) and, at the chunk that completes
the evidence, the reference answer, so it writes the summary a reader should have written. With structured output
what the hint settles is written as given (`FixedParts`); the model writes the rest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.documents import Document, Evidence

HINTS_DIR = Path(__file__).resolve().parent / "prompts" / "hints"
HINTS: tuple[str, ...] = ("none", "evidence")
# A chunk with nothing, with evidence, with the last evidence (and the answer): one prompt file each.
HINT_PARTS: tuple[str, ...] = ("nothing", "evidence", "complete")
HINT_TEMPLATE = "evidence_v1"
NO_CONTEXT_TEMPLATE = "no_context_v1.question"
HINT_QUOTE_CHARS = 400  # evidence quoted in a hint is cut to this length
# What a hinted teacher with structured output writes as given: Target (the question), Clues of a chunk without
# evidence (unchanged), the opening of a new clue (the clues so far, then the evidence's title or first words), the
# Reason's opening words, the answer (the reference). The action follows the hint. The model writes the rest: each
# new clue after its opening and every Reason after its opening.
HINT_FIXED: tuple[str, ...] = ("target", "clues_without_evidence", "clue_opening", "reason_opening", "answer",
                               "action")
# The Reason's opening per hint part: without it a 135M teacher often repeats its Clues as the Reason.
REASON_OPENING = {"nothing": "This chunk ", "evidence": "This chunk adds ", "complete": "With this chunk, "}
NO_CLUES = "None yet."
CLUE_OPENING_WORDS = 4  # a new clue opens with the evidence's title, or else its first words


@dataclass(frozen=True)
class HintRound:
    part: str  # nothing | evidence | complete
    text: str  # appended to the round's prompt
    clue_opening: str = ""  # how the clue of the evidence this chunk brings begins


def clue_opening(evidence: Evidence) -> str:
    """Evidence with a heading (HotpotQA's supporting sentences) or a titled paragraph ("Title\nsentences") opens
    its clue with "Title:", a sentence with its first words."""
    if evidence.heading:
        return " ".join(evidence.heading.split()) + ":"
    title, _, body = evidence.text.strip().partition("\n")
    if body.strip():
        return " ".join(title.split()) + ":"
    return " ".join(title.split()[:CLUE_OPENING_WORDS])


@dataclass(frozen=True)
class FixedParts:
    """Parts of a reply known in advance (a hinted teacher with structured output): decoding writes them as they
    are and the model writes the rest. None: the model writes that part."""

    target: str | None = None
    clues: str | None = None
    clues_prefix: str = ""  # the Clues' opening words when `clues` is None; the model completes them
    reason_prefix: str = ""  # the Reason's opening words; the model completes it
    answer: str | None = None


def fixable(text: str) -> str | None:
    """`text` as a fixed summary line, or None when it cannot be one (a line holds no newline and no '<')."""
    line = " ".join(text.split())
    return line if line and "<" not in line else None


def no_context_prompt() -> str:
    """The question alone (MemAgent's no-context check): `{question}` is filled in."""
    return (HINTS_DIR / f"{NO_CONTEXT_TEMPLATE}.txt").read_text(encoding="utf-8")


class EvidenceHints:
    """The texts of `hint: evidence`, and which one each chunk of a document gets."""

    def __init__(self):
        self.texts = {part: (HINTS_DIR / f"{HINT_TEMPLATE}.{part}.txt").read_text(encoding="utf-8")
                      for part in HINT_PARTS}

    def identity(self, constrained: bool) -> dict[str, Any]:
        text = "\0".join(self.texts[part] for part in HINT_PARTS)
        out: dict[str, Any] = {"hint": "evidence", "hint_template": HINT_TEMPLATE,
                               "hint_sha256": hashlib.sha256(text.encode()).hexdigest()}
        if constrained:
            out["hint_fixed"] = list(HINT_FIXED)
        return out

    def rounds(self, doc: Document, ends: tuple[int, ...]) -> tuple[list[HintRound], int]:
        """Per chunk, its hint; and the chunk that completes the evidence (stop there).

        Evidence counts as read in the chunk where it ends, as for the rule teacher. The document must have evidence.
        """
        found = [next(i for i, end in enumerate(ends) if e.end <= end) for e in doc.evidence]
        last = max(found)
        hints = []
        for k in range(len(ends)):
            arriving = [e for e, i in zip(doc.evidence, found) if i == k]
            quoted = " ".join(e.one_line() for e in arriving)
            if len(quoted) > HINT_QUOTE_CHARS:
                quoted = quoted[: HINT_QUOTE_CHARS - 1] + "…"
            part = "complete" if k == last else "evidence" if quoted else "nothing"
            text = self.texts[part].format(evidence=quoted, answer=doc.answers[0].strip())
            hints.append(HintRound(part, text, clue_opening(arriving[0]) if arriving else ""))
        return hints, last

    @staticmethod
    def fixed(hint: HintRound, question: str, clues_so_far: str, answer: str) -> FixedParts:
        """The parts of a hinted round written as given. A chunk that brings evidence keeps the clues so far and
        opens the new clue; the model writes the clue itself."""
        kept = fixable(clues_so_far) or ""
        opening = fixable(hint.clue_opening) or ""
        prefix = " ".join(p for p in (kept if kept != NO_CLUES else "", opening) if p)
        return FixedParts(target=fixable(question), clues=kept if hint.part == "nothing" else None,
                          clues_prefix=prefix + " " if prefix and hint.part != "nothing" else "",
                          reason_prefix=REASON_OPENING[hint.part], answer=fixable(answer))
