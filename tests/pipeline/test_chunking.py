import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.chunking import (
    ChunkPlan, TokenizerCounter, WordEstimate, check_chunk_size, chunk_document, chunk_size_for, plan_chunks,
    summary_room_warning,
)
from pipeline.documents import Document, DocumentError

WORDS = WordEstimate()


def pieces(text: str, ends: tuple[int, ...]) -> list[str]:
    return [text[s:e] for s, e in zip((0,) + ends, ends)]


def assert_valid_chunks(text, ends, max_tokens, counter):
    chunks = pieces(text, ends)
    assert "".join(chunks) == text
    assert ends[-1] == len(text)
    assert all(chunks), "no chunk may be empty"
    assert all(counter.count(c) <= max_tokens for c in chunks), [counter.count(c) for c in chunks]


def test_word_estimate_is_one_and_a_half_tokens_per_word_rounded_up():
    assert WORDS.count("") == 0
    assert WORDS.count("one") == 2
    assert WORDS.count("one two") == 3
    assert WORDS.count("  one\ntwo\tthree  ") == 5


def test_tokenizer_counter_counts_without_special_tokens(stream_tokenizer):
    counter = TokenizerCounter(stream_tokenizer)
    text = "Hot Pixel is a puzzle video game."
    assert counter.count(text) == len(stream_tokenizer.encode(text, add_special_tokens=False))
    backend = TokenizerCounter(stream_tokenizer.backend_tokenizer)  # a tokenizers.Tokenizer
    assert backend.count(text) == counter.count(text)
    assert counter.count("") == 0


def test_tokenizer_counter_refuses_an_object_without_encode():
    with pytest.raises(TypeError, match="encode"):
        TokenizerCounter(object())


def test_whole_paragraphs_are_kept_when_they_fit():
    paragraphs = [" ".join(f"p{i}w{j}" for j in range(10)) for i in range(6)]  # 15 tokens each
    text = "\n\n".join(paragraphs)
    ends = chunk_document(text, 40, WORDS)  # two paragraphs (30 + separators) fit, three (45) do not
    chunks = pieces(text, ends)
    assert [c.rstrip("\n") for c in chunks] == ["\n\n".join(paragraphs[i:i + 2]) for i in (0, 2, 4)]


def test_sections_beat_paragraphs_and_a_big_paragraph_is_cut_at_sentences():
    section_a = "Alpha one two. Beta three four.\n\nGamma five six."
    big_paragraph = "Delta seven eight nine. Epsilon ten eleven twelve. Zeta thirteen fourteen."
    text = section_a + "\n\n\n" + big_paragraph
    chunks = pieces(text, chunk_document(text, 15, WORDS))
    assert chunks[0] == section_a + "\n\n\n"  # the section (14 tokens) fits: it is kept whole
    assert chunks[1:] == ["Delta seven eight nine. Epsilon ten eleven twelve. ", "Zeta thirteen fourteen."]


def test_text_without_any_delimiter_is_split_hard_and_stays_lossless(stream_tokenizer):
    counter = TokenizerCounter(stream_tokenizer)
    text = "abcdefghijklmnopqrstuvwxyz" * 40
    ends = chunk_document(text, 16, counter)
    assert len(ends) > 1
    assert_valid_chunks(text, ends, 16, counter)


def test_a_paragraph_with_no_delimiters_among_normal_ones_only_cuts_that_paragraph():
    normal = "A short paragraph here."
    wall = "x" * 5000
    text = f"{normal}\n\n{wall}\n\n{normal}"
    counter = TokenizerCounter(_CharTokenizer())
    ends = chunk_document(text, 100, counter)
    chunks = pieces(text, ends)
    assert_valid_chunks(text, ends, 100, counter)
    # The paragraphs around the wall stay whole; the wall, bigger than any chunk, fills the chunks it needs.
    assert chunks[0].startswith(normal + "\n\n") and chunks[-1].endswith("\n\n" + normal)
    assert all(len(c) == 100 for c in chunks[:-1])


def test_budget_smaller_than_one_character_is_a_clear_error():
    with pytest.raises(ValueError, match="larger chunk size"):
        chunk_document("word", 1, WORDS)  # one word estimates to 2 tokens
    with pytest.raises(ValueError, match="empty"):
        chunk_document("", 10, WORDS)


def test_exact_counts_are_linear_enough_for_long_documents(stream_tokenizer):
    counter = TokenizerCounter(stream_tokenizer)
    text = "\n\n".join(f"Paragraph {i} tells of the river and the town. " * 8 for i in range(200))
    calls = []

    class Counting:
        def count(self, s):
            calls.append(len(s))
            return counter.count(s)

    ends = chunk_document(text, 256, Counting())
    assert_valid_chunks(text, ends, 256, counter)
    assert sum(calls) < 20 * len(text), "counting must stay proportional to the text, not quadratic"


