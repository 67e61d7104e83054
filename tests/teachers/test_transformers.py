"""The transformers teacher on the real tiny Llama: batching of concurrent rounds and the malformed-output path.

Random weights do not follow the summary format, so every document must be rejected with the model's own
output quoted: the path a job takes when a weak teacher wanders off format.
"""

from __future__ import annotations

import asyncio

import pytest

from pipeline.stream import READ, STOP
from teachers import build_teacher
from teachers.base import TeacherError
from teachers.hf import MicroBatcher
from tests.teachers.conftest import document_of_chunks

PARAGRAPH = "Paris is the capital of France. Lyon lies on the Rhone. "


@pytest.fixture(scope="module")
def hf_teacher(tiny_llama_dir):
    return build_teacher({"backend": "transformers", "model": str(tiny_llama_dir), "max_round_tokens": 12,
                          "max_answer_tokens": 8, "max_batch_size": 4, "batch_wait_ms": 20})


def test_random_weights_are_rejected_with_their_output_quoted(hf_teacher):
    docs = [document_of_chunks(f"doc-{i}", [PARAGRAPH] * 3, question=f"Question {i}?") for i in range(4)]

    async def read_all():
        return await asyncio.gather(*(hf_teacher.read(d, p, max_rounds=3) for d, p in docs), return_exceptions=True)

    before = len(hf_teacher.batcher.batch_sizes)
    results = asyncio.run(read_all())
    for (doc, _), result in zip(docs, results):
        assert isinstance(result, TeacherError), result
        assert result.document_id == doc.id and result.round_index == 0
        assert "malformed output after 2 attempt(s)" in str(result)
        # The quoted output is what the model generated.
        assert result.output and repr(result.output)[:40] in str(result)
    # Four documents' first rounds (and then their re-asks) ran as batches of four, not one by one.
    assert hf_teacher.batcher.batch_sizes[before:] == [4, 4]


def test_a_completion_reports_prompt_and_completion_tokens(hf_teacher):
    messages = [{"role": "system", "content": "Read."}, {"role": "user", "content": PARAGRAPH}]
    out = asyncio.run(hf_teacher.complete(messages, 5, "round"))
    prompt = hf_teacher.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert out.prompt_tokens == len(hf_teacher.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert 1 <= out.completion_tokens <= 5
    # A round's text ends at its action when the model writes one; nothing after it is kept.
    for marker in (READ, STOP):
        assert marker not in out.text or out.text.endswith(marker)


def test_a_failing_batch_fails_every_caller_and_the_next_batch_runs():
    calls = []

    def run_batch(key, items):
        calls.append(list(items))
        if "boom" in items:
            raise RuntimeError("out of memory")
        return [item.upper() for item in items]

    async def go():
        batcher = MicroBatcher(run_batch, max_batch_size=8, wait_s=0.01)
        first = await asyncio.gather(*(batcher.submit("k", x) for x in ["a", "boom", "c"]), return_exceptions=True)
        second = await asyncio.gather(*(batcher.submit("k", x) for x in ["d", "e"]))
        return first, second

    first, second = asyncio.run(go())
    assert all(isinstance(r, RuntimeError) for r in first)
    assert second == ["D", "E"]
    assert calls == [["a", "boom", "c"], ["d", "e"]]


def test_a_prompt_past_the_models_positions_rejects_only_its_document(hf_teacher):
    doc, plan = document_of_chunks("doc-too-long", [PARAGRAPH * 400, PARAGRAPH])  # > 4096 positions
    with pytest.raises(TeacherError, match=r"doc-too-long'?, round 0: the transformers backend rejected the request: "
                                           r"the prompt has \d+ tokens .* 4096 positions"):
        asyncio.run(hf_teacher.read(doc, plan, max_rounds=3))
