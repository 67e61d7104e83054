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
from tests.faults import job_env
from tests.generate_runs import NIAH, corpus_bytes, rules_config

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


def start_node(command: list[str], log: Path) -> subprocess.Popen:
    # Its own session: the node's raylet and the workers it starts form one process group the test can kill.
    return subprocess.Popen(command, start_new_session=True, env=RAY_ENV, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)


def stop_node(node: subprocess.Popen, temp_dir: Path | None = None) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(node.pid, sig)
        except ProcessLookupError:
            break
        try:
            node.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    node.wait()
    if temp_dir is not None:
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)


def wait_for_nodes(gcs_address: str, count: int, timeout: float = 120) -> None:
    probe = ("import ray, sys, time\n"
             f"ray.init(address={gcs_address!r}, logging_level='ERROR', log_to_driver=False)\n"
             f"deadline = time.monotonic() + {timeout}\n"
             f"while sum(n['Alive'] for n in ray.nodes()) < {count}:\n"
             "    assert time.monotonic() < deadline, ray.nodes()\n"
             "    time.sleep(0.5)\n")
    subprocess.run([sys.executable, "-c", probe], env=RAY_ENV, check=True, timeout=timeout + 60)


def test_losing_a_worker_node_part_way_still_ends_with_every_document_once(tmp_path):
    """A head and a worker, one teacher actor on each (a custom resource per node); the worker is killed with
    SIGKILL part-way. The job finishes on the head's actor and the corpus is byte for byte an uninterrupted run's."""
    gcs, head_manager, head_objects, worker_manager, worker_objects, client = free_ports(6)
    temp_dir = Path("/tmp") / f"ray-2n-{os.getpid()}-{gcs}"
    common = ["--node-ip-address=127.0.0.1", "--resources={\"teacher\": 1}", "--block", "--disable-usage-stats"]
    head = start_node([RAY, "start", "--head", f"--port={gcs}", "--num-cpus=2", "--include-dashboard=false",
                       f"--node-manager-port={head_manager}", f"--object-manager-port={head_objects}",
                       f"--ray-client-server-port={client}", f"--temp-dir={temp_dir}", *common], tmp_path / "head.log")
    worker = None
    try:
        wait_for_nodes(f"127.0.0.1:{gcs}", 1)
        worker = start_node([RAY, "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=1",
                             f"--node-manager-port={worker_manager}", f"--object-manager-port={worker_objects}",
                             *common], tmp_path / "worker.log")
        wait_for_nodes(f"127.0.0.1:{gcs}", 2)

        values = rules_config(sources=[{**NIAH, "n_per_cell": 5}])  # 30 documents
        values["shard_size"] = 3
        values["engine"] = {"num_actors": 2, "num_cpus": 0.5, "resources": {"teacher": 1}, "max_in_flight": 2,
                            "max_restarts": 1, "restart_timeout_s": 20, "progress_interval_s": 2}
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump(values))
        output = tmp_path / "corpus"
        driver = subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "generate", "--config", str(config), "--output", str(output),
             "--address", f"127.0.0.1:{gcs}"],
            cwd=Path(__file__).resolve().parents[2], env=job_env(RAY_ENV, delay_per_document_s=1.0),
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "driver.log", "w"), start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 180
            while not list((output / "data").glob("train-*.parquet")):
                assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no shard appeared within 180 s"
                time.sleep(0.1)
            os.killpg(worker.pid, signal.SIGKILL)  # the worker node's own process group, nothing else
            assert driver.wait(timeout=300) == 0, (tmp_path / "driver.log").read_text()[-3000:]
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
        log = (tmp_path / "driver.log").read_text()
        assert "teacher actor" in log and "the other actors read its documents" in log, log[-3000:]
    finally:
        if worker is not None:
            stop_node(worker)
        stop_node(head, temp_dir)

    reference = tmp_path / "reference"
    local = {**os.environ, "RAY_ADDRESS": ""}
    values["engine"] = {"max_in_flight": 4}
    config.write_text(yaml.safe_dump(values))
    subprocess.run([sys.executable, "-m", "jobs.cli", "generate", "--config", str(config), "--output",
                    str(reference)], cwd=Path(__file__).resolve().parents[2], env=local, check=True,
                   capture_output=True, timeout=300)
    records = [t.document_id for t in read_corpus(output)]
    assert len(records) == len(set(records)) == 30 and not (output / "rejects.jsonl").exists()
    assert corpus_bytes(output) == corpus_bytes(reference)
