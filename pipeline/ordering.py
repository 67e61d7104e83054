"""Records in the order their documents were read, whatever order the teachers finish them in.

Teachers finish documents in an order set by timing (engine batching, actor restarts, retries). Writing in that
order would give a different corpus on every run of the same config. `in_read_order` holds each finished record
until every document read before it has finished, so shards, rejects and manifest are the same bytes on every run.

On resume the documents already done are skipped and the rest keep their relative order, so the records released
after a rerun continue exactly where the interrupted run's released prefix ended.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Record = TypeVar("Record")


def in_read_order(
    records: Iterable[Record], read_order: list[str], document_id: Callable[[Record], str]
) -> Iterator[Record]:
    """Yield `records` (one per document of `read_order`) sorted by their document's place in `read_order`.

    Memory is bounded by how far finishing runs ahead of reading: the records that finished before an earlier,
    still unfinished document.
    """
    rank = {doc_id: i for i, doc_id in enumerate(read_order)}
    if len(rank) != len(read_order):
        raise ValueError("in_read_order: document ids must be unique (the validate stage makes them so)")
    held: dict[int, Record] = {}
    next_rank = 0
    for record in records:
        doc_id = document_id(record)
        if doc_id not in rank:
            raise ValueError(f"in_read_order: a record for document {doc_id!r}, which was never read")
        i = rank[doc_id]
        if i < next_rank or i in held:
            raise ValueError(f"in_read_order: document {doc_id!r} finished twice")
        held[i] = record
        while next_rank in held:
            yield held.pop(next_rank)
            next_rank += 1
    if held:
        missing = [read_order[i] for i in range(next_rank, len(read_order)) if i not in held][:5]
        raise ValueError(f"in_read_order: documents {missing} never finished; the records after them were held back")
