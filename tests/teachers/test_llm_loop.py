"""The reading loop every LLM backend shares, driven by a scripted model (a test double of the model only)."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from pipeline.stream import READ, STOP, parse_summary_and_action
from teachers.base import Completion, LLMTeacher, LLMTeacherConfig, RequestRejected, TeacherError
from teachers.templates import PROMPTS_DIR, PromptTemplates
from tests.teachers.conftest import document_of_chunks

CHUNKS = ["Lyon is a city on the Rhone. ", "Paris is the capital of France. ", "Nice has a beach. ",
          "Lille is in the north. "]


def summary(clues: str, action: str) -> str:
    return f"Target: name the capital of France\nClues: {clues}\nReason: chunk read\n{action}"


class ScriptedTeacher(LLMTeacher):
    """Replies with `script(messages, kind)`; records every call."""

    name = "scripted"

    def __init__(self, script, config: LLMTeacherConfig | None = None, delay_s: float = 0.0):
        super().__init__(config or LLMTeacherConfig())
        self.script, self.delay_s = script, delay_s
        self.calls: list[tuple[list[dict], int, str]] = []
        self.fixed: list = []  # the fixed parts asked of each call
        self.in_flight = self.max_in_flight = 0

    async def complete(self, messages, max_tokens, kind="round", fixed=None):
        self.calls.append((messages, max_tokens, kind))
        self.fixed.append(fixed)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(self.delay_s)
        self.in_flight -= 1
        text = self.script(messages, kind)
        return Completion(text, prompt_tokens=len(str(messages)), completion_tokens=len(text), cached_tokens=3)


def stop_when_paris_seen(messages, kind):
    if kind == "answer":
        return " Paris<end>"
    seen = "Paris is the capital" in messages[-1]["content"]
    return summary("Paris is the capital." if seen else "None yet.", STOP if seen or kind == "final" else READ)


def run(coro):
    return asyncio.run(coro)


def test_early_stop_ends_the_document_with_the_answer():
    doc, plan = document_of_chunks("doc-stop", CHUNKS)
    teacher = ScriptedTeacher(stop_when_paris_seen)
    traj = run(teacher.read(doc, plan, max_rounds=10))

    assert [r.action for r in traj.rounds] == ["READ", "STOP"]
    assert [r.chunk_index for r in traj.rounds] == [0, 1]
    assert traj.answer == "Paris" and traj.answer_passed
    assert traj.chunk_ends == plan.chunk_ends  # the whole plan is kept; rounds say how far the teacher read
    assert [kind for _, _, kind in teacher.calls] == ["round", "round", "answer"]
    # The answer continues the assistant's STOP message rather than opening a new turn.
    answer_messages = teacher.calls[-1][0]
    assert answer_messages[-1]["role"] == "assistant" and answer_messages[-1]["content"].endswith(STOP)
    # Token counts cover every call of a round, the answer included.
    assert traj.rounds[1].completion_tokens == len(summary("Paris is the capital.", STOP)) + len(" Paris<end>")
    assert traj.metadata["teacher_usage"] == {"cached_tokens": [3, 6], "retries": 0}
    # What the student learns from parses back to the same rounds and answer.
    text = traj.render().text
    last = text.rsplit("<summary>", 1)[1]
    assert parse_summary_and_action(last) == (traj.rounds[-1].summary, "STOP", "Paris")


def test_round_cap_asks_the_teacher_to_stop_and_answer():
    doc, plan = document_of_chunks("doc-cap", ["Nothing here. "] * 5)
    teacher = ScriptedTeacher(stop_when_paris_seen)
    traj = run(teacher.read(doc, plan, max_rounds=2))

    assert [r.action for r in traj.rounds] == ["READ", "STOP"]
    kinds = [kind for _, _, kind in teacher.calls]
    assert kinds == ["round", "final", "answer"]
    final_prompt = teacher.calls[1][0][-1]["content"]
    assert "last chunk you may read" in final_prompt
    assert "last chunk you may read" not in teacher.calls[0][0][-1]["content"]


def test_the_last_chunk_is_a_final_round_even_under_the_cap():
    doc, plan = document_of_chunks("doc-short", ["Nothing here. ", "Nothing either. "])
    teacher = ScriptedTeacher(stop_when_paris_seen)
    traj = run(teacher.read(doc, plan, max_rounds=10))
    assert [kind for _, _, kind in teacher.calls] == ["round", "final", "answer"]
    assert len(traj.rounds) == 2


def test_per_round_token_caps_are_passed_to_the_backend():
    doc, plan = document_of_chunks("doc-tokens", CHUNKS)
    teacher = ScriptedTeacher(stop_when_paris_seen, LLMTeacherConfig(max_round_tokens=77, max_answer_tokens=11))
    run(teacher.read(doc, plan, max_rounds=10))
    assert [(max_tokens, kind) for _, max_tokens, kind in teacher.calls] == [(77, "round"), (77, "round"), (11, "answer")]


def test_a_malformed_round_is_reasked_with_the_problem_then_accepted():
    doc, plan = document_of_chunks("doc-retry", CHUNKS)
    replies = iter(["I think the answer is Paris.", summary("Paris.", STOP), "Paris<end>"])
    teacher = ScriptedTeacher(lambda messages, kind: next(replies))
    traj = run(teacher.read(doc, plan, max_rounds=10))

    assert traj.answer == "Paris" and len(traj.rounds) == 1
    assert traj.metadata["teacher_usage"]["retries"] == 1
    reask = teacher.calls[1][0]
    assert reask[-2] == {"role": "assistant", "content": "I think the answer is Paris."}
    assert "no action" in reask[-1]["content"] and "Target" in reask[-1]["content"]
    # Both attempts are paid for.
    assert traj.rounds[0].completion_tokens == sum(len(t) for t in ["I think the answer is Paris.",
                                                                       summary("Paris.", STOP), "Paris<end>"])


def test_malformed_output_after_the_retries_names_document_round_and_output():
    doc, plan = document_of_chunks("doc-bad", CHUNKS)
    teacher = ScriptedTeacher(lambda m, k: summary("x", READ) if len(m) == 2 and "Chunk 1 " in m[-1]["content"]
                              else "Clues: only clues <READ>", LLMTeacherConfig(max_retries=2))
    with pytest.raises(TeacherError) as err:
        run(teacher.read(doc, plan, max_rounds=10))
    e = err.value
    assert e.document_id == "doc-bad" and e.round_index == 1
    assert "missing field(s) Target, Reason" in str(e) and "'Clues: only clues <READ>'" in str(e)
    assert len(teacher.calls) == 1 + 3  # round 0, then round 1 asked three times


def test_no_retries_means_one_attempt():
    doc, plan = document_of_chunks("doc-once", CHUNKS)
    teacher = ScriptedTeacher(lambda m, k: "garbage", LLMTeacherConfig(max_retries=0))
    with pytest.raises(TeacherError, match="round 0: malformed output after 1 attempt"):
        run(teacher.read(doc, plan, max_rounds=10))
    assert len(teacher.calls) == 1


def test_a_final_round_that_reads_on_is_malformed():
    doc, plan = document_of_chunks("doc-never-stops", CHUNKS[:2])
    teacher = ScriptedTeacher(lambda m, k: summary("None.", READ))
    with pytest.raises(TeacherError, match=r"doc-never-stops'?, round 1: .*must end with <STOP>"):
        run(teacher.read(doc, plan, max_rounds=10))


def test_stop_without_an_answer_is_rejected():
    doc, plan = document_of_chunks("doc-no-answer", CHUNKS)
    teacher = ScriptedTeacher(lambda m, k: "<end>" if k == "answer" else summary("Paris.", STOP))
    with pytest.raises(TeacherError, match="doc-no-answer'?, round 0: <STOP> is not followed by an answer"):
        run(teacher.read(doc, plan, max_rounds=10))


def test_summary_mode_shows_question_summary_so_far_and_only_the_current_chunk():
    doc, plan = document_of_chunks("doc-summary", CHUNKS)
    teacher = ScriptedTeacher(stop_when_paris_seen, LLMTeacherConfig(prompt_mode="summary"))
    run(teacher.read(doc, plan, max_rounds=10))
    second = teacher.calls[1][0]
    assert [m["role"] for m in second] == ["system", "user"]
    user = second[1]["content"]
    assert doc.question in user and CHUNKS[1] in user and CHUNKS[0] not in user
    assert "Clues: None yet." in user  # round 1's summary is carried forward


def test_stream_mode_grows_one_conversation_with_the_models_own_replies():
    doc, plan = document_of_chunks("doc-stream", CHUNKS)
    teacher = ScriptedTeacher(stop_when_paris_seen, LLMTeacherConfig(prompt_mode="stream"))
    run(teacher.read(doc, plan, max_rounds=10))
    first, second = teacher.calls[0][0], teacher.calls[1][0]
    assert second[: len(first)] == first  # a pure extension: a prefix cache serves all of it
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[2]["content"] == summary("None yet.", READ)
    assert doc.question in second[1]["content"] and doc.question not in second[3]["content"]
    assert CHUNKS[1] in second[3]["content"] and CHUNKS[0] not in second[3]["content"]


def test_many_documents_are_in_flight_at_once_and_each_reads_in_order():
    docs = [document_of_chunks(f"doc-{i}", CHUNKS) for i in range(8)]
    teacher = ScriptedTeacher(stop_when_paris_seen, delay_s=0.01)

    async def read_all():
        return await asyncio.gather(*(teacher.read(d, p, max_rounds=10) for d, p in docs))

    trajectories = run(read_all())
    assert teacher.max_in_flight == 8
    assert [t.document_id for t in trajectories] == [d.id for d, _ in docs]
    assert all([r.chunk_index for r in t.rounds] == [0, 1] for t in trajectories)


def test_multiple_choice_options_are_part_of_the_question():
    doc, plan = document_of_chunks("doc-mc", CHUNKS, question="Which is the capital?", answers=("B",),
                                   options=("Lyon", "Paris"))
    teacher = ScriptedTeacher(lambda m, k: " B<end>" if k == "answer" else summary("Paris.", STOP))
    traj = run(teacher.read(doc, plan, max_rounds=10))
    assert "A. Lyon\nB. Paris" in teacher.calls[0][0][-1]["content"]
    assert "B. Paris" in traj.question and traj.answer == "B" and traj.answer_passed


def test_a_plan_for_another_document_or_another_text_is_refused():
    doc, plan = document_of_chunks("doc-a", CHUNKS)
    other, other_plan = document_of_chunks("doc-b", CHUNKS[:2])
    teacher = ScriptedTeacher(stop_when_paris_seen)
    with pytest.raises(TeacherError, match="doc-a'?: chunk plan is for document 'doc-b'"):
        run(teacher.read(doc, other_plan, max_rounds=10))
    short = type(plan)(document_id="doc-a", chunk_tokens=plan.chunk_tokens, chunk_ends=other_plan.chunk_ends)
    with pytest.raises(TeacherError, match="do not cut the context"):
        run(teacher.read(doc, short, max_rounds=10))
    assert teacher.calls == []


def test_a_request_the_backend_rejects_rejects_its_document():
    class TooLong(ScriptedTeacher):
        async def complete(self, messages, max_tokens, kind="round", fixed=None):
            raise RequestRejected("the prompt has 9000 tokens, more than max_model_len 8192")

    doc, plan = document_of_chunks("doc-long", CHUNKS)
    with pytest.raises(TeacherError, match="doc-long'?, round 0: the scripted backend rejected the request: the prompt"):
        run(TooLong(stop_when_paris_seen).read(doc, plan, max_rounds=10))


def test_identity_names_the_prompt_and_changes_with_it(tmp_path):
    teacher = ScriptedTeacher(stop_when_paris_seen, LLMTeacherConfig(prompt_mode="stream"))
    identity = teacher.identity()
    assert identity["name"] == "scripted" and identity["prompt_mode"] == "stream"
    assert identity["prompt_template"] == "smooth_reading_v1"
    assert identity["prompt_sha256"] == PromptTemplates.load().sha256 and len(identity["prompt_sha256"]) == 64

    for path in PROMPTS_DIR.glob("smooth_reading_v1.*.txt"):
        shutil.copy(path, tmp_path / path.name)
    edited = tmp_path / "smooth_reading_v1.system.txt"
    edited.write_text(edited.read_text() + "Be brief.\n")
    assert PromptTemplates.load("smooth_reading_v1", tmp_path).sha256 != identity["prompt_sha256"]

    (tmp_path / "smooth_reading_v1.reask.txt").unlink()
    with pytest.raises(FileNotFoundError, match="has no part 'reask'"):
        PromptTemplates.load("smooth_reading_v1", tmp_path)


def test_config_refuses_unknown_prompt_modes():
    with pytest.raises(ValueError, match=r"prompt_mode\n.*Input should be 'summary' or 'stream'"):
        LLMTeacherConfig(prompt_mode="chat")


def test_the_hinted_teacher_is_told_where_the_evidence_is_and_stops_there():
    from pipeline.documents import Evidence

    doc, plan = document_of_chunks("doc-hint", CHUNKS)
    start = doc.context.index("Paris is")
    end = start + len("Paris is the capital of France.")
    doc = doc.__class__(**{**doc.__dict__, "evidence": (Evidence(start, end, doc.context[start:end]),)})

    def obedient(messages, kind):
        if kind == "answer":
            return " Paris<end>"
        return summary("Paris is the capital." if kind == "final" else "None yet.", STOP if kind == "final" else READ)

    hinted = ScriptedTeacher(obedient, LLMTeacherConfig(hint="evidence", no_context_check=True))
    traj = run(hinted.read(doc, plan, max_rounds=10))
    prompts = [messages[-1]["content"] for messages, _, kind in hinted.calls if kind != "answer"]
    kinds = [kind for _, _, kind in hinted.calls]
    # Chunk 1 holds nothing; chunk 2 completes the evidence: quoted, with the reference answer, and the last round.
    assert "holds nothing that answers the question" in prompts[0] and "Paris" not in prompts[0].split("Hint")[1]
    assert '"Paris is the capital of France."' in prompts[1] and 'reference answer is "Paris"' in prompts[1]
    assert kinds[:2] == ["read", "final"] and [r.action for r in traj.rounds] == ["READ", "STOP"]
    # The question asked alone, for the no-context check.
    assert "without any document" in hinted.calls[-1][0][0]["content"] and traj.metadata["no_context_answer"] == "Paris"
    assert traj.teacher["hint"] == "evidence" and len(traj.teacher["hint_sha256"]) == 64
    assert "hint" not in ScriptedTeacher(obedient).identity()  # unhinted records keep their identity

    bare, _ = document_of_chunks("doc-bare", CHUNKS)
    with pytest.raises(TeacherError, match=r"doc-bare.*'evidence' is empty.*hinted teacher"):
        run(hinted.read(bare, plan.__class__("doc-bare", plan.chunk_tokens, plan.chunk_ends), max_rounds=10))
    with pytest.raises(ValueError, match=r"hint 'answers' is not one of"):
        LLMTeacherConfig(hint="answers")


def test_a_hinted_teacher_with_structured_output_fixes_what_the_hint_settles():
    import dataclasses
    import re

    from pipeline.documents import Evidence
    from teachers.hints import FixedParts
    from teachers.templates import answer_regex, summary_regex

    class StructuredConfig(LLMTeacherConfig):
        structured_output: bool = True

    doc, plan = document_of_chunks("doc-fixed", CHUNKS)
    start = doc.context.index("Paris is")
    doc = dataclasses.replace(doc, evidence=(Evidence(start, start + 8, "Paris is"),))
    teacher = ScriptedTeacher(lambda m, kind: " Paris<end>" if kind == "answer" else summary(
        "x", STOP if kind == "final" else READ), StructuredConfig(hint="evidence"))
    run(teacher.read(doc, plan, max_rounds=10))
    nothing, complete, answer = teacher.fixed
    assert nothing == FixedParts(target=doc.question, clues="None yet.", reason_prefix="This chunk ", answer="Paris")
    # The chunk with the evidence: the clues so far ("x", as this scripted model wrote them), then the new clue's
    # opening (the evidence's first words); the model writes the rest.
    assert complete.clues is None and complete.clues_prefix == "x Paris is "
    assert complete.reason_prefix == "With this chunk, "
    assert teacher.identity()["hint_fixed"] == ["target", "clues_without_evidence", "clue_opening", "reason_opening",
                                                "answer", "action"]
    final = summary_regex(300, "final", complete)
    reason = f"Reason: With this chunk, done.\n{STOP}"
    assert re.fullmatch(final, f"Target: {doc.question}\nClues: x Paris is the capital.\n{reason}")
    assert not re.fullmatch(final, f"Target: {doc.question}\nClues: None yet.\n{reason}")
    # The regexes a backend decodes with: fixed parts as written, the rest free, the action the hint's.
    regex = summary_regex(300, "read", nothing)
    assert re.fullmatch(regex, f"Target: {doc.question}\nClues: None yet.\nReason: This chunk is idle.\n{READ}")
    assert not re.fullmatch(regex, f"Target: capital?\nClues: None yet.\nReason: This chunk is idle.\n{READ}")
    assert not re.fullmatch(regex, f"Target: {doc.question}\nClues: None yet.\nReason: This chunk is.\n{STOP}")
    assert re.fullmatch(answer_regex(300, answer), " Paris") and not re.fullmatch(answer_regex(300, answer), " Lyon")


def test_a_hint_quotes_a_hotpotqa_supporting_sentence_under_its_title_and_opens_the_clue_with_it():
    from pipeline.sources import long_hotpotqa
    from teachers.hints import EvidenceHints

    doc = long_hotpotqa(2000, n=1, seed=0)[0]  # Hot Pixel / PlayStation Portable: sentence 3 says only "It ..."
    ends = (len(doc.context),)  # one chunk: it brings both supporting sentences and completes the evidence
    (hint,), last = EvidenceHints().rounds(doc, ends)
    assert last == 0 and hint.part == "complete"
    psp = next(e for e in doc.evidence if e.heading == "PlayStation Portable")
    assert psp.text.startswith("It primarily competed with the Nintendo DS")
    assert f"PlayStation Portable: {psp.text}" in hint.text
    assert hint.clue_opening == f"{doc.evidence[0].heading}:"
