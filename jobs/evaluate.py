"""Evaluate a student: Smooth Reading (EMR) against one-round reading, with a self-attention teacher as reference.

Tasks: `niah` (needle-in-a-haystack grid, lengths x depths), `hotpotqa` (long HotpotQA built from the shipped
questions), `quality` (the shipped QuALITY story, multiple choice) and `longbench:PATH[:METRIC]` (any
LongBench-format jsonl: `input`, `context`, `answers`, `all_classes`, `length`), scored the way LongBench scores it.

Modes: `emr` reads the chunks of `pipeline.chunking.chunk_document` in one continuous stream with
`students.reading.smooth_read` (chunk size <= window / 2, checked); `one-round` gives the same student the whole
context at once (`students.reading.one_round_read`); `teacher` is the same one-round reading by a self-attention
Hugging Face causal LM, as the reference row. Writes results.json, results.md, accuracy.png and predictions.jsonl
to the output folder.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from tqdm import tqdm
from transformers import AutoModelForCausalLM, AutoTokenizer

import students  # noqa: F401  (registers the GLA student classes with AutoModelForCausalLM)
from jobs.teacher_models import PREPARED_MODELS, prepare_smollm2, resolve_model
from pipeline.chunking import TokenizerCounter, check_chunk_size, chunk_document
from pipeline.config import Config
from pipeline.documents import Document, chunk_texts, question_text
from pipeline.files import write_atomic
from pipeline.longbench import longbench_score, read_longbench
from pipeline.metrics import interval95, score_answer
from pipeline.sources import long_hotpotqa, niah_documents, quality_documents
from pipeline.stream import SPECIAL_TOKENS
from students.reading import one_round_read, smooth_read
from students.swa import window_of
from teachers.base import chat_prompt

MODES: tuple[str, ...] = ("emr", "one-round", "teacher")
MODE_TITLES: dict[str, str] = {"emr": "EMR (Smooth Reading)", "one-round": "one-round", "teacher": "teacher one-round"}
TASKS: tuple[str, ...] = ("niah", "hotpotqa", "quality")
# LongBench's instruction for its QA tasks, said before and after the passages as LongBench does.
PARENT_INSTRUCTION = "Answer the question based on the given passages. Only give me the answer and do not output any other words."


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
    engine: Literal["transformers", "vllm"] = "transformers"  # readers: transformers (one document at a time) | vllm (a length's documents batched)
    dtype: Literal["float32", "bfloat16"] = "float32"  # the vLLM readers' weights (bfloat16: much faster with AMX)
    teacher: str = ""  # the self-attention reference (row "teacher"): a Hugging Face folder or a prepared model name

    @field_validator("modes")
    @classmethod
    def _student_modes(cls, modes: list[str]) -> list[str]:
        bad = [m for m in modes if m not in MODES or m == "teacher"]
        if bad:
            raise ValueError(f"modes {bad} are unknown. Fix: use emr and/or one-round (the parent's row comes with "
                             "teacher / --teacher)")
        return modes


# ---------------------------------------------------------------------------------------------------------- LongBench
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


# ------------------------------------------------------------------------------------------------------------ results
def aggregate(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-document records -> one row per (task, mode, length): mean score in percent, its 95% interval, the count."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["task"], r["mode"], r["length"])].append(r)
    rows = []
    for (task, mode, length), group in sorted(groups.items(), key=lambda kv: (kv[0][0], MODES.index(kv[0][1]), kv[0][2])):
        first = group[0]
        low, high = interval95([r["score"] for r in group])
        rows.append({
            "task": task, "mode": mode, "length": length, "window": first["window"],
            "chunk_tokens": first["chunk_tokens"], "metric": first["metric"], "model": first["model"],
            "score": round(100.0 * sum(r["score"] for r in group) / len(group), 2), "n": len(group),
            "ci95": [round(100.0 * low, 1), round(100.0 * high, 1)],
            "seconds_per_document": round(sum(r["seconds"] for r in group) / len(group), 3),
        })
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """One line per (task, length), one column per mode, with each cell `score [95% interval] (n)`."""
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    cells: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        cells[(r["task"], r["length"])][r["mode"]] = r
    windows = sorted({r["window"] for r in rows if r["mode"] != "teacher" and r["window"]})
    lines = [
        "| task | length (tokens) | length / window | " + " | ".join(MODE_TITLES[m] for m in modes) + " |",
        "|---|---:|---:|" + "---:|" * len(modes),
    ]
    for (task, length), by_mode in sorted(cells.items()):
        ratio = f"{length / windows[0]:g}x" if len(windows) == 1 else ""
        values = [_cell(by_mode[m]) if m in by_mode else "" for m in modes]
        lines.append(f"| {task} | {length} | {ratio} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def cost_table(rows: list[dict[str, Any]]) -> str:
    """Seconds per document, one line per (task, length), one column per mode."""
    modes = [m for m in MODES if any(r["mode"] == m for r in rows)]
    cells: dict[tuple, dict[str, float]] = defaultdict(dict)
    for r in rows:
        cells[(r["task"], r["length"])][r["mode"]] = r["seconds_per_document"]
    lines = ["| task | length (tokens) | " + " | ".join(f"{MODE_TITLES[m]} s / doc" for m in modes) + " |",
             "|---|---:|" + "---:|" * len(modes)]
    for (task, length), by_mode in sorted(cells.items()):
        lines.append(f"| {task} | {length} | " + " | ".join(f"{by_mode[m]:.1f}" if m in by_mode else "" for m in modes)
                     + " |")
    return "\n".join(lines) + "\n"


def _cell(row: dict[str, Any]) -> str:
    low, high = row["ci95"]
    return f"{row['score']:.1f} [{low:.1f}, {high:.1f}] ({row['n']})"


def write_results(rows: list[dict[str, Any]], output: Path, header: str) -> None:
    """results.json, results.md and accuracy.png from the rows so far (predictions.jsonl is appended as groups end)."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (output / "results.md").write_text(
        f"{header}\n\nScores in percent, their 95% interval in square brackets (Wilson for right/wrong scores, "
        "bootstrap for graded ones), documents in round brackets; metric per task: "
        + ", ".join(sorted({f"{r['task']}: {r['metric']}" for r in rows})) + ".\n\n" + markdown_table(rows)
        + "\nWall seconds per document (a batched reader's time shared by the documents it read together):\n\n"
        + cost_table(rows)
    )
    plot_accuracy(rows, output / "accuracy.png")


