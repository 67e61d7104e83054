"""Helpers the teacher tests share: documents with known chunk boundaries and plans that cut them there."""

from __future__ import annotations

from pipeline.chunking import ChunkPlan
from pipeline.documents import Document


def document_of_chunks(doc_id: str, chunks: list[str], question: str = "Which city is the capital of France?",
                       answers: tuple[str, ...] = ("Paris",), **fields) -> tuple[Document, ChunkPlan]:
    """A document whose context is `chunks` joined, and the plan that cuts it back into exactly those chunks."""
    ends, pos = [], 0
    for chunk in chunks:
        pos += len(chunk)
        ends.append(pos)
    doc = Document(id=doc_id, question=question, context="".join(chunks), answers=answers, **fields)
    return doc, ChunkPlan(document_id=doc_id, chunk_tokens=max(len(c.split()) for c in chunks), chunk_ends=tuple(ends))
