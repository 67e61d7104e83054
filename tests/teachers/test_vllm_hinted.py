"""The hinted teacher on the real vLLM CPU engine: what the hint settles is decoded as given (structured output),
even by the tiny random-weight Llama; the model writes only the rest."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from pipeline.documents import Evidence
from teachers import build_teacher
from tests.teachers.conftest import document_of_chunks

pytestmark = pytest.mark.slow


def test_the_engine_writes_the_fixed_parts_and_stops_at_the_evidence(tiny_llama_dir):
    teacher = build_teacher({
        "backend": "vllm", "model": str(tiny_llama_dir), "dtype": "float32", "max_model_len": 2048,
        "max_num_seqs": 4, "kv_cache_gb": 1, "enforce_eager": True, "prompt_mode": "summary",
        "structured_output": True, "field_max_chars": 12, "max_round_tokens": 96, "max_answer_tokens": 16,
        "sampling": {"temperature": 0.0}, "hint": "evidence",
    })
    chunks = ["Lyon lies on the Rhone. ", "Nice has a beach. ", "Paris is the capital of France. ", "Lille. "]
    doc, plan = document_of_chunks("doc-hinted", chunks, answers=("Paris",))
    start = doc.context.index("Paris")
    needle = "Paris is the capital of France."
    doc = dataclasses.replace(doc, evidence=(Evidence(start, start + len(needle), needle),))

    async def read():
        try:
            return await teacher.read(doc, plan, max_rounds=4)
        finally:
            await teacher.close()

    traj = asyncio.run(read())
    assert [r.action for r in traj.rounds] == ["READ", "READ", "STOP"]  # stops on the evidence chunk
    assert all(r.summary.target == doc.question for r in traj.rounds)
    assert [r.summary.clues for r in traj.rounds[:2]] == ["None yet.", "None yet."]
    assert traj.rounds[2].summary.clues.startswith("Paris is the capital ")  # the opening; the model wrote the rest
    assert [r.summary.reason.split(" ", 2)[:2] for r in traj.rounds] == [["This", "chunk"]] * 2 + [["With", "this"]]
    assert traj.answer == "Paris" and traj.answer_passed
    assert traj.teacher["hint"] == "evidence" and "clue_opening" in traj.teacher["hint_fixed"]
