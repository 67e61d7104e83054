import json
import subprocess
import sys

import pytest

from pipeline.chunking import WordEstimate
from pipeline.documents import Document
from pipeline.sources import (
    NEEDLE_TEMPLATE, data_dir, default_haystack, hotpotqa_questions, html_paragraphs, long_hotpotqa, niah_documents,
    quality_documents,
)

WORDS = WordEstimate()


def test_data_dir_holds_the_shipped_files_also_from_another_working_directory(tmp_path):
    assert (data_dir() / "hotpotqa_distractor_dev100.json").is_file()
    code = "from pipeline.sources import data_dir; print(data_dir())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert (data_dir().resolve() == __import__("pathlib").Path(out.stdout.strip()).resolve())


def test_long_hotpotqa_places_both_gold_paragraphs_with_their_supporting_sentences_as_evidence():
    docs = long_hotpotqa(3000, n=5, seed=0)
    questions = hotpotqa_questions()[:5]
    assert len(docs) == 5 and len({d.id for d in docs}) == 5
    for doc, q in zip(docs, questions):
        doc.validate()  # evidence offsets hold their text
        assert doc.question == q["question"] and doc.answers == (q["answer"],)
        assert 2700 <= WORDS.count(doc.context) <= 3000
        assert len(doc.evidence) == 2
        # HotpotQA's supporting facts: the named sentences of each gold paragraph, under its title.
        supporting = {q["title_a"]: (q["para_a"], q["supporting_facts"][0]),
                      q["title_b"]: (q["para_b"], q["supporting_facts"][1])}
        assert {e.heading for e in doc.evidence} == set(supporting)
        for e in doc.evidence:
            sentences, ids = supporting[e.heading]
            assert e.text == "".join(sentences[min(ids): max(ids) + 1]).strip()
            assert f"{e.heading}\n" in doc.context[max(0, e.start - 2000): e.start]  # inside its own paragraph
        assert Document.from_dict(doc.to_dict()) == doc  # the heading survives a jsonl line
        # its own distractors come first, then other questions' paragraphs
        for title, _sentences, *_ in q["distractors"]:
            if title not in (q["title_a"], q["title_b"]):
                assert f"\n\n{title}\n" in "\n\n" + doc.context
        assert doc.source == "hotpotqa" and doc.license == "CC BY-SA 4.0"


def test_long_hotpotqa_is_seeded():
    a, b, c = long_hotpotqa(2000, n=3, seed=0), long_hotpotqa(2000, n=3, seed=0), long_hotpotqa(2000, n=3, seed=1)
    assert a == b
    assert [d.context for d in a] != [d.context for d in c]
    positions = {d.metadata["gold_paragraph_indices"][0] for d in long_hotpotqa(2000, n=20, seed=0)}
    assert len(positions) > 3, "gold paragraphs land at varied positions"


def test_long_hotpotqa_refuses_a_target_the_shipped_data_cannot_reach():
    with pytest.raises(ValueError, match="short of target_tokens"):
        long_hotpotqa(1_000_000, n=1)


def test_quality_documents_are_multiple_choice_with_the_gold_letter():
    docs = quality_documents()
    record = json.loads((data_dir() / "quality_example.jsonl").read_text().splitlines()[0])
    assert len(docs) == 5, "the shipped file repeats its record; each question appears once"
    first = docs[0]
    assert first.question == record["question1"]
    assert first.options == tuple(record[f"question1option{k}"].strip() for k in range(1, 5))
    assert first.answers == ("ABCD"[record["question1_gold_label"] - 1],)
    assert [d.answers[0] for d in docs] == ["ABCD"[record[f"question{i}_gold_label"] - 1] for i in range(1, 6)]
    paragraphs = first.context.split("\n\n")
    assert paragraphs[0] == "THE GIRL IN HIS MIND"
    assert "<" not in first.context and "  " not in first.context
    assert "Xenophon's Anabasis. Her hair" in first.context, "inline tags keep the sentence whole"
    assert len(first.context.split()) > 4000
    assert "public domain" in first.license and "CC BY 4.0" in first.license


