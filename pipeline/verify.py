"""The trajectory verifier: a trajectory must teach the reading method, not only end on the right answer.

A teacher can pass the answer check with summaries a student learns nothing from: every field holding the answer
from the first round on, a Target that is the answer, a STOP before the evidence was read. Each check below names
one such fault; the filter stage rejects a trajectory that fails any enabled check, naming every check it fails.

Evidence positions come from the record (`metadata.evidence_spans`, character offsets into the context, written by
the teachers from the document's evidence); without them the checks that need them fall back to where the answer
first occurs in the text, or pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.metrics import normalize_answer, score_answer
from pipeline.trajectory import Trajectory

CHECKS: tuple[str, ...] = (
    "answer",  # the final answer passes the answer check
    "target_restates_question",  # every Target restates the question and does not hold the answer
    "clues_before_evidence",  # no Clues hold the answer before the reader could have read it
    "stop_after_evidence",  # STOP comes no earlier than the chunk of the last evidence
    "clues_hold_evidence",  # the Clues at STOP hold something of the evidence (not "None yet.")
    "fields_distinct",  # Target, Clues and Reason are not copies of each other or of the chunk
    "hint_not_echoed",  # a hinted teacher's summaries do not repeat its hint ("the reference answer is ...")
    "needs_context",  # the teacher cannot answer without the document (when the record holds its no-context answer)
)
# A Target restates the question when it holds at least this share of the question's content words.
TARGET_MIN_OVERLAP = 0.5
# Two fields whose normalised texts are at least this similar (difflib ratio) are copies.
COPY_RATIO = 0.9
# A field that holds at least this share of the chunk's word 5-grams reproduces the chunk.
CHUNK_COPY_SHARE = 0.5
# The Clues at STOP must hold at least this many content words of the evidence that the question does not hold.
MIN_EVIDENCE_WORDS = 1
# Words of the hinted teacher's prompts (teachers/prompts/hints) that a summary must not repeat: a student was never
# told a reference answer or given a hint, and the prompts' instructions are not a summary.
HINT_ECHOES: tuple[str, ...] = ("reference answer", "hint", "add this fact to the clues", "say in reason",
                                "keep the clues as they were", "say so in reason")
# Answers too common as words to be looked for in Clues ("there is no mention ...").
_UNSEARCHABLE_ANSWERS = frozenset({"yes", "no", "none", "true", "false"})
_STOPWORDS = frozenset(
    "a an the of in on at to for from by with and or is are was were be been which what who whom whose when where "
    "why how that this these those it its as did does do has have had same both than".split()
)


@dataclass(frozen=True)
class Failure:
    check: str
    field: str  # where: "answer", "round K", "metadata"
    problem: str


def check_names(checks: Sequence[str]) -> tuple[str, ...]:
    """The checks in their canonical order, after refusing unknown names."""
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"filter.checks: unknown check(s) {unknown}. Fix: use only {list(CHECKS)}")
    return tuple(c for c in CHECKS if c in checks)


def verify(t: Trajectory, checks: Sequence[str] = CHECKS, min_answer_score: float | None = None) -> list[Failure]:
    """Every failure of `t` under the enabled checks (empty: the trajectory passes)."""
    context = _Context(t)
    failures = []
    for name in check_names(checks):
        failure = _CHECK_FUNCTIONS[name](t, context, min_answer_score)
        if failure is not None:
            failures.append(failure)
    return failures


def _words(text: str) -> list[str]:
    return normalize_answer(text).split()


def _content_words(text: str) -> set[str]:
    return {w.rstrip("s") or w for w in _words(text) if w not in _STOPWORDS}


def _holds(haystack_words: str, needle_words: str) -> bool:
    """Whether normalised text holds the normalised phrase as whole words."""
    return bool(needle_words) and f" {needle_words} " in f" {haystack_words} "


class _Context:
    """What several checks need, computed once: chunks, evidence chunks, the answer's forms and where it is seen."""

    def __init__(self, t: Trajectory):
        self.chunks = t.chunks
        self.ends = tuple(t.chunk_ends)
        spans = [tuple(s) for s in (t.metadata.get("evidence_spans") or ())]
        self.evidence_words = set().union(*(_content_words(t.context[s:e]) for s, e in spans)) if spans else set()
        self.evidence_chunks = sorted({self.chunk_of(s) for s, _e in spans} | {self.chunk_of(e - 1) for s, e in spans
                                                                                if e > s})
        self.first_evidence = min((self.chunk_of(s) for s, _e in spans), default=None)
        self.last_evidence = max((self.chunk_of(s) for s, _e in spans), default=None)
        self.question = " ".join(_words(t.question))
        self.answers = [a for a in (" ".join(_words(r)) for r in t.references)
                        if a and a not in _UNSEARCHABLE_ANSWERS and not _holds(self.question, a)]
        self.first_seen = self._first_seen()

    def chunk_of(self, offset: int) -> int:
        for i, end in enumerate(self.ends):
            if offset < end:
                return i
        return len(self.chunks) - 1

    def _first_seen(self) -> int | None:
        """The first chunk by whose end the text read holds an answer (None: it never does)."""
        if not self.answers:
            return None
        longest = max(len(a) for a in self.answers)
        previous = ""
        for i, chunk in enumerate(self.chunks):
            # The tail of the previous chunk catches an answer cut by a chunk boundary.
            window = " ".join(_words(previous[-(4 * longest + 64):] + chunk))
            if any(_holds(window, a) for a in self.answers):
                return i
            previous = chunk
        return None