class _CharTokenizer:
    """One token per character: exact, and makes budgets easy to reason about."""

    def encode(self, text, add_special_tokens=False):
        return list(text)


_alphabet = st.sampled_from(list("ab .?!\n\t") + ["é", "字", "\n\n", "\n\n\n", ". "])
_texts = st.lists(_alphabet | st.text(min_size=1, max_size=8), min_size=1, max_size=80).map("".join)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_texts, max_tokens=st.integers(min_value=1, max_value=40))
def test_chunking_is_lossless_non_empty_and_within_budget(text, max_tokens):
    counter = TokenizerCounter(_CharTokenizer())
    assert_valid_chunks(text, chunk_document(text, max_tokens, counter), max_tokens, counter)


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=300),
       max_tokens=st.integers(min_value=3, max_value=30))  # one emoji is estimated at 3 tokens
def test_word_estimate_chunking_holds_for_arbitrary_text(text, max_tokens):
    assert_valid_chunks(text, chunk_document(text, max_tokens, WORDS), max_tokens, WORDS)


@settings(max_examples=30, deadline=None)
@given(text=st.text(alphabet="abcxyz", min_size=1, max_size=500), max_tokens=st.integers(min_value=1, max_value=20))
def test_text_with_no_delimiters_at_all(text, max_tokens):
    counter = TokenizerCounter(_CharTokenizer())
    ends = chunk_document(text, max_tokens, counter)
    assert_valid_chunks(text, ends, max_tokens, counter)
    assert all(len(c) == max_tokens for c in pieces(text, ends)[:-1]), "hard splits fill each chunk"


def test_chunk_size_is_seeded_per_document_and_in_range():
    sizes = [chunk_size_for(f"doc-{i}", 0, 128, 4096) for i in range(200)]
    assert all(128 <= s <= 4096 for s in sizes)
    assert len(set(sizes)) > 150, "documents draw different sizes"
    assert sizes == [chunk_size_for(f"doc-{i}", 0, 128, 4096) for i in range(200)]
    assert sizes != [chunk_size_for(f"doc-{i}", 1, 128, 4096) for i in range(200)]
    assert chunk_size_for("x", 3, 512, 512) == 512
    with pytest.raises(ValueError):
        chunk_size_for("x", 0, 10, 5)


def test_chunk_size_is_the_same_in_another_process():
    code = "from pipeline.chunking import chunk_size_for; print(chunk_size_for('doc-7', 5, 128, 4096))"
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={"PYTHONHASHSEED": hash_seed, "PATH": ""})
        assert int(out.stdout) == chunk_size_for("doc-7", 5, 128, 4096)


def test_chunk_size_above_half_the_window_is_refused_unless_forced():
    check_chunk_size(2048, 4096)
    with pytest.raises(ValueError, match=r"half the student's window 4096.*at most 2048"):
        check_chunk_size(2049, 4096)
    with pytest.raises(ValueError, match="collapses to 0%"):
        check_chunk_size(8192, 4096)
    check_chunk_size(8192, 4096, force=True)



def test_summary_room_names_settings_where_a_summary_outgrows_the_window():
    # The third SmolLM2 run's evaluation: W=512, chunks of 256, summaries up to 256.
    message = summary_room_warning(256, 256, 512)
    assert "need 768 tokens" in message and "longer than 128 tokens" in message and "at least 768" in message
    assert summary_room_warning(512, 256, 1024) is None  # the fourth: the window holds both summaries and the chunk

def _doc(question="What is the number?", context="One two three.\n\nFour five six."):
    return Document(id="d1", question=question, context=context, answers=("3",))


def test_plan_chunks_draws_the_size_and_cuts_the_context():
    doc = _doc(context="\n\n".join(f"Paragraph {i} has some words in it." for i in range(50)))
    plan = plan_chunks(doc, 20, 40, seed=0, counter=WORDS)
    assert isinstance(plan, ChunkPlan) and plan.document_id == "d1"
    assert plan.chunk_tokens == chunk_size_for("d1", 0, 20, 40)
    assert_valid_chunks(doc.context, plan.chunk_ends, plan.chunk_tokens, WORDS)
    assert plan == plan_chunks(doc, 20, 40, seed=0, counter=WORDS)


def test_a_question_longer_than_the_chunk_budget_is_a_document_error():
    doc = _doc(question=" ".join(["why"] * 30))  # 45 tokens
    with pytest.raises(DocumentError) as e:
        plan_chunks(doc, 20, 40, seed=0, counter=WORDS)
    assert e.value.document_id == "d1" and e.value.field_name == "question"
    assert "shorten the question" in str(e.value)
    plan_chunks(_doc(question=" ".join(["why"] * 10)), 20, 40, seed=0, counter=WORDS)
    with pytest.raises(DocumentError, match="question"):
        plan_chunks(_doc(question=" ".join(["why"] * 10)), 20, 40, seed=0, counter=WORDS, question_budget=0.1)
