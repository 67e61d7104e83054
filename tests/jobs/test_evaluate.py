"""Evaluation: task items, LongBench scoring, both reading modes on a real student, and the report files."""

from __future__ import annotations

import json

import psutil
import pytest

from jobs.cli import main
from jobs.eval_readers import load_reader, parent_prompt
from jobs.eval_report import aggregate, markdown_table
from jobs.eval_tasks import EvalConfig, EvalItem, build_items, length_bucket, longbench_items, score_item
from jobs.evaluate import evaluate
from pipeline.chunking import WordEstimate
from pipeline.documents import Document
from pipeline.longbench import classification_score, parse_longbench_spec

WINDOW = 64  # the exported_student fixture's window


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def longbench_files(tmp_path):
    context = "Paris is the capital of France. " * 20
    qa = write_jsonl(tmp_path / "hotpotqa.jsonl", [
        {"input": "What is the capital of France?", "context": context, "answers": ["Paris", "the city of Paris"],
         "all_classes": None, "length": 120, "_id": "q1"},
    ])
    summary = write_jsonl(tmp_path / "gov_report.jsonl", [
        {"input": "", "context": context, "answers": ["Paris is the capital."], "all_classes": None, "length": 120},
    ])
    classes = write_jsonl(tmp_path / "trec.jsonl", [
        {"input": "What city is it?", "context": context, "answers": ["Location"],
         "all_classes": ["Location", "Human being", "Location city"], "length": 120},
    ])
    return qa, summary, classes


def test_longbench_metric_follows_the_task(longbench_files):
    qa, summary, classes = longbench_files
    count = WordEstimate().count
    assert [i.metric for i in longbench_items(f"longbench:{qa}", 0, count)] == ["f1"]
    assert [i.metric for i in longbench_items(f"longbench:{summary}", 0, count)] == ["rouge_l"]
    trec = longbench_items(f"longbench:{classes}", 0, count)
    assert trec[0].metric == "accuracy" and trec[0].first_line_only
    assert trec[0].all_classes == ("Location", "Human being", "Location city")
    assert [i.metric for i in longbench_items(f"longbench:{summary}:f1", 0, count)] == ["f1"]  # named metric wins
    assert parse_longbench_spec(f"longbench:{qa}:rouge_l") == (qa, "rouge_l")


def test_longbench_scores_as_longbench_does(longbench_files):
    qa, _, classes = longbench_files
    count = WordEstimate().count
    item = longbench_items(f"longbench:{qa}", 0, count)[0]
    assert score_item(item, "Paris") == 1.0  # the best reference counts
    assert score_item(item, "it is Paris") == pytest.approx(0.5)  # token F1: precision 1/3, recall 1
    trec = longbench_items(f"longbench:{classes}", 0, count)[0]
    assert score_item(trec, "Location\nHuman being") == 1.0  # few-shot tasks: the first line only
    assert classification_score("Location or Human being", "Location", trec.all_classes) == 0.5
    # A class that contains the reference does not dilute it (LongBench drops it from the named list).
    assert classification_score("Location city", "Location city", trec.all_classes) == 1.0


def test_longbench_line_without_a_field_names_line_and_field(tmp_path):
    bad = write_jsonl(tmp_path / "qasper.jsonl", [{"input": "q", "answers": ["a"]}])
    with pytest.raises(ValueError, match=r"qasper.jsonl:1: field 'context' is missing"):
        longbench_items(f"longbench:{bad}", 0, WordEstimate().count)


def test_chinese_longbench_task_is_refused_unless_a_metric_is_named(tmp_path):
    zh = write_jsonl(tmp_path / "multifieldqa_zh.jsonl", [{"input": "q", "context": "c", "answers": ["a"]}])
    with pytest.raises(ValueError, match="Chinese"):
        longbench_items(f"longbench:{zh}", 0, WordEstimate().count)


def test_niah_answers_are_scored_by_the_pipeline_metric():
    doc = Document(id="d", question="What is the special magic number for x?", context="...", answers=("4821937",))
    item = EvalItem("niah", 1024, doc)
    assert score_item(item, "4821937") == 1.0
    assert score_item(item, "4821938") == 0.0


def test_niah_items_and_the_generate_source_take_the_needle_value_digits():
    from jobs.generate import read_source
    from jobs.generate_config import SourceConfig

    config = EvalConfig(lengths=[300], depths=[0.0, 1.0], n_per_cell=2, value_digits=4)
    items = build_items(config, WordEstimate())
    assert len(items) == 4 and all(len(i.doc.answers[0]) == 4 for i in items)
    assert all(len(i.doc.answers[0]) == 7 for i in build_items(EvalConfig(lengths=[300], depths=[0.5]), WordEstimate()))
    source = SourceConfig(kind="niah", lengths=[300], depths=[0.5], n_per_cell=3, value_digits=3)
    assert [len(d.answers[0]) for d in read_source(source, 0, WordEstimate())] == [3, 3, 3]
    moved = SourceConfig(kind="niah", lengths=[300], depths=[0.5], n_per_cell=3, value_digits=3, random_start=True)
    assert [d.context for d in read_source(moved, 0, WordEstimate())] != [
        d.context for d in read_source(source, 0, WordEstimate())]


