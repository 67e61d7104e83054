"""LongBench-format data (`input`, `context`, `answers`, `all_classes`, `length` per jsonl line), read and scored
the way LongBench scores it: the metric per task from its eval.py `dataset2metric`, the best score over the
references, the first line only for few-shot tasks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.documents import Document
from pipeline.metrics import rouge_l, token_f1

# LongBench's metric per task name (its eval.py dataset2metric), for the English tasks scored by the metrics we
# share with it: QA F1, ROUGE-L for summarisation, accuracy over `all_classes` for classification.
LONGBENCH_METRICS: dict[str, str] = {
    **{name: "f1" for name in ("narrativeqa", "qasper", "multifieldqa_en", "hotpotqa", "2wikimqa", "musique",
                               "triviaqa")},
    **{name: "rouge_l" for name in ("gov_report", "qmsum", "multi_news", "samsum")},
    "trec": "accuracy",
}
LONGBENCH_METRIC_NAMES: tuple[str, ...] = ("f1", "rouge_l", "accuracy")
# Few-shot tasks whose models continue the pattern past the answer: LongBench scores the first line only.
LONGBENCH_FIRST_LINE: frozenset[str] = frozenset({"trec", "triviaqa", "samsum", "lsht"})
# Chinese tasks are scored on jieba words / characters in LongBench; the shared metrics split on whitespace.
LONGBENCH_CHINESE: frozenset[str] = frozenset({"multifieldqa_zh", "dureader", "vcsum", "lsht", "passage_retrieval_zh"})


@dataclass(frozen=True)
class LongBenchRecord:
    """One line of a LongBench file as a document, with how LongBench scores its answer."""

    task: str  # the file's stem: LongBench's task name
    doc: Document
    metric: str  # f1 | rouge_l | accuracy
    all_classes: tuple[str, ...] = ()
    first_line_only: bool = False


def parse_longbench_spec(spec: str) -> tuple[Path, str | None]:
    """`longbench:PATH[:METRIC]` -> (PATH, METRIC or None)."""
    rest = spec.split(":", 1)[1] if ":" in spec else ""
    metric = None
    head, _, tail = rest.rpartition(":")
    if head and tail in LONGBENCH_METRIC_NAMES:
        rest, metric = head, tail
    if not rest:
        raise ValueError(f"task {spec!r}: no file. Fix: write longbench:PATH/TO/TASK.jsonl[:{'|'.join(LONGBENCH_METRIC_NAMES)}]")
    return Path(rest), metric


def longbench_metric(task_name: str, records: list[dict[str, Any]], metric: str | None) -> str:
    """The metric LongBench uses for this task: named explicitly, by task name, or by the presence of classes."""
    if metric is not None:
        return metric
    if task_name in LONGBENCH_CHINESE or task_name.endswith("_zh"):
        raise ValueError(
            f"LongBench task {task_name!r} is Chinese; LongBench scores it on jieba words or characters, which the "
            f"shared metrics do not do. Fix: name a metric explicitly (longbench:PATH:f1) if whitespace tokens are "
            f"acceptable, or leave the task out"
        )
    if task_name in LONGBENCH_METRICS:
        return LONGBENCH_METRICS[task_name]
    if any(r.get("all_classes") for r in records):
        return "accuracy"
    return "f1"


def read_longbench(spec: str, max_documents: int = 0) -> list[LongBenchRecord]:
    """Read `longbench:PATH[:METRIC]`; a line that cannot be used names the file, the line and the field."""
    path, metric = parse_longbench_spec(spec)
    if not path.is_file():
        raise FileNotFoundError(f"task {spec!r}: {path} does not exist. Fix: point longbench: at a jsonl file")
    task_name = path.stem
    records = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        for name in ("input", "context", "answers"):
            if name not in record:
                raise ValueError(
                    f"{path}:{line_number}: field {name!r} is missing. Fix: LongBench lines carry input, context, "
                    f"answers (and all_classes, length)"
                )
        records.append((line_number, record))
        if max_documents and len(records) >= max_documents:
            break
    metric = longbench_metric(task_name, [r for _, r in records], metric)
    out = []
    for line_number, record in records:
        answers = record["answers"] if isinstance(record["answers"], list) else [record["answers"]]
        doc = Document.from_dict({
            "id": str(record.get("_id") or f"{task_name}-{line_number}"),
            "question": record["input"] or "Summarize the text.",
            "context": record["context"],
            "answers": answers,
            "source": f"longbench:{task_name}",
            "metadata": {"longbench_length": record.get("length")},
        })
        out.append(LongBenchRecord(task_name, doc, metric, tuple(record.get("all_classes") or ()),
                                   task_name in LONGBENCH_FIRST_LINE))
    return out


def classification_score(prediction: str, reference: str, all_classes: tuple[str, ...]) -> float:
    """LongBench's classification score: 1 / (number of classes named) when the reference is among them."""
    named = [c for c in all_classes if c in prediction]
    named = [c for c in named if not (c in reference and c != reference)]
    return 1.0 / len(named) if reference in named else 0.0


def longbench_score(prediction: str, references, metric: str, all_classes: tuple[str, ...] = (),
                    first_line_only: bool = False) -> float:
    """Score in [0, 1], the best over the references, as LongBench does."""
    if first_line_only:
        prediction = prediction.lstrip("\n").split("\n")[0]
    if metric == "f1":
        scores = [token_f1(prediction, ref) for ref in references]
    elif metric == "rouge_l":
        scores = [rouge_l(prediction, ref) for ref in references]
    elif metric == "accuracy":
        scores = [classification_score(prediction, ref, all_classes) for ref in references]
    else:
        raise ValueError(f"metric {metric!r} is unknown. Fix: use one of {LONGBENCH_METRIC_NAMES}")
    return max(scores)
