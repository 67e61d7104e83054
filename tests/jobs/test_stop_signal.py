"""A job stopped with SIGTERM (what `ray job stop`, a scheduler or `kill` sends) takes its engine processes with it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.slow
def test_sigterm_during_a_vllm_evaluation_shuts_its_engine_core_down(exported_student, tmp_path):
    job = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "evaluate", "--model", str(exported_student), "--output", str(tmp_path / "eval"),
         "--tasks", "niah", "--lengths", "8192", "--depths", "0.5", "--n", "8", "--modes", "emr", "--engine", "vllm",
         "--max-summary-tokens", "6", "--max-answer-tokens", "4"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started: list[psutil.Process] = []
    try:
        def engine_core_started():
            children = psutil.Process(job.pid).children(recursive=True)
            return children if any("EngineCore" in " ".join([c.name(), *c.cmdline()]) for c in children) else None
        started = wait_for(engine_core_started, 300, "the vLLM engine core to start")
        time.sleep(5)  # reading under way
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=120) != 0  # stopped, not finished
        alive = lambda: [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        wait_for(lambda: not alive(), 60, f"the engine processes to exit: {alive()}")
    finally:
        if job.poll() is None:
            job.kill()
        for process in started:  # only what this test started, by id
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