def test_aggregate_gives_percent_per_task_mode_length():
    base = {"task": "niah", "window": 64, "chunk_tokens": 32, "metric": "answer", "model": "m", "seconds": 1.0}
    records = [{**base, "mode": "emr", "length": 256, "score": s} for s in (1.0, 1.0, 0.0, 1.0)]
    records += [{**base, "mode": "one-round", "length": 256, "score": 0.0}]
    rows = aggregate(records)
    assert [(r["mode"], r["score"], r["n"]) for r in rows] == [("emr", 75.0, 4), ("one-round", 0.0, 1)]
    # Wilson intervals: 3 of 4 is far from settled, 0 of 1 says almost nothing.
    assert [r["ci95"] for r in rows] == [[30.1, 95.4], [0.0, 79.3]]
    assert "| 75.0 [30.1, 95.4] (4) | 0.0 [0.0, 79.3] (1) |" in markdown_table(rows)
    assert length_bucket(1500) == 2048 and length_bucket(10) == 1024


def test_a_student_row_carries_its_difference_from_the_teacher_paired_by_document():
    base = {"task": "hotpotqa", "length": 2048, "metric": "answer", "model": "m", "seconds": 1.0}
    student = {**base, "mode": "emr", "window": 512, "chunk_tokens": 256}
    teacher = {**base, "mode": "teacher", "window": None, "chunk_tokens": None}
    records = [{**student, "document_id": d, "score": s} for d, s in (("a", 0.5), ("b", 1.0), ("c", 0.25))]
    # The teacher read the same documents in another order, and one the student did not read.
    read_by_teacher = (("c", 0.0), ("z", 1.0), ("a", 0.25), ("b", 0.75))
    records += [{**teacher, "document_id": d, "score": s} for d, s in read_by_teacher]
    rows = {r["mode"]: r for r in aggregate(records)}
    assert rows["emr"]["minus_teacher"] == {"score": 25.0, "n": 3, "ci95": [25.0, 25.0]}  # +0.25 on each of a, b, c
    assert "minus_teacher" not in rows["teacher"]
    table = markdown_table(list(rows.values()))
    assert "EMR - teacher, paired" in table and "| +25.0 [+25.0, +25.0] (3) |" in table


def test_evaluate_reads_in_both_modes_and_writes_the_report(exported_student, longbench_files, tmp_path):
    qa, _, _ = longbench_files
    config = EvalConfig(tasks=["niah", f"longbench:{qa}"], lengths=[128, 256], depths=[0.5], n_per_cell=2,
                        seed=1, max_summary_tokens=6, max_new_tokens=4)
    rows = evaluate(exported_student, tmp_path / "eval", config)

    cells = {(r["task"], r["mode"], r["length"]): r for r in rows}
    assert set(cells) == {(t, m, l) for m in ("emr", "one-round")
                          for t, l in (("niah", 128), ("niah", 256), ("hotpotqa", 1024))}
    assert all(r["n"] == 2 for r in rows if r["task"] == "niah")
    assert all(r["window"] == WINDOW and 0.0 <= r["score"] <= 100.0 for r in rows)
    assert {r["chunk_tokens"] for r in rows if r["mode"] == "emr"} == {WINDOW // 2}

    out = tmp_path / "eval"
    assert json.loads((out / "results.json").read_text()) == rows
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 2 * (2 * 2 + 1)  # modes x documents
    # Read in the order a cut-short run needs: tasks as listed, shortest first, every mode at a length before the next.
    groups = list(dict.fromkeys((p["task"], p["length"], p["mode"]) for p in predictions))
    assert groups == [("niah", 128, "emr"), ("niah", 128, "one-round"), ("niah", 256, "emr"),
                      ("niah", 256, "one-round"), ("hotpotqa", 1024, "emr"), ("hotpotqa", 1024, "one-round")]
    emr = [p for p in predictions if p["mode"] == "emr" and p["task"] == "niah" and p["length"] == 256]
    assert all(p["chunks"] > 1 and p["chunks_read"] >= 1 for p in emr)  # EMR really read chunk by chunk
    table = (out / "results.md").read_text()
    assert "| niah | 256 | 4x |" in table and "EMR (Smooth Reading)" in table
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_niah_counts_an_answer_that_holds_the_value_however_phrased():
    item = build_items(EvalConfig(lengths=[300], depths=[0.5], n_per_cell=1), WordEstimate())[0]
    value = item.doc.answers[0]
    assert score_item(item, f"The special magic number is {value}.") == 1.0
    assert score_item(item, value[:-1]) == 0.0


def test_a_parent_past_its_context_keeps_the_start_and_the_end(tiny_llama_dir):
    reader = load_reader(tiny_llama_dir)
    limit = reader.model.config.max_position_embeddings
    context = " ".join(f"w{i}" for i in range(3 * limit))
    prompt, kept = parent_prompt(reader, "Which word?", context, max_new_tokens=16)
    assert len(reader.tokenizer(prompt, add_special_tokens=False)["input_ids"]) + 16 <= limit
    assert kept < len(reader.tokenizer(context, add_special_tokens=False)["input_ids"])
    assert " w1 w2 " in prompt and f"w{3 * limit - 1}" in prompt and f" w{3 * limit // 2} " not in prompt
    short, kept_all = parent_prompt(reader, "Which word?", "w1 w2 w3", max_new_tokens=16)
    assert "w1 w2 w3" in short and kept_all == len(reader.tokenizer("w1 w2 w3", add_special_tokens=False)["input_ids"])


def test_evaluate_resumes_after_its_last_finished_group_and_refuses_other_settings(exported_student, tmp_path,
                                                                                   monkeypatch):
    import jobs.evaluate

    config = EvalConfig(tasks=["niah"], lengths=[128, 256], depths=[0.5], n_per_cell=1, modes=["emr"],
                        max_summary_tokens=4, max_new_tokens=4)
    out = tmp_path / "eval"
    first = evaluate(exported_student, out, config)
    predictions = out / "predictions.jsonl"
    lines = predictions.read_text().splitlines()
    # Interrupted while writing the 256-token group: its line is cut short.
    predictions.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])

    read = []
    real_read_item = jobs.evaluate.read_item
    monkeypatch.setattr(jobs.evaluate, "read_item", lambda *a, **k: read.append(a[1].length) or real_read_item(*a, **k))
    def scores(rows):
        return [{k: v for k, v in r.items() if k != "seconds_per_document"} for r in rows]

    assert scores(evaluate(exported_student, out, config)) == scores(first)
    assert read == [256]  # the finished 128-token group is not read again
    assert len(predictions.read_text().splitlines()) == 2 and json.loads(predictions.read_text().splitlines()[1])
    with pytest.raises(ValueError, match=r"other settings \(lengths: saved \[128, 256\], now \[128\]\)"):
        evaluate(exported_student, out, config.model_copy(update={"lengths": [128]}))


