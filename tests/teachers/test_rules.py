"""The rule teacher on documents whose evidence is known: needle-in-a-haystack and long HotpotQA."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from pipeline.chunking import WordEstimate, plan_chunks
from pipeline.documents import Evidence
from pipeline.sources import long_hotpotqa, niah_documents
from pipeline.stream import END, SUMMARY, parse_summary_and_action
from teachers import build_teacher
from teachers.base import TeacherError
from teachers.rules import NO_CLUES, NOTHING_NEW, RuleTeacher
from tests.teachers.conftest import document_of_chunks


def chunk_of(ends: tuple[int, ...], offset: int) -> int:
    """The chunk whose span holds the character before `offset` (where evidence ending there is read)."""
    return next(i for i, end in enumerate(ends) if offset <= end)


def parsed_rounds(traj):
    """Every summary, action and answer as the student will see them, parsed back from the rendered stream."""
    return [parse_summary_and_action(piece) for piece in traj.render().text.split(SUMMARY)[1:]]


@pytest.mark.parametrize("depth", [0.0, 0.3, 0.7, 1.0])
def test_niah_stops_exactly_on_the_chunk_that_holds_the_needle(depth):
    (doc,) = niah_documents([1500], [depth], seed=1)
    plan = plan_chunks(doc, 128, 256, seed=0, counter=WordEstimate())
    traj = RuleTeacher().read_now(doc, plan, max_rounds=64)

    needle = doc.evidence[0]
    stop_chunk = chunk_of(plan.chunk_ends, needle.end)
    assert [r.chunk_index for r in traj.rounds] == list(range(stop_chunk + 1))
    assert [r.action for r in traj.rounds] == ["READ"] * stop_chunk + ["STOP"]
    assert all(r.summary.clues == NO_CLUES and r.summary.reason == NOTHING_NEW for r in traj.rounds[:-1])
    # rounds do not count chunks: a round deep in a long document reads like one in a short document
    assert len({r.summary for r in traj.rounds[:-1]}) <= 1
    last = traj.rounds[-1].summary
    assert needle.text in last.clues and last.reason == "New clue (1); the question can be answered."
    assert needle.text not in last.reason  # the needle is copied once, into Clues
    assert all(r.summary.target == doc.question for r in traj.rounds)  # the task restated every round
    assert traj.answer == doc.answers[0] and traj.answer_passed and traj.answer_score == 1.0
    assert [(s, a) for s, a, _ in parsed_rounds(traj)] == [(r.summary, r.action) for r in traj.rounds]
    assert parsed_rounds(traj)[-1][2] == doc.answers[0]
    assert traj.render().text.endswith(doc.answers[0] + END)


def test_long_hotpotqa_clues_accumulate_and_stop_after_the_last_evidence():
    docs = long_hotpotqa(2000, n=6, seed=0)
    teacher = RuleTeacher()
    for doc in docs:
        plan = plan_chunks(doc, 128, 512, seed=0, counter=WordEstimate())
        traj = teacher.read_now(doc, plan, max_rounds=100)
        found = [chunk_of(plan.chunk_ends, e.end) for e in doc.evidence]
        assert len(doc.evidence) == 2
        assert len(traj.rounds) == max(found) + 1 and traj.rounds[-1].action == "STOP"

        previous = NO_CLUES
        for k, r in enumerate(traj.rounds):
            expected = [e for e, f in zip(doc.evidence, found) if f <= k]
            # A clue is a supporting sentence under its paragraph's title, not the whole paragraph.
            assert all(f"{e.heading}: {' '.join(e.text.split())}" in r.summary.clues for e in expected)
            arriving = [e for e, f in zip(doc.evidence, found) if f == k]
            if arriving:
                numbers = [f"({n})" for n, f in enumerate(sorted(found), 1) if f == k]
                assert r.summary.reason.startswith("New clue") and all(n in r.summary.reason for n in numbers)
                assert r.summary.reason.endswith("answered." if r.action == "STOP" else "more is needed.")
                assert r.summary.clues.startswith(previous) or previous == NO_CLUES
            else:
                assert r.summary.clues == previous and r.summary.reason == NOTHING_NEW
            previous = r.summary.clues
        assert traj.answer == doc.answers[0] and traj.answer_passed
        assert [(s, a) for s, a, _ in parsed_rounds(traj)] == [(r.summary, r.action) for r in traj.rounds]


def test_evidence_split_across_chunks_counts_once_fully_read():
    chunks = ["Filler text here. The needle is ", "42 and more. ", "Tail text. "]
    doc, plan = document_of_chunks("doc-split", chunks, question="What is the needle?", answers=("42",))
    start = doc.context.index("The needle")
    end = doc.context.index(" and more")
    doc = dataclasses.replace(doc, evidence=(Evidence(start, end, doc.context[start:end]),))
    traj = RuleTeacher().read_now(doc, plan, max_rounds=10)
    assert [r.action for r in traj.rounds] == ["READ", "STOP"]
    assert traj.rounds[0].summary.clues == NO_CLUES and "The needle is 42" in traj.rounds[1].summary.clues


def test_the_rules_are_deterministic_and_say_who_wrote_the_record():
    (doc,) = niah_documents([800], [0.5], seed=2)
    plan = plan_chunks(doc, 128, 256, seed=0, counter=WordEstimate())
    a = asyncio.run(RuleTeacher().read(doc, plan, max_rounds=64))
    b = build_teacher({"backend": "rules"}).read_now(doc, plan, max_rounds=64)
    assert a == b and a.content_hash() == b.content_hash()
    assert a.teacher["name"] == "rules" and len(a.teacher["prompt_sha256"]) == 64
    assert type(a).from_record(a.to_record()) == a


def test_a_document_without_evidence_whose_answer_is_nowhere_names_the_field_and_the_fix():
    doc, plan = document_of_chunks("doc-no-evidence", ["Some text. ", "More text. "])
    with pytest.raises(TeacherError, match=r"doc-no-evidence.*field 'evidence' is empty and no reference answer "
                       r"occurs.*LLM teacher"):
        RuleTeacher().read_now(doc, plan, max_rounds=10)


def test_a_needle_document_without_evidence_takes_the_answer_sentence_as_evidence():
    (doc,) = niah_documents([1500], [0.6], seed=3)
    bare = dataclasses.replace(doc, evidence=())
    plan = plan_chunks(doc, 128, 256, seed=0, counter=WordEstimate())
    with_evidence = RuleTeacher().read_now(doc, plan, max_rounds=64)
    derived = RuleTeacher().read_now(bare, plan, max_rounds=64)
    # The needle sentence is the answer's sentence: the same rounds as with the recorded evidence.
    assert [r.summary for r in derived.rounds] == [r.summary for r in with_evidence.rounds]
    note = derived.metadata["evidence_from_answer"]
    value = doc.answers[0]
    assert note["answer"] == value and note["occurrences"] == [[doc.context.index(value),
                                                                doc.context.index(value) + len(value)]]
    assert "evidence_from_answer" not in with_evidence.metadata
    assert derived.metadata["evidence_spans"] == [[doc.evidence[0].start, doc.evidence[0].end]]


def test_evidence_from_answer_takes_every_occurrence_as_a_whole_word():
    chunks = ["Paris is a city. Parisian food is good. ", "Nothing here. ", "Most French people love Paris? Yes. "]
    doc, plan = document_of_chunks("doc-paris", chunks)
    traj = RuleTeacher().read_now(doc, plan, max_rounds=10)
    assert [r.action for r in traj.rounds] == ["READ", "READ", "STOP"]
    second = doc.context.index("love Paris") + len("love ")
    assert traj.metadata["evidence_from_answer"]["occurrences"] == [[0, 5], [second, second + 5]]
    assert "(1) Paris is a city." in traj.rounds[0].summary.clues
    assert "(2) Most French people love Paris?" in traj.rounds[2].summary.clues


def test_evidence_past_the_round_cap_is_refused_rather_than_answered_unseen():
    (doc,) = niah_documents([1500], [1.0], seed=1)
    plan = plan_chunks(doc, 128, 128, seed=0, counter=WordEstimate())
    with pytest.raises(TeacherError, match=r"last evidence is in chunk \d+ but at most 2 round\(s\).*raise max_rounds"):
        RuleTeacher().read_now(doc, plan, max_rounds=2)


def test_build_teacher_names_bad_settings():
    with pytest.raises(ValueError, match=r"backend 'gpt' is unknown.*'rules', 'vllm', 'openai', 'transformers'"):
        build_teacher({"backend": "gpt"})
    with pytest.raises(ValueError, match=r"'rules': takes no settings, got \['model'\]"):
        build_teacher({"backend": "rules", "model": "x"})
