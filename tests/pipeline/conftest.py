"""Helpers the pipeline tests share: trajectories built by hand, with known rounds and token counts."""

from __future__ import annotations

from pipeline.stream import Summary
from pipeline.trajectory import TeacherRound, Trajectory


def make_trajectory(document_id: str, n_chunks: int = 3, n_rounds: int | None = None, passed: bool = True,
                    source: str = "test") -> Trajectory:
    """A trajectory over `n_chunks` chunks of a made-up context that stops after `n_rounds` (default: all)."""
    chunks = [f"Chunk {i} of {document_id} says the number is {i}.\n\n" for i in range(n_chunks)]
    ends, pos = [], 0
    for c in chunks:
        pos += len(c)
        ends.append(pos)
    n_rounds = n_chunks if n_rounds is None else n_rounds
    rounds = tuple(
        TeacherRound(
            chunk_index=i,
            summary=Summary("find the number", f"chunk {i} says {i}", "a new chunk was read"),
            action="STOP" if i == n_rounds - 1 else "READ",
            raw="raw text", prompt_tokens=100 + i, completion_tokens=10,
        )
        for i in range(n_rounds)
    )
    return Trajectory(
        document_id=document_id, question="What is the number?", context="".join(chunks), chunk_ends=tuple(ends),
        rounds=rounds, answer=str(n_rounds - 1), references=(str(n_rounds - 1),),
        teacher={"name": "rules", "prompt_sha256": "abc"}, answer_passed=passed, answer_score=1.0 if passed else 0.0,
        source=source, metadata={"seed": 0},
    )