def test_chunks_above_half_the_window_are_refused(exported_student, tmp_path):
    config = EvalConfig(tasks=["niah"], lengths=[128], depths=[0.5], n_per_cell=1, chunk_tokens=WINDOW // 2 + 1)
    with pytest.raises(ValueError, match="above half the student's window"):
        evaluate(exported_student, tmp_path / "eval", config)


def test_cli_adds_the_teacher_reference_row(exported_student, tiny_llama_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate", "--model", str(exported_student), "--output", str(out), "--tasks", "niah",
                 "--lengths", "128", "--depths", "0.5", "--n", "1", "--teacher", str(tiny_llama_dir),
                 "--max-summary-tokens", "6", "--max-answer-tokens", "4"])
    assert code == 0
    rows = json.loads((out / "results.json").read_text())
    assert [r["mode"] for r in rows] == ["emr", "one-round", "teacher"]
    assert rows[-1]["window"] is None  # the self-attention teacher has no window
    assert "teacher one-round" in capsys.readouterr().out


@pytest.mark.slow
def test_engine_vllm_reads_every_document_batched_with_the_same_answers(exported_student, tmp_path):
    predictions = {}
    for engine in ("transformers", "vllm"):
        out = tmp_path / engine
        assert main(["evaluate", "--model", str(exported_student), "--output", str(out), "--tasks", "niah",
                     "--lengths", "256", "--depths", "0.25", "0.75", "--n", "2", "--modes", "emr", "--engine", engine,
                     "--max-summary-tokens", "6", "--max-answer-tokens", "4"]) == 0
        predictions[engine] = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    fields = ("document_id", "prediction", "chunks", "chunks_read", "stopped_early", "parsed_rounds", "tokens_generated",
              "final_summary")
    assert len(predictions["vllm"]) == 4
    assert [[p[f] for f in fields] for p in predictions["vllm"]] == [
        [p[f] for f in fields] for p in predictions["transformers"]]
    # Its engine is gone once evaluate returns, so evaluations chained in one process do not run beside idle ones.
    engines = [p for p in psutil.Process().children(recursive=True)
               if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and "VLLM" in " ".join(p.cmdline())]
    assert engines == []


def test_vllm_readers_get_the_configured_cache_and_a_parent_its_own_context(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import students.reading_vllm
    from jobs.eval_readers import vllm_reader_engine

    engines = []
    monkeypatch.setattr(students.reading_vllm, "vllm_engine", lambda folder, **kw: engines.append(kw))
    reader = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(max_position_embeddings=8192)))
    config = EvalConfig(kv_cache_gb=3.0, dtype="float32")
    vllm_reader_engine(tmp_path, reader, config, parent=True)
    vllm_reader_engine(tmp_path, reader, config, parent=False)
    assert engines == [{"dtype": "float32", "kv_cache_gb": 3.0, "max_model_len": 8192},
                       {"dtype": "float32", "kv_cache_gb": 3.0}]  # a student reads past any parent's context
