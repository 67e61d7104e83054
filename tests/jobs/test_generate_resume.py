"""A generate run killed with SIGKILL part-way, then rerun, ends with exactly the uninterrupted run's bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from pipeline.corpus import read_corpus
from pipeline.rejects import read_rejects
from tests.faults import job_env
from tests.generate_runs import NIAH, corpus_bytes, rules_config

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def generate_command(config: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", "generate", "--config", str(config), "--output", str(output)]


SLOW = job_env(delay_per_document_s=0.25)  # slow enough to be killed part-way


def run_to_completion(config: Path, output: Path) -> None:
    subprocess.run(generate_command(config, output), cwd=REPO, env=SLOW, check=True, capture_output=True, timeout=300)


def corpus_state(output: Path) -> tuple[Counter, set]:
    records = Counter((t.document_id, t.content_hash()) for t in read_corpus(output))
    rejects = {(r.document_id, r.stage, r.field) for r in read_rejects(output / "rejects.jsonl")}
    return records, rejects


def test_sigkill_part_way_then_rerun_equals_an_uninterrupted_run(tmp_path):
    # 30 documents, one with no evidence (a reject), read slowly enough to be killed part-way.
    values = rules_config(sources=[{**NIAH, "n_per_cell": 5},
                                   {"kind": "file", "path": str(tmp_path / "extra.jsonl")}])
    (tmp_path / "extra.jsonl").write_text(
        '{"id": "no-evidence", "question": "Who?", "context": "Nobody here.", "answers": ["x"]}\n'
    )
    values["shard_size"] = 3
    values["engine"] = {"max_in_flight": 2, "progress_interval_s": 1}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(values))

    interrupted = tmp_path / "interrupted"
    # Its own session, so the kill takes the local Ray cluster it started down with it.
    process = subprocess.Popen(generate_command(config, interrupted), cwd=REPO, env=SLOW, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list((interrupted / "data").glob("train-*.parquet"))) < 2:
            assert process.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "no shard appeared within 120 s"
            time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    partial, _ = corpus_state(interrupted)
    assert 0 < sum(partial.values()) < 30

    run_to_completion(config, interrupted)
    uninterrupted = tmp_path / "uninterrupted"
    run_to_completion(config, uninterrupted)

    resumed_records, resumed_rejects = corpus_state(interrupted)
    expected_records, expected_rejects = corpus_state(uninterrupted)
    assert max(resumed_records.values()) == 1  # no duplicates
    assert resumed_records == expected_records  # no gaps, same content
    assert sum(expected_records.values()) == 30
    assert resumed_rejects == expected_rejects == {("no-evidence", "teacher", "document")}
    assert corpus_bytes(interrupted) == corpus_bytes(uninterrupted)
    assert not list((interrupted / "data").glob(".*.tmp"))