def test_html_paragraphs_collapse_whitespace_and_skip_scripts():
    page = "<html><head><title>T</title><script>x=1</script></head><body><h1>\n Title\n</h1>" \
           "<p>One\n<br/>two &amp; <i>three</i> .</p><hr/><p>  </p><p>Four</p></body></html>"
    assert html_paragraphs(page) == ["Title", "One two & three.", "Four"]


def test_niah_grid_has_the_needle_at_each_depth_and_asks_for_its_value():
    lengths, depths = [500, 3000], [0.0, 0.5, 1.0]
    docs = niah_documents(lengths, depths, n_per_cell=2, seed=0)
    assert len(docs) == 12 and len({d.id for d in docs}) == 12
    for doc in docs:
        doc.validate()
        (needle,) = doc.evidence
        key = doc.metadata["key"]
        assert needle.text == NEEDLE_TEMPLATE.format(key=key, value=doc.answers[0])
        assert key in doc.question and doc.answers[0] not in doc.question
        assert doc.context.count("special magic number") == 1
        length, depth = doc.metadata["length"], doc.metadata["depth"]
        assert 0.9 * length <= WORDS.count(doc.context) <= length
        position = needle.start / len(doc.context)
        assert abs(position - depth) < 0.1
        assert needle.start == 0 or doc.context[needle.start - 2:needle.start] == "\n\n"
    assert docs == niah_documents(lengths, depths, n_per_cell=2, seed=0)
    assert {d.answers for d in docs} != {d.answers for d in niah_documents(lengths, depths, n_per_cell=2, seed=1)}


def test_niah_value_digits_sets_the_needle_value_length_and_seven_stays_the_default():
    lengths, depths = [300, 600], [0.0, 0.5, 1.0]
    default = niah_documents(lengths, depths, n_per_cell=3, seed=0)
    assert default == niah_documents(lengths, depths, n_per_cell=3, seed=0, value_digits=7)
    for digits in (1, 3, 7, 12):
        docs = niah_documents(lengths, depths, n_per_cell=3, seed=0, value_digits=digits)
        for doc, same_cell in zip(docs, default):
            (value,) = doc.answers
            assert value.isdigit() and len(value) == digits and not value.startswith("0")
            assert doc.evidence[0].text == NEEDLE_TEMPLATE.format(key=doc.metadata["key"], value=value)
            assert doc.metadata["key"] == same_cell.metadata["key"]
    with pytest.raises(ValueError, match="value_digits"):
        niah_documents([300], [0.5], value_digits=0)


def test_niah_random_start_reads_each_haystack_from_a_seeded_paragraph_and_keeps_the_needles():
    lengths, depths = [600, 1200], [0.0, 0.5, 1.0]
    default = niah_documents(lengths, depths, n_per_cell=3, seed=0)
    moved = niah_documents(lengths, depths, n_per_cell=3, seed=0, random_start=True)
    assert moved == niah_documents(lengths, depths, n_per_cell=3, seed=0, random_start=True)
    first = default_haystack()[0]
    assert all(d.context.startswith(first) or d.evidence[0].start == 0 for d in default)
    assert len({d.context.replace(d.evidence[0].text, "")[:60] for d in moved}) > len(moved) // 2
    for doc, same_cell in zip(moved, default):
        doc.validate()
        assert (doc.answers, doc.metadata["key"]) == (same_cell.answers, same_cell.metadata["key"])
        assert doc.context.count("special magic number") == 1
        assert 0.9 * doc.metadata["length"] <= WORDS.count(doc.context) <= doc.metadata["length"]
        assert abs(doc.evidence[0].start / len(doc.context) - doc.metadata["depth"]) < 0.1


def test_niah_longer_than_the_haystack_repeats_it_and_custom_haystacks_work():
    (doc,) = niah_documents([200_000], [0.5])
    assert 190_000 <= WORDS.count(doc.context) <= 200_000
    (small,) = niah_documents([300], [1.0], haystack="Para one is here.\n\nPara two is there.")
    assert small.context.endswith(small.evidence[0].text) and "Para one is here." in small.context
    with pytest.raises(ValueError, match="depth"):
        niah_documents([500], [1.5])
    with pytest.raises(ValueError, match="shorter than the needle"):
        niah_documents([5], [0.0])
