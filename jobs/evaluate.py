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
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any, get_args

from tqdm import tqdm

from jobs.eval_readers import load_reader, read_item, read_with_vllm, resolve_chunk_tokens, vllm_reader_engine
from jobs.eval_report import aggregate, write_results
from jobs.eval_tasks import EvalConfig, EvalItem, ReaderDtype, ReaderEngine, build_items
from jobs.teacher_models import PREPARED_MODELS, prepare_smollm2, resolve_model
from pipeline.chunking import TokenizerCounter, summary_room_warning
from pipeline.config import differences
from pipeline.files import write_atomic
from students.reading_vllm import close_engine


def finished_records(output: Path, model_dir: Path, config: EvalConfig, group_sizes: dict[tuple, int]) -> list[dict]:
    """What an earlier run on `output` already read: the records of every (mode, task, length) group it finished.

    The first run writes evaluation.json (the model and the config); a rerun with another one is refused, because
    its rows would mix two evaluations."""
    setup = {"model": str(Path(model_dir).resolve()), "config": config.to_dict()}
    setup_file, predictions = output / "evaluation.json", output / "predictions.jsonl"
    output.mkdir(parents=True, exist_ok=True)
    if setup_file.exists():
        previous = json.loads(setup_file.read_text())
        changed = differences(EvalConfig.from_values(previous["config"], str(setup_file)), config)
        if previous["model"] != setup["model"]:
            changed.append(f"model: saved {previous['model']}, now {setup['model']}")
        if changed:
            raise ValueError(f"{output} holds an evaluation with other settings ({'; '.join(changed)}). "
                             "Fix: rerun with the same ones to resume, or use a new --output")
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
    if student.window is not None and "emr" in config.modes:
        room = summary_room_warning(chunk_tokens, config.max_summary_tokens, student.window)
        if room:
            warnings.warn(f"{model_dir}: {room}", stacklevel=2)
    items = build_items(config, counter)
    jobs = [(student, Path(model_dir), mode) for mode in config.modes]
    teacher = None
    if config.teacher:
        if config.teacher in PREPARED_MODELS:
            prepare_smollm2()
        teacher_dir = Path(resolve_model(config.teacher))
        teacher = load_reader(teacher_dir)
        jobs.insert(0, (teacher, teacher_dir, "teacher"))
    header = (f"# Evaluation of {student.name}\n\nwindow {student.window} tokens, EMR chunks of {chunk_tokens} tokens"
              + (f"; teacher {teacher.name}" if teacher is not None else ""))
    groups: dict[tuple[str, int], list[EvalItem]] = defaultdict(list)
    for item in items:
        groups[(item.task, item.length)].append(item)
    output = Path(output)
    records = finished_records(output, model_dir, config, {key: len(group) for key, group in groups.items()})
    finished = {(r["mode"], r["task"], r["length"]) for r in records}
    # Tasks in the order the config lists them (the first is the one that matters most), each from its shortest
    # documents, every mode at a length before the next: an interrupted run has whole comparisons up to the length
    # it reached. One engine per model, kept for the run.
    task_order = {task: rank for rank, task in enumerate(dict.fromkeys(item.task for item in items))}
    todo = [(task, length, job) for task, length in sorted(groups, key=lambda key: (task_order[key[0]], key[1]))
            for job in jobs if (job[2], task, length) not in finished]
    engines: dict[Path, Any] = {}
    progress = tqdm(total=sum(len(groups[(task, length)]) for task, length, _ in todo), unit="doc")
    try:
        for task, length, (reader, folder, mode) in todo:
            progress.set_description(f"{task} {length} {mode}")
            group = groups[(task, length)]
            if config.engine == "vllm":
                if folder not in engines:
                    engines[folder] = vllm_reader_engine(folder, reader, config, mode == "teacher")
                batched = read_with_vllm(engines[folder], reader, group, mode, chunk_tokens, counter, config)
            else:
                batched = [None] * len(group)
            new = [read_item(reader, item, mode, chunk_tokens, counter, config, done)
                   for item, done in zip(group, batched)]
            append_records(output, new)
            records += new
            write_results(aggregate(records), output, header)
            progress.update(len(group))
    finally:
        for engine in engines.values():
            close_engine(engine)
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
    parser.add_argument("--engine", choices=get_args(ReaderEngine),
                        help="EMR reader: transformers (one document at a time) or vllm (all documents batched, "
                             f"prefix caching; sliding-window students) (default: {default.engine})")
    parser.add_argument("--dtype", choices=get_args(ReaderDtype),
                        help=f"vLLM readers' weights; auto: bfloat16 where the hardware has it natively (default: {default.dtype})")
    parser.add_argument("--kv-cache-gb", type=float,
                        help=f"each vLLM reader's KV cache in GiB (default: {default.kv_cache_gb})")


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    given = {
        "tasks": [t for t in args.tasks.split(",") if t] if args.tasks else None,
        "modes": [m for m in args.modes.split(",") if m] if args.modes else None,
        "lengths": args.lengths, "depths": args.depths, "n_per_cell": args.n, "n_per_length": args.n,
        "max_documents": args.max_documents, "chunk_tokens": args.chunk_tokens, "seed": args.seed,
        "max_summary_tokens": args.max_summary_tokens, "max_new_tokens": args.max_answer_tokens,
        "value_digits": args.value_digits, "engine": args.engine, "teacher": args.teacher, "dtype": args.dtype,
        "kv_cache_gb": args.kv_cache_gb,
    }
    return EvalConfig.from_values({name: value for name, value in given.items() if value is not None}, "evaluate")


def run(args: argparse.Namespace) -> int:
    rows = evaluate(args.model, args.output, config_from_args(args))
    print((Path(args.output) / "results.md").read_text())
    print(f"wrote {len(rows)} rows to {Path(args.output) / 'results.json'}")
    return 0
