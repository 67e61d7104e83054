"""The paper's rule-written trajectories, for documents whose evidence is known (needle-in-a-haystack, HotpotQA).

Per chunk: Target is the question; Clues lists the evidence read so far; Reason says which clues the chunk just read
brought and whether more are needed, or that it held nothing relevant. The teacher stops on the chunk that completes
the evidence and answers with the reference. Deterministic: the same document and plan give the same trajectory.

No summary counts chunks: a round far into a long document reads like one early in a short document, so a student
trained on short documents meets nothing new in long ones (with "Chunk 37" in the Reason it would).

Summaries are compact (`rules_v3`): a student writes one every round, so its length is most of what reading costs.
The evidence is copied once, into Clues; the Reason names clues by number instead of quoting them again (as
`rules_v2` did), which also leaves one copy of a needle's digits to get right before the answer instead of two.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.chunking import ChunkPlan
from pipeline.documents import Document, Evidence, question_text, sentence_around
from pipeline.metrics import score_answer
from pipeline.stream import READ, STOP, Summary, parse_summary_and_action
from pipeline.trajectory import TeacherRound, Trajectory
from teachers.base import Teacher, TeacherError, check_plan, record_metadata

NO_CLUES = "None yet."
NOTHING_NEW = "Nothing relevant."


def _one_line(text: str) -> str:
    # Summary fields are parsed line by line: evidence with newlines must not start a new "Reason:" line.
    return " ".join(text.split())


def clue(evidence: Evidence) -> str:
    """An evidence span as a clue: "Heading: text" where it has a heading (HotpotQA's supporting sentences under
    their paragraph's title), and a titled paragraph ("Title\nsentences") as "Title: sentences"."""
    if evidence.heading:
        return evidence.one_line()
    title, _, body = evidence.text.strip().partition("\n")
    return f"{_one_line(title)}: {_one_line(body)}" if body.strip() else _one_line(title)


def evidence_from_answer(doc: Document) -> tuple[tuple[Evidence, ...], dict]:
    """Evidence for a document that records none: the sentences where its answer occurs (whole words, the first
    reference found, case-sensitive before case-insensitive), and a note of which occurrences were taken.
    Empty when no reference answer occurs in the context."""
    if doc.options:
        return (), {}
    for flags in (0, re.IGNORECASE):
        for answer in doc.answers:
            answer = answer.strip()
            if not answer:
                continue
            pattern = re.compile(r"(?<!\w)" + re.escape(answer) + r"(?!\w)", flags)
            occurrences = [(m.start(), m.end()) for m in pattern.finditer(doc.context)]
            if occurrences:
                sentences = sorted({sentence_around(doc.context, s, e) for s, e in occurrences}, key=lambda e: e.start)
                note = {"method": "answer occurrences", "answer": answer, "case_sensitive": flags == 0,
                        "occurrences": [list(o) for o in occurrences]}
                return tuple(sentences), note
    return (), {}


class RuleTeacher(Teacher):
    name = "rules"

    def __init__(self):
        # The rules are the template: hashing this file ties every record to the exact rules that wrote it.
        self.rules_sha256 = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "model": "", "sampling": {}, "prompt_template": "rules_v3",
                "prompt_sha256": self.rules_sha256}

    async def read(self, doc: Document, plan: ChunkPlan, max_rounds: int) -> Trajectory:
        return self.read_now(doc, plan, max_rounds)

    def read_now(self, doc: Document, plan: ChunkPlan, max_rounds: int) -> Trajectory:
        """`read` without the event loop, for callers that are not async."""
        derived = {}
        if not doc.evidence:
            evidence, note = evidence_from_answer(doc)
            if not evidence:
                raise TeacherError(
                    doc.id, None,
                    "field 'evidence' is empty and no reference answer occurs in the context, so the rule teacher "
                    "cannot tell which chunk holds the answer. Fix: give the document evidence spans (character "
                    "offsets into the context) or read it with an LLM teacher (backend 'vllm', 'openai' or "
                    "'transformers')",
                )
            doc = replace(doc, evidence=evidence)
            derived = {"evidence_from_answer": note}
        ends = check_plan(doc, plan, max_rounds)
        # Evidence counts as read in the chunk where it ends: only then has the reader seen all of it.
        found_in = [next(i for i, end in enumerate(ends) if e.end <= end) for e in doc.evidence]
        last_needed = max(found_in)
        if last_needed >= max_rounds:
            raise TeacherError(
                doc.id, max_rounds - 1,
                f"the last evidence is in chunk {last_needed + 1} but at most {max_rounds} round(s) may be read; "
                "stopping earlier would teach an answer without its evidence. Fix: raise max_rounds or use larger "
                "chunks",
            )

        target = _one_line(question_text(doc))
        answer = doc.answers[0].strip()
        clues: list[str] = []
        rounds = []
        for k in range(last_needed + 1):
            new = [e for e, i in zip(doc.evidence, found_in) if i == k]
            clues.extend(clue(e) for e in new)
            clue_text = " ".join(f"({n}) {c}" for n, c in enumerate(clues, 1)) if clues else NO_CLUES
            action = "STOP" if k == last_needed else "READ"
            if not new:
                reason = NOTHING_NEW
            else:
                numbers = ", ".join(f"({n})" for n in range(len(clues) - len(new) + 1, len(clues) + 1))
                reason = f"New clue{'s' if len(new) > 1 else ''} {numbers}; " + ("the question can be answered." if action == "STOP" else "more is needed.")
            summary = Summary(target, clue_text, reason)
            raw = summary.render() + (STOP + answer if action == "STOP" else READ)
            if parse_summary_and_action(raw) != (summary, action, answer if action == "STOP" else None):
                raise TeacherError(doc.id, k, "the rule-written round does not parse back to itself", raw)
            rounds.append(TeacherRound(k, summary, action, raw))

        answer_score, passed = score_answer(doc, answer)
        return Trajectory(
            document_id=doc.id, question=question_text(doc), context=doc.context, chunk_ends=ends,
            rounds=tuple(rounds), answer=answer, references=doc.answers, teacher=self.identity(),
            answer_passed=passed, answer_score=answer_score, source=doc.source,
            metadata={**record_metadata(doc), **derived},
        )
