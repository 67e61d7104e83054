"""The generate job with the rule teacher (fast): the corpus it writes, bad input, faults, resume, the config.

Faults (a teacher actor that dies) are injected from outside the job by tests/faults.py.

One local Ray cluster (2 CPUs) serves the module; `generate` joins it instead of starting its own.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from jobs.generate import GenerateError, generate
from jobs.generate_config import EngineConfig, config_from_dict, load_config
from jobs.teacher_pool import documents_in_flight
from pipeline.corpus import read_corpus
from pipeline.rejects import read_rejects
from pipeline.trajectory import Trajectory
from pipeline.verify import CHECKS
from tests.faults import runtime_env
from tests.generate_runs import NIAH, corpus_bytes, rules_config


def run_config(values: dict, output: Path) -> dict:
    return generate(config_from_dict(values), output)


def records(output: Path) -> list[Trajectory]:
    return list(read_corpus(output))


def hashes(output: Path) -> list[str]:
    return sorted(t.content_hash() for t in records(output))


def rejects_by_id(output: Path) -> dict[str, list]:
    by_id: dict[str, list] = {}
    for r in read_rejects(output / "rejects.jsonl"):
        by_id.setdefault(r.document_id or f"record {r.record}", []).append(r)
    return by_id


def start_ray(**faults) -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env=runtime_env(**faults) if faults else None)


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    start_ray()
    yield
    ray.shutdown()


@contextmanager
def faulty_ray(**faults):
    """The module's cluster restarted with teacher actors that fail as `faults` say (tests/faults.py)."""
    import ray

    ray.shutdown()
    start_ray(**faults)
    try:
        yield
    finally:
        ray.shutdown()
        start_ray()


@pytest.fixture(scope="module")
def reference_run(ray_cluster, tmp_path_factory) -> Path:
    """An uninterrupted, fault-free run of rules_config(): what every other run is compared with."""
    output = tmp_path_factory.mktemp("reference")
    run_config(rules_config(), output)
    return output


def test_rule_run_writes_a_corpus_that_datasets_reads(reference_run):
    import datasets

    output = reference_run
    trajectories = records(output)
    assert len(trajectories) == 18 and len({t.document_id for t in trajectories}) == 18
    assert Counter(t.source for t in trajectories) == {"niah": 12, "hotpotqa": 6}
    for t in trajectories:
        assert t.answer_passed and t.answer in t.references
        assert [r.action for r in t.rounds][-1] == "STOP" and len(t.chunk_ends) >= len(t.rounds)
        assert t.teacher["name"] == "rules"
    assert any(len(t.rounds) > 1 for t in trajectories)

    manifest = json.loads((output / "manifest.json").read_text())
    saved = load_config(output / "config.yaml")
    assert manifest["config"]["config_hash"] == saved.content_hash() == config_from_dict(rules_config()).content_hash()
    assert manifest["counts"]["trajectories"] == 18 and manifest["counts"]["shards"] == 4  # shard_size 5
    statistics = json.loads((output / "statistics.json").read_text())
    assert statistics["documents"] == 18 and statistics["acceptance_rate"] == 1.0
    # Every stage's statistics, next to the corpus: what went in and out of each, as a chain.
    stages = {s["name"]: s for s in json.loads((output / "stages.json").read_text())["rules"]}
    assert list(stages) == ["read", "validate", "plan", "teach", "filter"]
    assert stages["read"]["items_in"] == len(rules_config()["parts"][0]["sources"])
    assert stages["read"]["items_out"] == stages["validate"]["items_in"] == stages["validate"]["items_out"] == 18
    assert stages["plan"]["items_in"] == stages["teach"]["items_in"] == stages["filter"]["items_out"] == 18
    assert all(s["rejects_made"] == 0 and s["seconds"] >= 0 for s in stages.values())

    shards = sorted(str(p) for p in (output / "data").glob("train-*.parquet"))
    dataset = datasets.load_dataset("parquet", data_files=shards, split="train")
    assert dataset.num_rows == 18
    assert sorted(dataset["content_hash"]) == hashes(output)
    row = dataset[0]
    assert Trajectory.from_record(row).content_hash() == row["content_hash"]


