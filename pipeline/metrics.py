"""Answer metrics, computed the way LongBench computes them (its metrics.py), and the answer check of the filter."""

from __future__ import annotations

import functools
import math
import random
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence

from pipeline.documents import Document

# The filter keeps a trajectory whose answer scores at least this (F1 for open answers; 1.0 for options).
PASS_THRESHOLD = 0.5

_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """LongBench / SQuAD normalisation: lowercase, drop punctuation, drop articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """LongBench's qa_f1_score: F1 over the normalised words."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = Counter(pred) & Counter(ref)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


@functools.cache
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (LongBench's rouge_score for summarisation tasks), from the rouge-score package."""
    if not prediction.strip() or not reference.strip():
        return 0.0
    return float(_rouge_scorer().score(reference, prediction)["rougeL"].fmeasure)


# LongBench v2's extraction first ("The correct answer is (B)"), then the forms a reader writes after <STOP>:
# a bare letter, "(B)", "B.", "B) ...", "Answer: B", "option B".
_CHOICE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"The correct answer is \(([A-Z])\)"),
    re.compile(r"The correct answer is ([A-Z])\b"),
    re.compile(r"^\(?([A-Z])\)?(?:[.:)]|$)"),
    re.compile(r"\b(?i:answer|option|choice)\s*(?i:is)?\s*:?\s*\(?([A-Z])\b"),
)


def extract_choice(prediction: str, options: Sequence[str] = ()) -> str | None:
    """The option letter a prediction names, or None. With `options`, a prediction that is an option's text
    (after normalisation) names that option."""
    text = prediction.replace("*", "").strip()
    for pattern in _CHOICE_PATTERNS:
        m = pattern.search(text)
        if m:
            return m.group(1).upper()
    normalized = normalize_answer(text)
    for i, option in enumerate(options):
        if normalized and normalized == normalize_answer(option):
            return chr(ord("A") + i)
    return None


def multiple_choice_accuracy(prediction: str, reference: str, options: Sequence[str] = ()) -> float:
    """1.0 when the prediction names the reference letter, else 0.0 (also when no letter can be extracted)."""
    return float(extract_choice(prediction, options) == reference.strip().upper())


def best_score(prediction: str, references: Sequence[str], metric: Callable[[str, str], float]) -> float:
    """The best score over the references, as LongBench takes it; no references score 0."""
    return max((metric(prediction, r) for r in references), default=0.0)


def score_answer(doc: Document, prediction: str, threshold: float = PASS_THRESHOLD) -> tuple[float, bool]:
    """(score, passed) for a final answer: option accuracy for multiple choice, token F1 otherwise."""
    if doc.options:
        score = best_score(prediction, doc.answers, lambda p, r: multiple_choice_accuracy(p, r, doc.options))
    else:
        score = best_score(prediction, doc.answers, token_f1)
    return score, score >= threshold


def interval95(scores: Sequence[float]) -> tuple[float, float]:
    """A 95% interval for the mean of per-document scores in [0, 1].

    Scores that are all 0 or 1 (NIAH, exact answers) get the Wilson score interval, which stays inside [0, 1] and
    is honest at 0% and 100% (20 documents all right still only bound the rate above 83.9%). Graded scores (F1,
    ROUGE-L) get a percentile bootstrap of 2,000 resamples with a fixed seed, so a report is the same on every run.
    """
    n = len(scores)
    if n == 0:
        raise ValueError("interval95 needs at least one score")
    mean = sum(scores) / n
    if all(s in (0.0, 1.0) for s in scores):
        z = 1.959963984540054
        centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)
    return _bootstrap95(scores)


def paired_difference95(scores: Sequence[float], baseline: Sequence[float]) -> tuple[float, float, float]:
    """The mean of scores[i] - baseline[i] over the same documents read two ways, and its 95% interval.

    Resampling documents, not each reader's scores apart, keeps what the two readers share (a hard document is hard
    for both), so this interval is of the difference itself: whether a student is within some points of its parent,
    or above it, is read here and not from two overlapping intervals.
    """
    if len(scores) != len(baseline) or not scores:
        raise ValueError(f"paired_difference95 needs the same documents read twice: got {len(scores)} and "
                         f"{len(baseline)} scores")
    differences = [a - b for a, b in zip(scores, baseline)]
    low, high = _bootstrap95(differences)
    return sum(differences) / len(differences), low, high


def _bootstrap95(values: Sequence[float]) -> tuple[float, float]:
    """Percentile bootstrap of the mean: 2,000 resamples with a fixed seed, so a report is the same on every run."""
    n = len(values)
    rng = random.Random(0)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(2000))
    return means[49], means[1949]  # the 2.5th and 97.5th percentiles
