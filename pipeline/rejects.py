"""What every stage records about input it could not use: one record type and one jsonl file format."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.documents import DocumentError


@dataclass(frozen=True)
class Reject:
    """One unusable record: which one, which field, what is wrong and how to fix it."""

    document_id: str  # "" when the record has no readable id; `record` then locates it
    field: str
    reason: str
    fix: str
    source: str = ""  # the input file or folder
    record: int | None = None  # 1-based line number (jsonl) or row number (parquet, HF dataset)
    stage: str = ""  # read, plan, teacher, filter, ...
    checks: tuple[str, ...] = ()  # filter: the verifier checks the trajectory failed (pipeline/verify.py)
    hint: str = ""  # the hint the teacher read with ("evidence"), empty when unhinted

    def __str__(self) -> str:
        where = f"document {self.document_id!r}" if self.document_id else f"record {self.record}"
        if self.source:
            where += f" of {self.source}" + (f" (record {self.record})" if self.document_id and self.record else "")
        return f"{where}, field {self.field!r}: {self.reason}. Fix: {self.fix}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["checks"] = list(self.checks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Reject":
        return cls(
            document_id=str(d.get("document_id") or ""), field=str(d["field"]), reason=str(d["reason"]),
            fix=str(d["fix"]), source=str(d.get("source") or ""), record=d.get("record"), stage=str(d.get("stage") or ""),
            checks=tuple(d.get("checks") or ()), hint=str(d.get("hint") or ""),
        )

    @classmethod
    def from_error(cls, error: DocumentError, source: str = "", record: int | None = None, stage: str = "") -> "Reject":
        document_id = "" if error.document_id == "<missing id>" else error.document_id
        return cls(document_id, error.field_name, error.problem, error.fix, source, record, stage)


def write_rejects(path: str | os.PathLike, rejects: Iterable[Reject]) -> int:
    """Append rejects to a jsonl file (created with its folder if missing); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    # A crash mid-write can leave a torn last line; start on a fresh line so the next record stays whole.
    torn = path.exists() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
    with path.open("a", encoding="utf-8") as f:
        if torn:
            f.write("\n")
        for reject in rejects:
            f.write(json.dumps(reject.to_dict(), ensure_ascii=False) + "\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    return n


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def read_rejects(path: str | os.PathLike) -> list[Reject]:
    """The rejects of a jsonl file; a missing file has none. Lines that do not parse (a crash mid-write leaves a torn
    last line) are skipped."""
    path = Path(path)
    if not path.exists():
        return []
    rejects = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rejects.append(Reject.from_dict(json.loads(line)))
        except (json.JSONDecodeError, KeyError):
            continue
    return rejects
