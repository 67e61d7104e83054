"""Smooth Reading inference: one stream, no re-prefill, constant memory, and the reader's control flow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from pipeline.stream import END, READ, STOP, SUMMARY, Summary
from students.convert import convert_to_gla, convert_to_sliding_window
from students.reading import one_round_read, smooth_read

WINDOW = 32
DATA = Path(__file__).resolve().parents[2] / "pipeline" / "data" / "hotpotqa_distractor_dev100.json"
SCRIPTED_SUMMARY = Summary("band origin", "none", "no band")


def document_chunks(words_per_chunk: int = 8, num_words: int = 120) -> list[str]:
    words = " ".join("".join(p) for q in json.loads(DATA.read_text())[:3] for p in (q["para_a"], q["para_b"])).split()
    words = words[:num_words]
    return [" ".join(words[i : i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)]


@pytest.fixture(scope="module")
def students(tiny_llama_dir):
    torch.manual_seed(0)
    return {"swa": convert_to_sliding_window(tiny_llama_dir, window=WINDOW), "gla": convert_to_gla(tiny_llama_dir)}


class Scripted(torch.nn.Module):
    """A real student whose next-token choice follows a script: after <summary> it writes a summary and an action
    (<STOP> in round `stop_round`, else <READ>), after <STOP> an answer and <end>. Everything else is the student's
    own forward pass and cache, so the reader's bookkeeping is tested on a real constant-memory model."""

    def __init__(self, student, tokenizer, stop_round: int | None, answer: str = "Answer: Seattle", end: str = END):
        super().__init__()
        self.student = student
        self.summary_id, self.stop_id = tokenizer.convert_tokens_to_ids([SUMMARY, STOP])
        self.read_id, self.end_id = tokenizer.convert_tokens_to_ids([READ, end])
        self.summary_ids = tokenizer(SCRIPTED_SUMMARY.render(), add_special_tokens=False)["input_ids"]
        self.answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        self.stop_round, self.rounds, self.queue = stop_round, 0, []

    @property
    def device(self):
        return self.student.device

    @property
    def config(self):
        return self.student.config

    def forward(self, input_ids, past_key_values=None, use_cache=None, logits_to_keep=0):
        out = self.student(input_ids, past_key_values=past_key_values, use_cache=use_cache, logits_to_keep=logits_to_keep)
        last = int(input_ids[0, -1])
        if last == self.summary_id:
            action = self.stop_id if self.rounds == self.stop_round else self.read_id
            self.queue, self.rounds = [*self.summary_ids, action], self.rounds + 1
        elif last == self.stop_id:
            self.queue = [*self.answer_ids, self.end_id]
        if self.queue:
            out.logits[0, -1] = -1e9
            out.logits[0, -1, self.queue.pop(0)] = 1e9
        return out


@pytest.mark.parametrize("family", ["swa", "gla"])
def test_a_document_eight_windows_long_is_read_in_constant_memory(family, students, stream_tokenizer):
    chunks = document_chunks()
    doc_tokens = len(stream_tokenizer(" ".join(chunks), add_special_tokens=False)["input_ids"])
    assert doc_tokens >= 8 * WINDOW
    model = Scripted(students[family], stream_tokenizer, stop_round=None)
    result = smooth_read(model, stream_tokenizer, "Where was the band formed?", chunks, max_summary_tokens=64)

    assert result.chunks_read == len(chunks) and not result.stopped_early
    assert len(set(result.cache_bytes)) == 1 and result.cache_bytes[0] > 0
    assert [r.summary for r in result.rounds] == [SCRIPTED_SUMMARY] * len(chunks)
    assert [r.action for r in result.rounds] == ["READ"] * (len(chunks) - 1) + ["STOP"]
    assert result.rounds[-1].action_forced and not any(r.action_forced for r in result.rounds[:-1])
    assert result.answer == "Seattle"
    # Nothing is fed twice: the stream holds the query once and every chunk once.
    stream_text = stream_tokenizer.decode(result.stream_ids)
    assert stream_text.count("Where was the band formed?") == 1
    assert all(stream_text.count(c) == 1 for c in chunks)
    # Only two written tokens never enter the stream: the <READ> the reader replaced by <STOP>, and <end>.
    assert sum(result.written_by_model) == result.tokens_generated - 2
    assert result.tokens_fed + sum(result.written_by_model) == len(result.stream_ids)


