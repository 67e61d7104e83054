"""The trajectory verifier: good rule trajectories pass; degenerate ones fail, named by check."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.chunking import WordEstimate, plan_chunks
from pipeline.sources import long_hotpotqa, niah_documents
from pipeline.stream import Summary
from pipeline.verify import CHECKS, verify
from teachers.rules import RuleTeacher


def rule_trajectory(doc, low=128, high=256):
    plan = plan_chunks(doc, low, high, seed=0, counter=WordEstimate())
    return RuleTeacher().read_now(doc, plan, max_rounds=256)


def with_summaries(traj, summaries):
    rounds = tuple(dataclasses.replace(r, summary=s) for r, s in zip(traj.rounds, summaries))
    return dataclasses.replace(traj, rounds=rounds)


def failed(traj, **kwargs):
    return [f.check for f in verify(traj, **kwargs)]


def needle_trajectory(depth=0.75):
    (doc,) = niah_documents([1500], [depth], seed=4)
    traj = rule_trajectory(doc)
    assert len(traj.rounds) >= 3  # the needle is a few chunks in
    return doc, traj


def test_rule_trajectories_pass_every_check():
    docs = niah_documents([300, 800, 2000], [0.0, 0.5, 1.0], n_per_cell=2, seed=0) + long_hotpotqa(2000, n=8, seed=0)
    for doc in docs:
        # Small chunks too: a chunk may hold the needle sentence alone, which Clues and Reason then quote whole.
        for low, high in ((128, 256), (64, 160)):
            assert failed(rule_trajectory(doc, low, high)) == [], (doc.id, low)


def test_the_degenerate_trajectory_of_the_issue_is_rejected_by_name():
    # SmolLM2's accepted needle documents: every field of every round is the needle value, from the first round on.
    doc, traj = needle_trajectory()
    value = doc.answers[0]
    degenerate = with_summaries(traj, [Summary(value, value, value)] * len(traj.rounds))
    assert degenerate.answer_passed  # the answer check alone keeps it
    assert failed(degenerate) == ["target_restates_question", "clues_before_evidence", "fields_distinct"]
    problems = " ".join(f.problem for f in verify(degenerate))
    assert f"holds the answer '{value}'" in problems and "before the chunk" in problems


def test_clues_may_hold_the_answer_once_the_evidence_is_read_not_before():
    doc, traj = needle_trajectory()
    target = traj.rounds[0].summary.target
    early = [Summary(target, f"The number may be {doc.answers[0]}.", "A guess.")] + [r.summary for r in traj.rounds[1:]]
    assert failed(with_summaries(traj, early)) == ["clues_before_evidence"]
    # The last round reads the needle: its clues hold the value, as they should.
    assert doc.answers[0] in traj.rounds[-1].summary.clues and failed(traj) == []


def test_an_answer_already_in_the_text_read_is_no_leak():
    chunks_text = ["Anna was born in Oslo. ", "Bits of filler text. ", "The capital of Norway is Oslo. "]
    context = "".join(chunks_text)
    doc, traj = needle_trajectory()
    ends = tuple(sum(len(c) for c in chunks_text[: i + 1]) for i in range(3))
    start = context.index("The capital")
    rounds = tuple(dataclasses.replace(traj.rounds[0], chunk_index=i, action="READ" if i < 2 else "STOP",
                                       summary=Summary("Answer: what is the capital of Norway?",
                                                       "Oslo is a city in the text." if i < 2 else "Capital: Oslo.",
                                                       f"Chunk reason {i}."))
                   for i in range(3))
    moved = dataclasses.replace(traj, question="What is the capital of Norway?", context=context, chunk_ends=ends,
                                rounds=rounds, references=("Oslo",), answer="Oslo",
                                metadata={"evidence_spans": [[start, len(context)]]})
    assert failed(moved) == []  # Oslo was read in chunk 1, before the evidence


def test_a_stop_before_the_last_evidence_fails():
    docs = long_hotpotqa(2000, n=8, seed=0)
    traj = next(t for t in map(rule_trajectory, docs)
                if len({r.chunk_index for r in t.rounds if r.summary.reason.startswith("New clue")}) == 2)
    first_evidence = next(r.chunk_index for r in traj.rounds if r.summary.reason.startswith("New clue"))
    cut = traj.rounds[: first_evidence + 1]
    cut = cut[:-1] + (dataclasses.replace(cut[-1], action="STOP"),)
    assert failed(dataclasses.replace(traj, rounds=cut)) == ["stop_after_evidence"]


def test_a_stop_whose_clues_hold_nothing_of_the_evidence_fails():
    doc, traj = needle_trajectory()
    empty = [dataclasses.replace(r.summary, clues="None yet.") for r in traj.rounds]
    assert failed(with_summaries(traj, empty)) == ["clues_hold_evidence"]
    paraphrase = [dataclasses.replace(r.summary, clues=f"gentle magic number {doc.answers[0]}") for r in traj.rounds]
    assert "clues_hold_evidence" not in failed(with_summaries(traj, paraphrase))


def test_a_target_that_drops_the_question_and_a_field_that_copies_the_chunk_fail():
    doc, traj = needle_trajectory()
    vague = [dataclasses.replace(r.summary, target="Read the text carefully.") for r in traj.rounds]
    assert failed(with_summaries(traj, vague)) == ["target_restates_question"]
    copied = [dataclasses.replace(r.summary, reason=traj.chunks[r.chunk_index]) for r in traj.rounds]
    assert failed(with_summaries(traj, copied)) == ["fields_distinct"]
    twins = [dataclasses.replace(r.summary, reason=r.summary.target + ".") for r in traj.rounds]
    assert failed(with_summaries(traj, twins)) == ["fields_distinct"]


def test_a_hinted_summary_that_repeats_its_hint_fails():
    doc, traj = needle_trajectory()
    hinted = dataclasses.replace(traj, teacher={**traj.teacher, "hint": "evidence"})
    assert failed(hinted) == []
    echo = [dataclasses.replace(r.summary, reason=f"With this chunk, the reference answer is {doc.answers[0]}.")
            if r.action == "STOP" else r.summary for r in traj.rounds]
    assert failed(with_summaries(hinted, echo)) == ["hint_not_echoed"]
    assert failed(with_summaries(traj, echo)) == []  # only hinted records are held to it


def test_the_no_context_check_drops_questions_answered_without_reading():
    doc, traj = needle_trajectory()
    knows = dataclasses.replace(traj, metadata={**traj.metadata, "no_context_answer": doc.answers[0]})
    guesses = dataclasses.replace(traj, metadata={**traj.metadata, "no_context_answer": "1234"})
    assert failed(knows) == ["needs_context"] and failed(guesses) == []
    assert failed(knows, checks=[c for c in CHECKS if c != "needs_context"]) == []


def test_a_wrong_answer_fails_the_answer_check_and_unknown_checks_are_refused():
    doc, traj = needle_trajectory()
    wrong = dataclasses.replace(traj, answer="42", answer_passed=False, answer_score=0.0)
    assert failed(wrong) == ["answer"] and failed(wrong, min_answer_score=0.0) == []
    with pytest.raises(ValueError, match=r"unknown check\(s\) \['target'\].*Fix: use only"):
        verify(traj, checks=["target"])