def test_rerunning_a_finished_output_adds_nothing(reference_run, tmp_path):
    before = hashes(reference_run)
    shard_bytes = {p.name: p.read_bytes() for p in (reference_run / "data").glob("*.parquet")}
    summary = run_config(rules_config(), reference_run)
    part = summary["parts"]["rules"]
    assert {k: part[k] for k in ("documents", "accepted", "rejected")} == {"documents": 0, "accepted": 0, "rejected": 0}
    assert [(s["name"], s["items_out"]) for s in part["stages"]][:2] == [("read", 18), ("validate", 18)]
    assert all(s["items_in"] == 0 for s in part["stages"][2:])  # nothing was planned, taught or filtered again
    assert hashes(reference_run) == before
    assert {p.name: p.read_bytes() for p in (reference_run / "data").glob("*.parquet")} == shard_bytes


def test_the_same_config_gives_the_same_bytes_however_the_work_interleaves(reference_run, tmp_path):
    # Two actors with 8 documents each in flight finish documents interleaved, not in the order they were read.
    output = tmp_path / "interleaved"
    run_config(rules_config(engine={"max_in_flight": 8, "num_actors": 2, "progress_interval_s": 1}), output)
    assert corpus_bytes(output) == corpus_bytes(reference_run)
    assert len(corpus_bytes(output)) == 2 + 4  # manifest, statistics, 4 shards


def test_resume_with_another_config_is_refused_naming_what_changed(reference_run):
    changed = rules_config(seed=1)
    with pytest.raises(GenerateError, match=r"another config \(seed: saved 0, now 1\).*Fix: rerun with the saved"):
        run_config(changed, reference_run)
    # Engine settings do not change the records: a resume may tune them.
    tuned = rules_config(engine={"max_in_flight": 1, "num_cpus": 1})
    assert config_from_dict(tuned).content_hash() == config_from_dict(rules_config()).content_hash()


def test_bad_input_documents_become_rejects_and_the_job_completes(ray_cluster, tmp_path):
    needle = "Paris is the capital of France."
    context = f"Lyon is large.\n\n{needle}\n\nNice is sunny."
    good = {"id": "good", "question": "Which city is the capital of France?", "answers": ["Paris"],
            "context": context, "evidence": [{"start": context.index(needle),
                                              "end": context.index(needle) + len(needle), "text": needle}]}
    lines = [
        json.dumps(good),
        json.dumps({**good, "id": "empty-context", "context": "  ", "evidence": []}),
        json.dumps({"id": "no-question", "context": "text", "answers": ["x"]}),
        json.dumps({**good, "question": "Which city is it? " * 40, "id": "long-question"}),
        json.dumps({**good, "id": "no-evidence", "evidence": [], "answers": ["Marseille"]}),  # answer nowhere
        json.dumps({**good, "id": "evidence-from-answer", "evidence": []}),  # "Paris" occurs: its sentence is evidence
        json.dumps(good),  # the same id again
    ]
    data = tmp_path / "docs.jsonl"
    data.write_bytes(("\n".join(lines[:3]) + "\n").encode() + b'{"id": "latin1", "question": "caf\xe9"}\n'
                     + ("\n".join(lines[3:]) + "\n").encode())
    output = tmp_path / "out"
    config = rules_config(sources=[{"kind": "file", "path": str(data)}])
    config["parts"][0]["chunking"] = {"low": 24, "high": 32}
    run_config(config, output)

    assert sorted(t.document_id for t in records(output)) == ["evidence-from-answer", "good"]
    derived = next(t for t in records(output) if t.document_id == "evidence-from-answer")
    assert derived.metadata["evidence_from_answer"]["answer"] == "Paris"
    rejects = rejects_by_id(output)
    assert set(rejects) == {"empty-context", "no-question", "record 4", "long-question", "no-evidence", "good"}
    expected = {  # id -> (stage, field, words of the reason)
        "empty-context": ("read", "context", "empty"),
        "no-question": ("read", "question", "missing"),
        "record 4": ("read", "<line>", "not UTF-8"),
        "long-question": ("plan", "question", "more than its budget"),
        "no-evidence": ("teacher", "document", "evidence"),
        "good": ("read", "id", "duplicates"),
    }
    for doc_id, (stage, field_name, words) in expected.items():
        (reject,) = rejects[doc_id]
        assert (reject.stage, reject.field) == (stage, field_name), reject
        assert words in reject.reason and reject.fix, reject