def _check_answer(t: Trajectory, c: _Context, min_answer_score: float | None) -> Failure | None:
    passed = t.answer_passed if min_answer_score is None else t.answer_score >= min_answer_score
    if passed:
        return None
    return Failure("answer", "answer", f"the teacher's answer {t.answer[:200]!r} scored {t.answer_score:.2f} against "
                   f"the references {list(t.references)[:3]}")


def _check_target(t: Trajectory, c: _Context, _score) -> Failure | None:
    question_words = _content_words(t.question.split("\n", 1)[0])
    for r in t.rounds:
        target = " ".join(_words(r.summary.target))
        leaked = [a for a in c.answers if _holds(target, a)]
        if leaked:
            return Failure("target_restates_question", f"round {r.chunk_index}",
                           f"Target {r.summary.target[:120]!r} holds the answer {leaked[0]!r}; it should restate "
                           "the question")
        if question_words:
            share = len(question_words & _content_words(r.summary.target)) / len(question_words)
            if share < TARGET_MIN_OVERLAP:
                return Failure("target_restates_question", f"round {r.chunk_index}",
                               f"Target {r.summary.target[:120]!r} shares {share:.0%} of the question's content words "
                               f"(at least {TARGET_MIN_OVERLAP:.0%} restate it)")
    return None


def _check_clues(t: Trajectory, c: _Context, _score) -> Failure | None:
    if not c.answers:
        return None
    # Before this chunk the reader cannot know the answer: the evidence (when known) has not begun and the answer
    # has not appeared in the text read so far.
    if c.first_evidence is not None:
        bound = min(c.first_evidence, c.first_seen if c.first_seen is not None else c.first_evidence)
    elif c.first_seen is not None:
        bound = c.first_seen
    else:
        return None  # the answer is nowhere in the text: where it may be known cannot be told
    for r in t.rounds:
        if r.chunk_index >= bound:
            break
        clues = " ".join(_words(r.summary.clues))
        leaked = [a for a in c.answers if _holds(clues, a)]
        if leaked:
            return Failure("clues_before_evidence", f"round {r.chunk_index}",
                           f"Clues hold the answer {leaked[0]!r} in chunk {r.chunk_index + 1}, before the chunk "
                           f"({bound + 1}) where the text first gives it")
    return None


def _check_stop(t: Trajectory, c: _Context, _score) -> Failure | None:
    if c.last_evidence is None or not t.rounds:
        return None
    last = t.rounds[-1]
    if last.action == "STOP" and last.chunk_index < c.last_evidence:
        return Failure("stop_after_evidence", f"round {last.chunk_index}",
                       f"STOP after chunk {last.chunk_index + 1}, before chunk {c.last_evidence + 1} where the last "
                       "evidence is")
    return None


def _check_clues_hold_evidence(t: Trajectory, c: _Context, _score) -> Failure | None:
    if not c.evidence_words or not t.rounds:
        return None
    last = t.rounds[-1]
    held = (_content_words(last.summary.clues) & c.evidence_words) - _content_words(t.question)
    if len(held) < MIN_EVIDENCE_WORDS:
        return Failure("clues_hold_evidence", f"round {last.chunk_index}",
                       f"the Clues at STOP ({last.summary.clues[:80]!r}) hold {len(held)} word(s) of the evidence "
                       f"beyond the question (at least {MIN_EVIDENCE_WORDS}): the answer would come from nowhere")
    return None