def test_the_model_stopping_early_ends_reading_and_yields_its_answer(students, stream_tokenizer):
    chunks = document_chunks(num_words=32)
    model = Scripted(students["swa"], stream_tokenizer, stop_round=1, answer=" Answer:  Kyiv ")
    result = smooth_read(model, stream_tokenizer, "Where?", chunks, max_summary_tokens=64)
    assert result.stopped_early and result.chunks_read == 2 < len(chunks)
    assert [r.action for r in result.rounds] == ["READ", "STOP"]
    assert not any(r.action_forced for r in result.rounds)
    assert result.answer == "Kyiv"
    assert result.answer_text.strip().startswith("Answer:")


def test_an_answer_ended_by_the_tokenizers_own_eos_ends_there(students, stream_tokenizer):
    # A student converted from a chat model may close its answer with the parent's EOS (SmolLM2: <|im_end|>) instead of
    # <end>: the answer must end there, not run on to the token cap, and score the same.
    import copy

    tokenizer = copy.deepcopy(stream_tokenizer)
    tokenizer.eos_token = tokenizer.bos_token  # an EOS that is not <end>, as in a converted chat model's tokenizer
    chunks = document_chunks(num_words=24)
    answers = {}
    for end in (END, tokenizer.eos_token):
        model = Scripted(students["swa"], tokenizer, stop_round=0, answer="Answer: 1781597", end=end)
        result = smooth_read(model, tokenizer, "Which number?", chunks, max_summary_tokens=64, max_answer_tokens=32)
        answers[end] = (result.answer, result.answer_text, result.tokens_generated)
    assert answers[END] == answers[tokenizer.eos_token]
    assert answers[END][0] == "1781597"


def test_a_summary_that_runs_out_of_tokens_is_closed_by_the_reader(students, stream_tokenizer):
    chunks = document_chunks(num_words=24)
    model = Scripted(students["gla"], stream_tokenizer, stop_round=None)
    result = smooth_read(model, stream_tokenizer, "Where?", chunks, max_summary_tokens=5, max_answer_tokens=8)
    assert result.chunks_read == len(chunks)
    assert all(r.action_forced and r.summary is None and r.tokens_generated == 5 for r in result.rounds)
    assert [r.action for r in result.rounds] == ["READ"] * (len(chunks) - 1) + ["STOP"]
    assert result.rounds[0].summary_text == stream_tokenizer.decode(model.summary_ids[:5])


@pytest.mark.parametrize("family", ["swa", "gla"])
def test_every_token_the_model_wrote_is_what_one_full_forward_over_the_stream_predicts(family, students, stream_tokenizer):
    # The carried cache must stand for everything before it: re-running the whole stream at once agrees.
    model = students[family]
    result = smooth_read(model, stream_tokenizer, "Who?", document_chunks(num_words=48), max_summary_tokens=10,
                         max_answer_tokens=4)
    assert result.tokens_generated > 0 and len(result.stream_ids) > 2 * WINDOW
    with torch.no_grad():
        predicted = model(torch.tensor([result.stream_ids]), use_cache=False).logits[0].argmax(-1)
    written = torch.tensor(result.written_by_model)
    assert written.any()
    assert torch.equal(predicted[:-1][written[1:]], torch.tensor(result.stream_ids)[1:][written[1:]])


def test_a_self_attention_model_reads_too_and_its_cache_grows(tiny_llama_dir, stream_tokenizer):
    llama = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    chunks = document_chunks(num_words=24)
    result = smooth_read(llama, stream_tokenizer, "Who?", chunks, max_summary_tokens=4, max_answer_tokens=4)
    assert result.chunks_read >= 1
    assert all(a < b for a, b in zip(result.cache_bytes, result.cache_bytes[1:]))
    baseline = one_round_read(llama, stream_tokenizer, "Who?", " ".join(chunks), max_summary_tokens=4)
    assert baseline.chunks_read == 1 and baseline.rounds[0].action == "STOP"
