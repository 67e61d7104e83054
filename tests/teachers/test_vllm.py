"""The real vLLM CPU engine on the tiny Llama: several documents at once, structured output, prefix caching.

The tiny Llama has random weights, so structured output is what makes its replies parse; that is the feature
under test together with the engine. One engine serves the whole module (init takes ~20 s) on one event loop.
"""

from __future__ import annotations

import asyncio

import pytest

from pipeline.stream import parse_summary_and_action
from teachers import build_teacher
from teachers.base import TeacherError
from tests.teachers.conftest import document_of_chunks
from tests.tiny_models import stop_spelling_bias

pytestmark = pytest.mark.slow

PARAGRAPH = "Paris is the capital of France. Lyon lies on the Rhone and the Saone. " * 3 + "\n\n"


@pytest.fixture(scope="module")
def engine_teacher(tiny_llama_dir, stream_tokenizer):
    teacher = build_teacher({
        "backend": "vllm", "model": str(tiny_llama_dir), "dtype": "float32", "max_model_len": 2048,
        "max_num_seqs": 8, "kv_cache_gb": 1, "enforce_eager": True, "prompt_mode": "stream",
        "structured_output": True, "field_max_chars": 12, "max_round_tokens": 64, "max_answer_tokens": 16,
        "sampling": {"temperature": 0.0, "logit_bias": stop_spelling_bias(stream_tokenizer)},
    })
    loop = asyncio.new_event_loop()
    yield teacher, loop
    loop.run_until_complete(teacher.close())
    loop.close()


def test_several_documents_concurrently_with_prefix_caching(engine_teacher):
    teacher, loop = engine_teacher
    docs = [document_of_chunks(f"doc-{i}", [PARAGRAPH] * 4, question=f"Question {i}: which city is the capital?")
            for i in range(4)]

    async def read_all():
        return await asyncio.gather(*(teacher.read(d, p, max_rounds=3) for d, p in docs))

    trajectories = loop.run_until_complete(read_all())
    for (doc, plan), traj in zip(docs, trajectories):
        assert traj.document_id == doc.id and traj.chunk_ends == plan.chunk_ends
        assert [r.action for r in traj.rounds] == ["READ", "READ", "STOP"] and traj.answer  # the cap is 3
        assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in traj.rounds)
        assert traj.teacher["name"] == "vllm" and traj.teacher["prompt_mode"] == "stream"
        # The record the corpus stores renders to a stream whose last summary parses back.
        last = traj.render().text.rsplit("<summary>", 1)[1]
        assert parse_summary_and_action(last)[1:] == ("STOP", traj.answer)
        assert type(traj).from_record(traj.to_record()) == traj

    # In stream mode round k's prompt extends round k-1's conversation: the engine serves it from the cache.
    for traj in trajectories:
        cached = traj.metadata["teacher_usage"]["cached_tokens"]
        assert all(c > 0 for c in cached[1:]), cached
    stats = teacher.prefix_cache_stats()
    assert stats["queries"] > 0 and 0 < stats["hits"] <= stats["queries"]


def test_a_prompt_past_max_model_len_rejects_only_its_document(engine_teacher):
    teacher, loop = engine_teacher
    long_doc, long_plan = document_of_chunks("doc-long", [PARAGRAPH * 40, PARAGRAPH])
    with pytest.raises(TeacherError, match=r"doc-long'?, round 0: the vllm backend rejected the request: .*max_model_len"):
        loop.run_until_complete(teacher.read(long_doc, long_plan, max_rounds=3))


def test_reset_prefix_cache_makes_a_second_read_compute_its_first_round_again(engine_teacher):
    # The throughput benchmark times several passes over the same documents on one engine: each pass must pay the
    # prefill the first did, not read the previous pass's blocks back.
    teacher, loop = engine_teacher
    doc, plan = document_of_chunks("doc-again", [PARAGRAPH] * 2, question="Which river runs through Lyon, again?")

    def first_round_cached() -> int:
        return loop.run_until_complete(teacher.read(doc, plan, max_rounds=2)).metadata["teacher_usage"]["cached_tokens"][0]

    loop.run_until_complete(teacher.reset_prefix_cache())
    cold = first_round_cached()
    assert first_round_cached() > cold, "the same first prompt again is served from the cache"
    loop.run_until_complete(teacher.reset_prefix_cache())
    assert first_round_cached() == cold


def test_the_engine_takes_vllms_offline_scheduler_budget(engine_teacher):
    # AsyncLLM's own default step budget is the server one (2,048 tokens on CPU, against LLM's 4,096): the generate
    # job is batch work, and the throughput benchmark compares it with LLM.generate on equal engine settings.
    from vllm import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    teacher, loop = engine_teacher

    async def started():
        return teacher._start()

    engine = loop.run_until_complete(started())
    offline = EngineArgs(model=teacher.config.model, max_model_len=teacher.config.max_model_len,
                         max_num_seqs=teacher.config.max_num_seqs).create_engine_config(UsageContext.LLM_CLASS)
    budget = engine.vllm_config.scheduler_config.max_num_batched_tokens
    assert budget == offline.scheduler_config.max_num_batched_tokens
    server = EngineArgs(model=teacher.config.model, max_model_len=teacher.config.max_model_len,
                        max_num_seqs=teacher.config.max_num_seqs).create_engine_config(UsageContext.ENGINE_CONTEXT)
    assert budget > server.scheduler_config.max_num_batched_tokens, "on this hardware the two defaults differ"