def finished_records(output: Path, model_dir: Path, config: EvalConfig, group_sizes: dict[tuple, int]) -> list[dict]:
    """What an earlier run on `output` already read: the records of every (mode, task, length) group it finished.

    The first run writes evaluation.json (the model and the config); a rerun with another one is refused, because
    its rows would mix two evaluations."""
    setup = {"model": str(Path(model_dir).resolve()), "config": config.to_dict()}
    setup_file, predictions = output / "evaluation.json", output / "predictions.jsonl"
    output.mkdir(parents=True, exist_ok=True)
    if setup_file.exists():
        previous = json.loads(setup_file.read_text())
        if previous != json.loads(json.dumps(setup)):
            changed = sorted(k for k in setup["config"] if previous["config"].get(k) != setup["config"][k])
            raise ValueError(f"{output} holds an evaluation of {previous['model']} with other settings "
                             f"({', '.join(changed) or 'model'}). Fix: rerun with the same ones to resume, or use a new --output")
    else:
        setup_file.write_text(json.dumps(setup, indent=2) + "\n")
        predictions.unlink(missing_ok=True)
    records = []
    if predictions.exists():
        for line in predictions.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash; its group is read again
                pass
    counts: dict[tuple, int] = defaultdict(int)
    for r in records:
        counts[(r["mode"], r["task"], r["length"])] += 1
    finished = [r for r in records if counts[(r["mode"], r["task"], r["length"])] == group_sizes.get((r["task"], r["length"]))]
    # Unfinished groups and a torn last line are dropped before anything is appended.
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in finished)
    write_atomic(predictions, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return finished


def append_records(output: Path, records: list[dict]) -> None:
    with (output / "predictions.jsonl").open("a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def plot_accuracy(rows: list[dict[str, Any]], path: Path) -> None:
    """Score against length, one panel per task, one line per mode; the student's window as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for mode in MODES:
            points = sorted((r["length"], r["score"]) for r in rows if r["task"] == task and r["mode"] == mode)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=MODE_TITLES[mode])
        windows = {r["window"] for r in rows if r["task"] == task and r["mode"] != "teacher" and r["window"]}
        for w in windows:
            ax.axvline(w, color="grey", linestyle="--", linewidth=1, label=f"student window ({w})")
        ax.set_xscale("log", base=2)
        ax.set_ylim(-5, 105)
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel("score (%)")
        ax.set_title(task)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -------------------------------------------------------------------------------------------------------------- tasks
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


# ------------------------------------------------------------------------------------------------------------ reading
@dataclass
class Reader:
    """A loaded model, how it reads, and what the rows say about it."""

    name: str
    model: Any
    tokenizer: Any
    window: int | None  # None: no window (linear-attention state, or a self-attention teacher)
    knows_stream: bool  # the tokenizer has the stream markers: it reads in the EMR format


def load_reader(folder: Path) -> Reader:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json. Fix: point at a Hugging Face model folder (RUN_DIR/export)")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    vocab = tokenizer.get_vocab()
    return Reader(
        name=folder.name if folder.name not in ("export", "") else folder.parent.name, model=model,
        tokenizer=tokenizer, window=window_of(model.config),
        knows_stream=all(t in vocab for t in SPECIAL_TOKENS),
    )


def resolve_chunk_tokens(reader: Reader, chunk_tokens: int) -> int:
    """The EMR chunk size: asked for, or half the window; checked against the window."""
    if not chunk_tokens:
        if reader.window is None:
            raise ValueError(f"{reader.name} has no window to derive a chunk size from. Fix: pass --chunk-tokens N")
        chunk_tokens = reader.window // 2
    if reader.window is not None:
        check_chunk_size(chunk_tokens, reader.window)
    return chunk_tokens


def read_item(reader: Reader, item: EvalItem, mode: str, chunk_tokens: int, counter, config: EvalConfig,
              batched: tuple[Any, float] | None = None) -> dict:
    """Read one document in one mode; the per-document record (prediction, score, cost).

    `batched`: what `read_with_vllm` read for this document (a ReadingResult, or the teacher's text) and its share of
    the batch's seconds, instead of reading here."""
    question = question_text(item.doc)
    start = time.perf_counter()
    if batched is not None:
        result, seconds = batched
        start -= seconds
    extra: dict[str, Any] = {}
    if mode == "emr":
        chunks = chunk_texts(item.doc.context, chunk_document(item.doc.context, chunk_tokens, counter))
        if batched is None:
            result = smooth_read(reader.model, reader.tokenizer, question, chunks, config.max_summary_tokens,
                                 config.max_new_tokens)
        prediction = result.answer
        extra = {"chunks": len(chunks), "chunks_read": result.chunks_read, "stopped_early": result.stopped_early,
                 "parsed_rounds": result.parsed_rounds, "tokens_generated": result.tokens_generated}
    elif mode == "one-round":
        if batched is None:
            result = one_round_read(reader.model, reader.tokenizer, question, item.doc.context,
                                    config.max_summary_tokens, config.max_new_tokens)
        prediction = result.answer
        extra = {"tokens_generated": result.tokens_generated}
    else:
        prompt, kept = parent_prompt(reader, question, item.doc.context, config.max_new_tokens)
        prediction = result if batched is not None else chat_read(reader, prompt, config.max_new_tokens)
        extra = {"context_tokens_kept": kept}
    return {
        "task": item.task, "mode": mode, "length": item.length, "model": reader.name,
        "window": reader.window, "chunk_tokens": chunk_tokens if mode == "emr" else None, "metric": item.metric,
        "document_id": item.doc.id, "prediction": prediction, "references": list(item.doc.answers),
        "score": score_item(item, prediction), "seconds": round(time.perf_counter() - start, 3), **extra,
    }


def parent_prompt(reader: Reader, question: str, context: str, max_new_tokens: int) -> tuple[str, int]:
    """A self-attention model's one-round prompt (its chat template), and how many context tokens it keeps.

    A context longer than the model's position limit leaves room for the prompt and the answer by dropping its
    middle (LongBench's rule: the start and the end of a document are kept), so a parent is measured reading what
    it can hold rather than failing past its context."""
    def prompt(text: str) -> str:
        return chat_prompt(reader.tokenizer, [{
            "role": "user",
            "content": f"{PARENT_INSTRUCTION}\n\nThe following are given passages.\n{text}\n\n{PARENT_INSTRUCTION}\n\n"
                       f"Question: {question}\nAnswer:",
        }])

    ids = reader.tokenizer(context, add_special_tokens=False)["input_ids"]
    limit = getattr(reader.model.config, "max_position_embeddings", None)
    if limit is not None:
        overhead = len(reader.tokenizer(prompt(""), add_special_tokens=False)["input_ids"])
        room = limit - overhead - max_new_tokens - 8  # 8: slack for tokens merging across the cut
        if len(ids) > room:
            head = room // 2
            context = reader.tokenizer.decode(ids[:head]) + "\n\n" + reader.tokenizer.decode(ids[len(ids) - (room - head):])
            ids = ids[:room]
    return prompt(context), len(ids)


def chat_read(reader: Reader, prompt: str, max_new_tokens: int) -> str:
    """Greedy decoding of `prompt` by a model that does not know the stream format."""
    ids = reader.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = reader.model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=reader.tokenizer.pad_token_id or reader.tokenizer.eos_token_id)
    return reader.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def read_with_vllm(llm, reader: Reader, items: list[EvalItem], mode: str, chunk_tokens: int, counter,
                   config: EvalConfig) -> list[tuple[Any, float]]:
    """Read `items` in `mode` all at once on a vLLM engine: EMR and one-round streams with
    students.reading_vllm.smooth_read_batch, the parent's prompts with one generate call; (result, seconds per document)."""
    from vllm import SamplingParams

    from students.reading_vllm import smooth_read_batch

    start = time.perf_counter()
    if mode == "teacher":
        prompts = [parent_prompt(reader, question_text(i.doc), i.doc.context, config.max_new_tokens)[0] for i in items]
        params = SamplingParams(temperature=0.0, max_tokens=config.max_new_tokens)
        outputs = llm.generate(prompts, params, use_tqdm=False)
        results: list[Any] = [o.outputs[0].text.strip() for o in outputs]
    else:
        documents = [(question_text(i.doc), chunk_texts(i.doc.context, chunk_document(i.doc.context, chunk_tokens, counter))
                      if mode == "emr" else [i.doc.context]) for i in items]
        results = smooth_read_batch(llm, reader.tokenizer, documents, config.max_summary_tokens, config.max_new_tokens)
    seconds = (time.perf_counter() - start) / max(len(items), 1)
    return [(result, seconds) for result in results]


def vllm_reader_engine(folder: Path, reader: Reader, config: EvalConfig, parent: bool):
    """One engine per model: a student's reads past any parent's context, a parent's stops at its own."""
    from students.reading_vllm import vllm_engine

    limit = {"max_model_len": reader.model.config.max_position_embeddings} if parent else {}
    return vllm_engine(str(folder), dtype=config.dtype, **limit)


# -------------------------------------------------------------------------------------------------------------- the job
def evaluate(model_dir: Path, output: Path, config: EvalConfig) -> list[dict]:
    """Read every task's documents in every mode; write results.json, results.md, accuracy.png, predictions.jsonl.

    With the vLLM engine the documents of one (task, length) are read as one batch, so seconds per document are
    per length."""
    student = load_reader(model_dir)
    if not student.knows_stream:
        raise ValueError(f"{model_dir}: its tokenizer lacks the stream markers, so it cannot read in the EMR format. "
                         "Fix: evaluate a student exported by `smooth-reading train`")
    counter = TokenizerCounter(student.tokenizer)
    chunk_tokens = resolve_chunk_tokens(student, config.chunk_tokens)
    items = build_items(config, counter)
    # EMR first, then the parent, then one-round reading: an interrupted run has the rows that matter most.
    jobs = [(student, Path(model_dir), "emr")] if "emr" in config.modes else []
    teacher = None
    if config.teacher:
        if config.teacher in PREPARED_MODELS:
            prepare_smollm2()
        teacher_dir = Path(resolve_model(config.teacher))
        teacher = load_reader(teacher_dir)
        jobs.append((teacher, teacher_dir, "teacher"))
    if "one-round" in config.modes:
        jobs.append((student, Path(model_dir), "one-round"))
    header = (f"# Evaluation of {student.name}\n\nwindow {student.window} tokens, EMR chunks of {chunk_tokens} tokens"
              + (f"; teacher {teacher.name}" if teacher is not None else ""))
    groups: dict[tuple[str, int], list[EvalItem]] = defaultdict(list)
    for item in items:
        groups[(item.task, item.length)].append(item)
    output = Path(output)
    records = finished_records(output, model_dir, config, {key: len(group) for key, group in groups.items()})
    finished = {(r["mode"], r["task"], r["length"]) for r in records}
    engines: dict[Path, Any] = {}
    for reader, folder, mode in jobs:
        todo = [group for (task, length), group in groups.items() if (mode, task, length) not in finished]
        if config.engine == "vllm" and todo and folder not in engines:
            engines = {folder: vllm_reader_engine(folder, reader, config, mode == "teacher")}  # the previous model's engine is let go
        progress = tqdm(total=sum(map(len, todo)), desc=f"{mode} ({reader.name})", unit="doc")
        for group in todo:
            batched = (read_with_vllm(engines[folder], reader, group, mode, chunk_tokens, counter, config)
                       if config.engine == "vllm" else [None] * len(group))
            new = [read_item(reader, item, mode, chunk_tokens, counter, config, done) for item, done in zip(group, batched)]
            append_records(output, new)
            records += new
            write_results(aggregate(records), output, header)
            progress.update(len(group))
        progress.close()
    rows = aggregate(records)
    write_results(rows, output, header)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Options left out keep EvalConfig's defaults, written once there.
    default = EvalConfig()
    parser.add_argument("--model", required=True, type=Path, help="the student: a Hugging Face folder (RUN_DIR/export)")
    parser.add_argument("--output", required=True, type=Path, help="folder for results.json, results.md, accuracy.png")
    parser.add_argument("--tasks", help="comma-separated: niah, hotpotqa, quality, longbench:PATH[:f1|rouge_l|accuracy] "
                                        f"(default: {','.join(default.tasks)})")
    parser.add_argument("--lengths", type=int, nargs="+", help=f"NIAH / long-HotpotQA lengths in tokens (default: "
                                                               f"{' '.join(map(str, default.lengths))})")
    parser.add_argument("--depths", type=float, nargs="+", help="NIAH needle depths in [0, 1]")
    parser.add_argument("--n", type=int, help="NIAH documents per (length, depth); long-HotpotQA documents per length")
    parser.add_argument("--max-documents", type=int, help="QuALITY / LongBench: at most this many questions per task")
    parser.add_argument("--chunk-tokens", type=int, help="EMR chunk size (default: half the window)")
    parser.add_argument("--modes", help=f"comma-separated: emr, one-round (default: {','.join(default.modes)})")
    parser.add_argument("--teacher", help="a self-attention Hugging Face causal LM folder, or 'smollm2': the one-round "
                                          "reference row (a context past its position limit loses its middle)")
    parser.add_argument("--max-summary-tokens", type=int,
                        help=f"cap of one summary, EMR rounds (default: {default.max_summary_tokens})")
    parser.add_argument("--max-answer-tokens", type=int, help=f"cap of the answer (default: {default.max_new_tokens})")
    parser.add_argument("--seed", type=int,
                        help=f"NIAH / long-HotpotQA seed (default: {default.seed}; the demo trains on seed 0)")
    parser.add_argument("--value-digits", type=int,
                        help=f"NIAH: digits of each needle's value (default: {default.value_digits})")
    parser.add_argument("--engine", choices=("transformers", "vllm"),
                        help="EMR reader: transformers (one document at a time) or vllm (all documents batched, "
                             f"prefix caching; sliding-window students) (default: {default.engine})")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), help=f"vLLM readers' weights (default: {default.dtype})")


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    given = {
        "tasks": [t for t in args.tasks.split(",") if t] if args.tasks else None,
        "modes": [m for m in args.modes.split(",") if m] if args.modes else None,
        "lengths": args.lengths, "depths": args.depths, "n_per_cell": args.n, "n_per_length": args.n,
        "max_documents": args.max_documents, "chunk_tokens": args.chunk_tokens, "seed": args.seed,
        "max_summary_tokens": args.max_summary_tokens, "max_new_tokens": args.max_answer_tokens,
        "value_digits": args.value_digits, "engine": args.engine, "teacher": args.teacher, "dtype": args.dtype,
    }
    return EvalConfig.from_values({name: value for name, value in given.items() if value is not None}, "evaluate")


def run(args: argparse.Namespace) -> int:
    rows = evaluate(args.model, args.output, config_from_args(args))
    print((Path(args.output) / "results.md").read_text())
    print(f"wrote {len(rows)} rows to {Path(args.output) / 'results.json'}")
    return 0
