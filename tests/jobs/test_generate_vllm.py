"""The real vLLM CPU engine in a Ray teacher actor: several documents, several rounds each, in one generate job.

The tiny Llama has random weights: structured output makes its rounds parse and a logit bias against <STOP>
makes it read to the round cap, so the records have a known shape; the answer check is off (any answer kept),
because a random model's answers are wrong by construction.
"""

from __future__ import annotations

import json

import pytest

from jobs.generate import generate
from jobs.generate_config import config_from_dict
from pipeline.corpus import read_corpus
from pipeline.stream import parse_summary_and_action
from tests.generate_runs import NIAH
from tests.tiny_models import stop_spelling_bias

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_vllm_engine_actor_reads_several_documents_through_several_rounds(ray_cluster, tmp_path, tiny_llama_dir,
                                                                         stream_tokenizer):
    teacher = {
        "backend": "vllm", "model": str(tiny_llama_dir), "dtype": "float32", "max_model_len": 2048,
        "max_num_seqs": 8, "kv_cache_gb": 1, "enforce_eager": True, "prompt_mode": "stream",
        "structured_output": True, "field_max_chars": 12, "max_round_tokens": 64, "max_answer_tokens": 16,
        "sampling": {"temperature": 0.0, "logit_bias": stop_spelling_bias(stream_tokenizer)},
    }
    config = config_from_dict({
        "seed": 0, "shard_size": 2,
        # A random-weight model writes no real summary: the engine and the job's plumbing are under test, not the
        # verifier (tests/pipeline/test_verify.py), so only the answer check runs, and it keeps every answer.
        "filter": {"min_answer_score": 0.0, "checks": ["answer"]},
        "engine": {"num_cpus": 2, "max_in_flight": 4, "progress_interval_s": 2},
        "parts": [{"name": "tiny-vllm", "teacher": teacher, "max_rounds": 3,
                   "sources": [{**NIAH, "lengths": [400], "depths": [0.5], "n_per_cell": 4}],
                   "chunking": {"low": 64, "high": 96}}],
    })
    output = tmp_path / "corpus"
    summary = generate(config, output)

    part = summary["parts"]["tiny-vllm"]
    assert (part["documents"], part["accepted"], part["rejected"]) == (4, 4, 0)
    (cache,) = part["prefix_cache"]
    assert cache["queries"] > 0 and 0 < cache["hits"] <= cache["queries"]

    records = sorted(read_corpus(output), key=lambda t: t.document_id)
    assert [t.document_id for t in records] == [f"niah-s0-L400-d0.5-{k}" for k in range(4)]
    for t in records:
        assert len(t.chunk_ends) > 3 and [r.action for r in t.rounds] == ["READ", "READ", "STOP"]
        assert t.answer and all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in t.rounds)
        assert t.teacher["name"] == "vllm" and t.teacher["model"] == str(tiny_llama_dir)
        assert t.teacher["prompt_mode"] == "stream" and t.teacher["sampling"]["structured_output"] is True
        last = t.render().text.rsplit("<summary>", 1)[1]
        assert parse_summary_and_action(last)[1:] == ("STOP", t.answer)
        # Stream mode: each later round's prompt extends the last, and the engine served that prefix from cache.
        cached = t.metadata["teacher_usage"]["cached_tokens"]
        assert all(c > 0 for c in cached[1:]), cached

    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["total_tokens"]["completion"] == sum(t.completion_tokens for t in records) > 0