def test_a_crashing_engine_actor_is_restarted_and_nothing_is_lost(reference_run, tmp_path):
    output = tmp_path / "crash"
    with faulty_ray(crash_after_documents=5):
        run_config(rules_config(engine={"max_in_flight": 4, "max_restarts": 2}), output)
    assert corpus_bytes(output) == corpus_bytes(reference_run)


def test_a_document_that_keeps_crashing_its_engine_is_rejected_alone(reference_run, tmp_path):
    poison = "niah-s0-L600-d0.5-1"
    output = tmp_path / "poison"
    with faulty_ray(crash_on_document=poison):
        summary = run_config(rules_config(engine={"max_in_flight": 4, "max_restarts": 6, "max_attempts": 2}), output)
    assert summary["parts"]["rules"]["rejected"] == 1
    (reject,) = read_rejects(output / "rejects.jsonl")
    assert (reject.document_id, reject.stage, reject.field) == (poison, "teacher", "teacher")
    assert re.search(r"failed \d time\(s\); last: the teacher actor died", reject.reason), reject.reason
    # Documents that were in flight beside it were retried and written, none lost.
    expected = [t.content_hash() for t in records(reference_run) if t.document_id != poison]
    assert hashes(output) == sorted(expected)


def test_an_engine_that_dies_past_its_restarts_stops_the_job_and_a_rerun_finishes(reference_run, tmp_path):
    output = tmp_path / "dead"
    poison = "niah-s0-L300-d0-0"
    with faulty_ray(crash_on_document=poison), pytest.raises(GenerateError, match="died more than engine.max_restarts"):
        run_config(rules_config(engine={"max_restarts": 0, "max_in_flight": 2}), output)
    # The fault gone, the same command resumes the corpus to the uninterrupted run's bytes.
    run_config(rules_config(), output)
    assert corpus_bytes(output) == corpus_bytes(reference_run)


def test_malformed_teacher_output_is_rejected_with_the_output_quoted(ray_cluster, tmp_path, tiny_llama_dir):
    # The tiny Llama has random weights: it never writes the summary format, so every round is malformed.
    output = tmp_path / "malformed"
    teacher = {"backend": "transformers", "model": str(tiny_llama_dir), "max_round_tokens": 8, "max_retries": 1,
               "max_batch_size": 4}
    config = rules_config(sources=[{**NIAH, "lengths": [300], "depths": [0.5], "n_per_cell": 3}])
    config["parts"][0].update(teacher=teacher, name="tiny")
    summary = run_config(config, output)
    part = summary["parts"]["tiny"]
    assert {k: part[k] for k in ("documents", "accepted", "rejected")} == {"documents": 3, "accepted": 0, "rejected": 3}
    teach = next(s for s in part["stages"] if s["name"] == "teach")
    assert (teach["items_in"], teach["items_out"], teach["rejects_made"]) == (3, 3, 3)
    assert records(output) == []
    for reject in read_rejects(output / "rejects.jsonl"):
        assert (reject.stage, reject.field) == ("teacher", "round 0")
        assert "malformed output after 2 attempt(s)" in reject.reason and "output: '" in reject.reason


