"""The README's pipeline table, run in order on its defaults: each command reads what the one before it wrote.

Only the lengths of the run are scaled down (training steps, evaluation documents and caps); every config is the
embedded default, so a default that stops composing with the next (a corpus that packs into no training row, a
chunk size the student's window refuses) fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.corpus import read_corpus

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def smooth_reading(*args: str, cwd: Path, env: dict) -> None:
    done = subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"smooth-reading {args[0]} failed:\n{done.stderr[-4000:]}"


def test_every_command_of_the_pipeline_runs_on_its_defaults_in_order(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false",
           "SMOOTH_READING_CACHE": str(tmp_path / "empty-cache")}  # as on a fresh machine: no teacher prepared
    env.pop("RAY_ADDRESS", None)

    smooth_reading("generate", "--output", "corpus", cwd=tmp_path, env=env)
    streams = len(list(read_corpus(tmp_path / "corpus")))
    assert streams == 140

    smooth_reading("train", "--corpus", "corpus", "--output", "run", "--max-steps", "2", cwd=tmp_path, env=env)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    exported = json.loads((tmp_path / "run" / "export" / "config.json").read_text())
    tokenized = json.loads((tmp_path / "run" / "tokenized" / "meta.json").read_text())
    assert tokenized["num_streams"] == streams  # the default training length left no stream out

    smooth_reading("evaluate", "--model", "run/export", "--output", "eval", "--lengths", "512", "--depths", "0.5",
                   "--n", "1", "--max-summary-tokens", "4", "--max-answer-tokens", "4", cwd=tmp_path, env=env)
    rows = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert {(r["mode"], r["length"], r["n"]) for r in rows} == {("emr", 512, 1), ("one-round", 512, 1)}

    smooth_reading("publish", "--dataset", "corpus", "--to", "hub/dataset", cwd=tmp_path, env=env)
    smooth_reading("publish", "--model", "run/export", "--to", "hub/model", "--evaluation", "eval/results.json",
                   cwd=tmp_path, env=env)
    assert (tmp_path / "hub" / "dataset" / "README.md").is_file()
    assert json.loads((tmp_path / "hub" / "model" / "config.json").read_text()) == exported
