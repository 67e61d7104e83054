"""Prompt templates of the LLM teachers (versioned text files in teachers/prompts/) and the regexes that
structured output constrains a round's reply to."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.stream import READ, STOP
from teachers.hints import FixedParts

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
PromptMode = Literal["summary", "stream"]
ReplyKind = Literal["round", "read", "final", "answer"]
# The parts of one prompt family; each is a file PROMPTS_DIR / f"{name}.{part}.txt".
PROMPT_PARTS: tuple[str, ...] = ("system", "round", "stream_first", "stream_next", "last", "reask")


@dataclass(frozen=True)
class PromptTemplates:
    """One versioned prompt family, loaded from teachers/prompts/NAME.PART.txt and rendered with str.format."""

    name: str
    system: str
    round: str  # summary mode: question, summary so far, chunk k
    stream_first: str  # stream mode: the question and chunk 1
    stream_next: str  # stream mode: chunk k > 1
    last: str  # appended when the teacher must stop and answer this round
    reask: str  # follows a malformed reply: what was wrong, and the format again

    @classmethod
    def load(cls, name: str = "smooth_reading_v1", folder: Path = PROMPTS_DIR) -> "PromptTemplates":
        parts = {}
        for part in PROMPT_PARTS:
            path = folder / f"{name}.{part}.txt"
            if not path.is_file():
                raise FileNotFoundError(
                    f"prompt template {name!r} has no part {part!r}: {path} is missing. "
                    f"Fix: add the file or choose a template from {sorted(_template_names(folder))}"
                )
            parts[part] = path.read_text(encoding="utf-8")
        return cls(name=name, **parts)

    @property
    def sha256(self) -> str:
        h = hashlib.sha256()
        for part in PROMPT_PARTS:
            h.update(part.encode() + b"\0" + getattr(self, part).encode() + b"\0")
        return h.hexdigest()


def _template_names(folder: Path) -> set[str]:
    return {p.name.split(".", 1)[0] for p in folder.glob("*.txt")}


def _literal(text: str) -> str:
    # re.escape escapes spaces too, which grammar compilers (xgrammar) warn about; a space needs no escape.
    return re.escape(text).replace("\\ ", " ")


def summary_regex(field_max_chars: int, kind: ReplyKind, fixed: FixedParts | None = None) -> str:
    """The format of one summary round of `kind` ("round": READ or STOP, "read", "final"), as a regex for
    structured output; `fixed` parts are written as they are."""
    fixed = fixed or FixedParts()
    line = f"[^\\n<]{{1,{field_max_chars}}}"
    target = _literal(fixed.target) if fixed.target else line
    clues = _literal(fixed.clues) if fixed.clues else _literal(fixed.clues_prefix) + line
    action = {"final": re.escape(STOP), "read": re.escape(READ)}.get(kind, f"({re.escape(READ)}|{re.escape(STOP)})")
    return f"Target: {target}\\nClues: {clues}\\nReason: {_literal(fixed.reason_prefix)}{line}\\n{action}"


def answer_regex(field_max_chars: int, fixed: FixedParts | None = None) -> str:
    if fixed is not None and fixed.answer:
        return f" {_literal(fixed.answer)}"
    return f" ?[^\\n<]{{1,{field_max_chars}}}"
