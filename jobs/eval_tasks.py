"""What an evaluation reads and how each answer is scored: NIAH grids, long HotpotQA, QuALITY and LongBench-format
files as items, each with the length it is reported under; and the evaluation's typed config."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from jobs.eval_report import MODES
from pipeline.config import Config
from pipeline.documents import Document
from pipeline.longbench import longbench_score, read_longbench
from pipeline.metrics import score_answer
from pipeline.sources import long_hotpotqa, niah_documents, quality_documents

ReaderDtype = Literal["auto", "float32", "bfloat16"]  # a reader's weights (EvalConfig.dtype)
ReaderEngine = Literal["transformers", "vllm"]  # what runs the readers (EvalConfig.engine)

TASKS: tuple[str, ...] = ("niah", "hotpotqa", "quality")


@dataclass(frozen=True)
class EvalItem:
    """One document of one task, with the length bucket it is reported under and how it is scored."""

    task: str
    length: int  # tokens: the built length for synthetic tasks, the power-of-two bucket for natural ones
    doc: Document
    metric: str = "answer"  # "answer": pipeline.metrics.score_answer; "string_match": the answer contains a reference;
    # otherwise a LongBench metric name
    all_classes: tuple[str, ...] = ()
    first_line_only: bool = False


class EvalConfig(Config):
    tasks: list[str] = Field(default_factory=lambda: ["niah"])
    lengths: list[int] = Field(default_factory=lambda: [1024, 2048, 4096])  # NIAH / long-HotpotQA, in tokens
    depths: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    n_per_cell: int = 2  # NIAH documents per (length, depth)
    value_digits: int = 7  # NIAH: digits of each needle's value (as the student was trained on)
    n_per_length: int = 10  # long-HotpotQA documents per length
    hotpotqa_lengths: list[int] = Field(default_factory=list)  # long-HotpotQA lengths when not `lengths`
    max_documents: int = 0  # QuALITY / LongBench: at most this many questions per task (0: all)
    chunk_tokens: int = 0  # 0: half the student's window
    max_new_tokens: int = 32  # answer tokens
    max_summary_tokens: int = 128  # per summary; a summary that runs longer is closed by the reader
    seed: int = 1  # NIAH / long-HotpotQA documents; not the generate job's default seed (0), so needles differ
    modes: list[str] = Field(default_factory=lambda: ["emr", "one-round"])
    engine: ReaderEngine = "transformers"  # readers: transformers (one document at a time) | vllm (a length's documents batched)
    dtype: ReaderDtype = "float32"  # the vLLM readers' weights; auto: bfloat16 where native (pipeline.precision)
    # Each vLLM reader's KV cache. It sets how many of a length's documents read at once: as many as it keeps between
    # rounds with a window and a round each (about 40 SmolLM2-SWA-512 streams in 1 GiB); the others wait their turn.
    kv_cache_gb: float = 1.0
    teacher: str = ""  # the self-attention reference (row "teacher"): a Hugging Face folder or a prepared model name

    @field_validator("modes")
    @classmethod
    def _student_modes(cls, modes: list[str]) -> list[str]:
        bad = [m for m in modes if m not in MODES or m == "teacher"]
        if bad:
            raise ValueError(f"modes {bad} are unknown. Fix: use emr and/or one-round (the parent's row comes with "
                             "teacher / --teacher)")
        return modes


def longbench_items(spec: str, max_documents: int, count_tokens) -> list[EvalItem]:
    """A LongBench-format jsonl as evaluation items (pipeline.longbench reads and checks it)."""
    return [EvalItem(task=r.task, length=length_bucket(count_tokens(r.doc.context)), doc=r.doc, metric=r.metric,
                     all_classes=r.all_classes, first_line_only=r.first_line_only)
            for r in read_longbench(spec, max_documents)]


def length_bucket(tokens: int) -> int:
    """Natural documents are reported under the next power of two of their token count (at least 1024)."""
    return max(1024, 2 ** math.ceil(math.log2(max(tokens, 1))))


def score_item(item: EvalItem, prediction: str) -> float:
    """Score in [0, 1]: `score_answer` for our tasks, LongBench's own scoring for its files."""
    if item.metric == "answer":
        return float(score_answer(item.doc, prediction)[0])
    if item.metric == "string_match":  # RULER's NIAH score: the needle's value is in the answer, however phrased
        return float(any(answer in prediction for answer in item.doc.answers))
    return longbench_score(prediction, item.doc.answers, item.metric, item.all_classes, item.first_line_only)


def build_items(config: EvalConfig, counter) -> list[EvalItem]:
    """The documents of every task, each with the length it is reported under."""
    items: list[EvalItem] = []
    for task in config.tasks:
        if task == "niah":
            docs = niah_documents(config.lengths, config.depths, config.n_per_cell, config.seed, counter,
                                  value_digits=config.value_digits)
            items += [EvalItem("niah", int(d.metadata["length"]), d, metric="string_match") for d in docs]
        elif task == "hotpotqa":
            for length in config.hotpotqa_lengths or config.lengths:
                docs = long_hotpotqa(length, config.n_per_length, config.seed, counter)
                items += [EvalItem("hotpotqa", length, d) for d in docs]
        elif task == "quality":
            docs = list(quality_documents())
            if config.max_documents:
                docs = docs[: config.max_documents]
            items += [EvalItem("quality", length_bucket(counter.count(d.context)), d) for d in docs]
        elif task.startswith("longbench:"):
            items += longbench_items(task, config.max_documents, counter.count)
        else:
            raise ValueError(f"task {task!r} is unknown. Fix: use {', '.join(TASKS)} or longbench:PATH[:METRIC]")
    return items
