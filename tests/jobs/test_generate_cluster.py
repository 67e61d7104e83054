"""`ray job submit` to a real Ray head on loopback: the generate job joins the cluster and writes its corpus."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from pipeline.corpus import read_corpus
from tests.jobs.test_generate import NIAH, rules_config

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))
# A throwaway cluster on loopback: no token authentication (Ray turns it on when a token file exists).
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def ray_head(tmp_path):
    """`ray start --head --block` on 127.0.0.1 with its own ports and temp dir (other clusters on this machine
    stay untouched); stopped in the end by ending the process group it runs in."""
    gcs, dashboard, agent, agent_grpc, metrics, runtime_env, client, manager, objects = free_ports(9)
    temp_dir = Path("/tmp") / f"ray-gen-{os.getpid()}-{gcs}"  # short: Ray's socket paths must stay under 108 bytes
    command = [
        RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}", "--num-cpus=2",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
        f"--ray-client-server-port={client}", f"--node-manager-port={manager}", f"--object-manager-port={objects}",
        f"--temp-dir={temp_dir}", "--disable-usage-stats",
    ]
    head = subprocess.Popen(command, start_new_session=True, env=RAY_ENV, stdout=open(tmp_path / "head.log", "w"),
                            stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the Ray dashboard did not come up in 120 s"
                time.sleep(0.5)
        yield address
    finally:
        # What `ray stop` would do, limited to this head: SIGTERM lets `--block` take its processes down.
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:  # it drains for up to 30 s; nothing here needs draining
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:  # every process of the group has already exited
            pass
        head.wait()
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)


def test_ray_job_submit_runs_generate_on_the_cluster(ray_head, tmp_path):
    config, output = tmp_path / "config.yaml", tmp_path / "corpus"
    config.write_text(yaml.safe_dump(rules_config(sources=[NIAH])))
    entrypoint = shlex.join([sys.executable, "-m", "jobs.cli", "generate", "--config", str(config),
                             "--output", str(output)])
    submitted = subprocess.run(
        [RAY, "job", "submit", "--address", ray_head, "--", *shlex.split(entrypoint)],
        env=RAY_ENV, capture_output=True, text=True, timeout=300,
    )
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    assert "succeeded" in submitted.stdout

    records = list(read_corpus(output))
    assert len(records) == 12 and all(t.answer_passed for t in records)
    # The driver joined the submitted-to cluster rather than starting its own: its log says so.
    assert "Connecting to existing Ray cluster" in submitted.stdout + submitted.stderr
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["counts"] == {"rejects": 0, "shards": 3, "trajectories": 12}
