"""Read documents from jsonl, parquet or a saved Hugging Face dataset; bad records become Rejects, the rest is read."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline.documents import Document, DocumentError
from pipeline.rejects import Reject

READ_STAGE = "read"


def input_kind(path: str | os.PathLike) -> str:
    """"jsonl", "parquet" or "hf_dataset", from the path; a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            return "hf_dataset"
        raise ValueError(
            f"{path} is a folder but not a saved Hugging Face dataset (no state.json or dataset_dict.json). "
            "Fix: pass a .jsonl or .parquet file, or a folder written by Dataset.save_to_disk"
        )
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist. Fix: check the input path")
    if path.name.endswith(".jsonl"):
        return "jsonl"
    if path.name.endswith(".parquet"):
        return "parquet"
    raise ValueError(
        f"cannot tell the format of {path} from its name. Fix: name jsonl files *.jsonl and parquet files *.parquet, "
        "or pass a folder written by Dataset.save_to_disk"
    )


def read_documents(path: str | os.PathLike) -> Iterator[Document | Reject]:
    """Every record of the input, in order, as a Document, or as a Reject saying what is wrong and how to fix it.

    A document id seen before is a Reject too (the first one is kept): ids key resumption and deduplication.
    """
    kind = input_kind(path)
    source = str(path)
    records = {"jsonl": _jsonl_records, "parquet": _parquet_records, "hf_dataset": _hf_dataset_records}[kind](Path(path))
    first_seen: dict[str, int] = {}
    for number, record in records:
        if isinstance(record, Reject):
            yield record
            continue
        item = _to_document(record, source, number)
        if isinstance(item, Document):
            if item.id in first_seen:
                item = Reject(
                    item.id, "id", f"duplicates the id of record {first_seen[item.id]} (that one is kept)",
                    "give every document a unique id", source, number, READ_STAGE,
                )
            else:
                first_seen[item.id] = number
        yield item


def documents_only(items: Iterable[Document | Reject], rejects: list[Reject]) -> Iterator[Document]:
    """The documents of a reader's output; the rejects are collected into `rejects` on the way."""
    for item in items:
        if isinstance(item, Reject):
            rejects.append(item)
        else:
            yield item


def _to_document(record: Any, source: str, number: int) -> Document | Reject:
    if not isinstance(record, dict):
        return Reject(
            "", "<record>", f"is a JSON {type(record).__name__}, not an object",
            "write one JSON object per line with id, question, context and answers", source, number, READ_STAGE,
        )
    try:
        return Document.from_dict(record)
    except DocumentError as e:
        return Reject.from_error(e, source, number, READ_STAGE)


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict | Reject]]:
    source = str(path)
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # editors on Windows write a BOM
            except UnicodeDecodeError as e:
                yield number, Reject(
                    "", "<line>", f"byte {raw[e.start:e.start + 1]!r} at column {e.start + 1} is not UTF-8",
                    "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)", source, number, READ_STAGE,
                )
                continue
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as e:
                yield number, Reject(
                    "", "<line>", f"is not valid JSON ({e.msg} at column {e.colno})",
                    "write one complete JSON object per line", source, number, READ_STAGE,
                )


def _parquet_records(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield number, row


def _hf_dataset_records(path: Path) -> Iterator[tuple[int, dict]]:
    import datasets

    loaded = datasets.load_from_disk(str(path))
    splits = loaded.values() if isinstance(loaded, datasets.DatasetDict) else [loaded]
    number = 0
    for split in splits:
        for row in split:
            number += 1
            yield number, row