def test_the_embedded_default_runs_the_rule_part_and_says_the_model_is_missing(
    ray_cluster, tmp_path, monkeypatch, caplog
):
    from jobs import generate as job

    monkeypatch.setenv("SMOOTH_READING_CACHE", str(tmp_path / "empty-cache"))
    output = tmp_path / "default"
    args = argparse.Namespace(output=str(output), config=None, prepare_teacher=False, address=None)
    with caplog.at_level("WARNING", logger="smooth_reading.generate"):
        assert job.run(args) == 0
    assert "prepare it with `smooth-reading prepare-teacher`" in caplog.text and "skipping this part" in caplog.text
    default = load_config(job.DEFAULT_CONFIG)
    assert load_config(output / "config.yaml") == default
    statistics = json.loads((output / "statistics.json").read_text())
    assert statistics["sources"] == {"hotpotqa": 100, "niah": 40} and statistics["documents"] == 140


def test_the_progress_line_says_what_a_person_watching_ray_job_logs_needs(monkeypatch):
    from jobs import teacher_pool as job

    clock = iter([100.0, 110.0])
    monkeypatch.setattr(job.time, "monotonic", lambda: next(clock))
    progress = job.Progress("rules", total=40, interval_s=30)
    progress.done, progress.rejected, progress.in_flight, progress.rounds = 6, 2, 4, 25
    progress.stream_tokens = 5000
    assert progress.line() == ("[rules] 6 done / 4 in flight / 2 rejected of 40 (75% accepted) | 2.5 rounds/s | "
                               "written 500 tokens/s | ETA 40s")


def test_config_errors_name_the_setting_and_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"config.parts\[0\]: unknown setting\(s\) \['max_round'\]"):
        config_from_dict({"parts": [{"name": "a", "teacher": {"backend": "rules"}, "sources": [NIAH],
                                     "max_round": 3}]})
    with pytest.raises(ValueError, match="source kind 'web' is unknown"):
        config_from_dict(rules_config(sources=[{"kind": "web"}]))
    with pytest.raises(ValueError, match=r"filter.checks: unknown check\(s\) \['vibes'\]. Fix: use only"):
        config_from_dict(rules_config(filter={"checks": ["answer", "vibes"]}))
    # The default checks leave the config hash of older corpora as it was; fewer checks change it.
    assert config_from_dict(rules_config()).content_hash() == config_from_dict(
        rules_config(filter={"checks": list(CHECKS)})).content_hash()
    assert config_from_dict(rules_config()).content_hash() != config_from_dict(
        rules_config(filter={"checks": ["answer"]})).content_hash()
    with pytest.raises(GenerateError, match="model folder /nonexistent/model does not exist"):
        config = rules_config()
        config["parts"][0]["teacher"] = {"backend": "vllm", "model": "/nonexistent/model"}
        run_config(config, tmp_path / "out")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(rules_config()))
    assert load_config(path) == config_from_dict(rules_config())


def test_a_corpus_saved_by_an_older_version_with_its_fault_block_still_resumes():
    # Older versions wrote test-only fault settings, all off, into every corpus's config.yaml.
    old = rules_config(fault={"crash_after_documents": 0, "crash_on_document": "", "delay_per_document_s": 0.0})
    assert config_from_dict(old).content_hash() == config_from_dict(rules_config()).content_hash()
    with pytest.raises(ValueError, match="'fault' settings are no longer part of the job. Fix: remove"):
        config_from_dict(rules_config(fault={"crash_after_documents": 5}))


def test_an_actor_reads_twice_as_many_documents_as_its_engine_has_slots_unless_told():
    vllm = {"backend": "vllm", "model": "m"}
    assert documents_in_flight(vllm, EngineConfig()) == 128  # vLLM's max_num_seqs defaults to 64
    assert documents_in_flight({**vllm, "max_num_seqs": 24}, EngineConfig()) == 48
    assert documents_in_flight({**vllm, "max_num_seqs": 24}, EngineConfig(max_in_flight=5)) == 5
    assert documents_in_flight({"backend": "rules"}, EngineConfig()) == 16