def _similar(a: str, b: str) -> bool:
    if not a or not b:
        return False
    if a == b:
        return True
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return matcher.real_quick_ratio() >= COPY_RATIO and matcher.quick_ratio() >= COPY_RATIO and \
        matcher.ratio() >= COPY_RATIO


def _grams(words: list[str], n: int = 5) -> set[tuple[str, ...]]:
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def _copies_chunk(field_words: list[str], chunk_grams: set[tuple[str, ...]]) -> bool:
    if not chunk_grams:
        return False
    return len(_grams(field_words) & chunk_grams) >= CHUNK_COPY_SHARE * len(chunk_grams)


def _check_fields(t: Trajectory, c: _Context, _score) -> Failure | None:
    evidence_chunks = set(c.evidence_chunks)
    for r in t.rounds:
        fields = {"Target": r.summary.target, "Clues": r.summary.clues, "Reason": r.summary.reason}
        normalized = {name: " ".join(_words(text)) for name, text in fields.items()}
        names = list(fields)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if _similar(normalized[a], normalized[b]):
                    return Failure("fields_distinct", f"round {r.chunk_index}",
                                   f"{a} and {b} are copies of each other ({fields[a][:80]!r})")
        chunk_grams = _grams(_words(c.chunks[r.chunk_index]))
        for name in names:
            # Clues and Reason may quote the evidence a chunk holds (a chunk may be one needle sentence); elsewhere a
            # field that reproduces the chunk summarises nothing.
            if name != "Target" and r.chunk_index in evidence_chunks:
                continue
            if _copies_chunk(normalized[name].split(), chunk_grams):
                return Failure("fields_distinct", f"round {r.chunk_index}",
                               f"{name} reproduces chunk {r.chunk_index + 1} instead of summarising it")
    return None


def _check_hint_echo(t: Trajectory, c: _Context, _score) -> Failure | None:
    if not t.teacher.get("hint"):
        return None
    for r in t.rounds:
        for name, text in (("Target", r.summary.target), ("Clues", r.summary.clues), ("Reason", r.summary.reason)):
            words = " ".join(_words(text))
            echoed = [phrase for phrase in HINT_ECHOES if _holds(words, phrase)]
            if echoed:
                return Failure("hint_not_echoed", f"round {r.chunk_index}",
                               f"{name} repeats the hint ({echoed[0]!r}): {text[:100]!r}")
    return None


def _check_needs_context(t: Trajectory, c: _Context, _score) -> Failure | None:
    unread = t.metadata.get("no_context_answer")
    if unread is None:
        return None
    from pipeline.documents import Document

    reference = Document(id=t.document_id, question=t.question, context=t.context or " ", answers=t.references)
    score, passed = score_answer(reference, str(unread))
    if passed:
        return Failure("needs_context", "metadata", f"the teacher answers {str(unread)[:80]!r} (score {score:.2f}) "
                       "without reading the document: the question does not test reading")
    return None


_CHECK_FUNCTIONS = {
    "answer": _check_answer,
    "target_restates_question": _check_target,
    "clues_before_evidence": _check_clues,
    "stop_after_evidence": _check_stop,
    "clues_hold_evidence": _check_clues_hold_evidence,
    "fields_distinct": _check_fields,
    "hint_not_echoed": _check_hint_echo,
    "needs_context": _check_needs_context,
}


def verifier_statistics(accepted_by_hint: dict[str, int], rejects: Sequence) -> dict:
    """For statistics.json and the card: trajectories failing each check (a trajectory may fail several), and
    acceptance among the documents the teacher read, hinted and unhinted apart."""
    failures = {name: 0 for name in CHECKS}
    for r in rejects:
        if r.stage == "filter":
            for name in r.checks:
                failures[name] = failures.get(name, 0) + 1
    read = [r for r in rejects if r.stage in ("teacher", "filter")]
    by_hint = {}
    for hint in sorted(set(accepted_by_hint) | {r.hint or "none" for r in read}):
        accepted = accepted_by_hint.get(hint, 0)
        rejected = sum((r.hint or "none") == hint for r in read)
        by_hint[hint] = {"accepted": accepted, "rejected": rejected,
                         "acceptance_rate": accepted / (accepted + rejected) if accepted + rejected else 0.0}
    return {"check_failures": failures, "by_hint": by_hint}
