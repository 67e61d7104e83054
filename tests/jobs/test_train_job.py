"""`smooth-reading train` end to end: a run killed with SIGKILL resumes to the same losses, bit for bit; SIGTERM
checkpoints before exiting; the exported folder loads with from_pretrained and reads a document with smooth_read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.stream import Summary
from pipeline.trajectory import TeacherRound, Trajectory

REPO = Path(__file__).resolve().parents[2]
MAX_STEPS = 6
CHECKPOINT_EVERY = 3


def needle_trajectories(count: int) -> list[Trajectory]:
    """Rule-style needle-in-a-haystack readings: filler chunks, one holding the needle, STOP there."""
    out = []
    for i in range(count):
        key, value = f"city {i}", str(1000 + 37 * i)
        chunks = [f"Filler sentence {j} about the weather in spring and the price of bread. " * 3 for j in range(3)]
        needle_at = i % 3
        chunks[needle_at] += f"The special magic number for {key} is {value}. "
        context = "\n\n".join(chunks)
        ends, pos = [], 0
        for j, chunk in enumerate(chunks):
            pos += len(chunk) + (2 if j < len(chunks) - 1 else 0)
            ends.append(pos)
        target = f"Answer the question: What is the special magic number for {key}?"
        rounds = tuple(
            TeacherRound(
                chunk_index=k,
                summary=Summary(
                    target,
                    f"(1) The special magic number for {key} is {value}." if k == needle_at else "None yet.",
                    f"Chunk {k + 1} " + ("brought the needle." if k == needle_at else "held nothing relevant."),
                ),
                action="STOP" if k == needle_at else "READ",
            )
            for k in range(needle_at + 1)
        )
        out.append(Trajectory(
            document_id=f"niah-{i}", question=f"What is the special magic number for {key}?", context=context,
            chunk_ends=tuple(ends), rounds=rounds, answer=value, references=(value,), teacher={"name": "rules"},
            answer_passed=True, answer_score=1.0, source="niah",
        ))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A corpus folder as `smooth-reading generate` writes it: parquet shards and a manifest."""
    from pipeline.corpus import CorpusWriter

    root = tmp_path_factory.mktemp("corpus")
    with CorpusWriter(root, shard_size=12) as writer:
        for trajectory in needle_trajectories(24):
            writer.write(trajectory)
    return root


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "train.yaml"
    path.write_text(yaml.safe_dump({
        "max_steps": MAX_STEPS,
        "student": {"kind": "swa", "window": 128, "hidden_size": 32, "intermediate_size": 64, "vocab_size": 512},
        "data": {"seq_len": 512},
        "optim": {"lr": 3e-3, "warmup_steps": 2},
        "engine": {"zero_stage": 2, "gradient_accumulation": 2},
        "checkpoint": {"every": CHECKPOINT_EVERY, "keep_last": 1},
    }))
    return path


def _command(corpus: Path, run_dir: Path, config: Path | None, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "jobs.cli", "train", "--corpus", str(corpus), "--output", str(run_dir), "--launcher", "local"]
    return cmd + (["--config", str(config)] if config else []) + list(extra)


def _env() -> dict:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "TOKENIZERS_PARALLELISM": "false"}


def _train(*args, timeout=300) -> subprocess.CompletedProcess:
    done = subprocess.run(_command(*args), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _wait_for(condition, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the training run did not get there in time"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def straight_run(corpus, config_file, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    _train(corpus, run_dir, config_file)
    return run_dir


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_same_losses_bit_for_bit(corpus, config_file, straight_run, tmp_path):
    run_dir = tmp_path / "run"
    latest = run_dir / "checkpoints" / "latest"
    process = subprocess.Popen(
        _command(corpus, run_dir, config_file), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for(lambda: latest.exists() and latest.read_text() == f"step-{CHECKPOINT_EVERY:08d}", process)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        process.kill()
    assert not (run_dir / "export").exists()

    _train(corpus, run_dir, None)  # the same command, no flag: resumes from the latest checkpoint

    straight, resumed = _metrics(straight_run), _metrics(run_dir)
    fields = ("step", "loss", "lr", "grad_norm", "tokens", "tokens_seen", "epoch")
    assert [[r[f] for f in fields] for r in resumed] == [[r[f] for f in fields] for r in straight]
    assert [r["step"] for r in straight] == list(range(1, MAX_STEPS + 1))
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step-*")) == [f"step-{MAX_STEPS:08d}"]  # keep_last 1


@pytest.mark.slow
def test_a_resharded_corpus_trains_the_same_weights(config_file, straight_run, tmp_path):
    from pipeline.corpus import CorpusWriter

    resharded = tmp_path / "resharded"
    with CorpusWriter(resharded, shard_size=5) as writer:  # other shards, written in the reverse order
        for trajectory in reversed(needle_trajectories(24)):
            writer.write(trajectory)
    run_dir = tmp_path / "run"
    _train(resharded, run_dir, config_file)
    assert _metrics(run_dir) and [r["loss"] for r in _metrics(run_dir)] == [r["loss"] for r in _metrics(straight_run)]
    weights = "export/model.safetensors"
    assert (run_dir / weights).read_bytes() == (straight_run / weights).read_bytes()


@pytest.mark.slow
def test_sigterm_finishes_the_step_saves_a_checkpoint_and_exits_143(corpus, config_file, tmp_path):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        _command(corpus, run_dir, config_file, "--max-steps", "10000"), cwd=REPO, env=_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        metrics = run_dir / "metrics.jsonl"
        _wait_for(lambda: metrics.exists() and len(metrics.read_text().splitlines()) >= 2, process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 143  # 128 + SIGTERM: interrupted, resumable
    finally:
        process.kill()
    stopped_at = _metrics(run_dir)[-1]["step"]
    # The step it was in when the signal came was finished and checkpointed; nothing trained is lost.
    assert (run_dir / "checkpoints" / "latest").read_text() == f"step-{stopped_at:08d}"
    assert not (run_dir / "export").exists()


def test_a_run_folder_refuses_another_config_or_corpus(corpus, config_file, straight_run, tmp_path):
    from jobs.train import prepare_run

    with pytest.raises(ValueError, match="student.kind: saved 'swa', now 'gla'"):
        prepare_run(corpus, straight_run, config_file, {"student.kind": "gla"})
    other = tmp_path / "other-corpus"
    other.mkdir()
    (other / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="manifest hash"):
        prepare_run(other, straight_run, None, {})


def test_the_export_loads_with_from_pretrained_and_reads_a_document(straight_run, corpus):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.stream import SPECIAL_TOKENS
    from students.data import tokenize_trajectory
    from students.reading import smooth_read

    export = straight_run / "export"
    model = AutoModelForCausalLM.from_pretrained(export)
    tokenizer = AutoTokenizer.from_pretrained(export)
    assert type(model).__name__ == "MistralForCausalLM" and model.config.sliding_window == 128
    for token in SPECIAL_TOKENS:
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [tokenizer.convert_tokens_to_ids(token)]

    trajectory = needle_trajectories(1)[0]
    result = smooth_read(model, tokenizer, trajectory.question, trajectory.chunks, max_summary_tokens=24,
                         max_answer_tokens=8)
    assert 1 <= result.chunks_read <= len(trajectory.chunks)
    # The reader feeds exactly the tokens the student was trained on: question, first chunk, summary marker.
    first = result.rounds[0]
    fed = first.tokens_fed - first.action_forced  # a forced action is fed after the summary, not before it
    assert result.stream_ids[:fed] == tokenize_trajectory(trajectory, tokenizer).input_ids[:fed]

    card = (export / "README.md").read_text()
    manifest_hash = json.loads((straight_run / "run.json").read_text())["corpus_manifest_hash"]
    assert manifest_hash in card and f"| optimizer steps | {MAX_STEPS} |" in card
    assert "base_model" not in card.split("---")[1]  # trained from scratch
    assert (export / "loss_curve.png").stat().st_size > 0


@pytest.mark.slow
def test_ray_train_launch_trains_what_the_local_launch_trains(corpus, config_file, straight_run, tmp_path):
    run_dir = tmp_path / "run"
    env = {k: v for k, v in _env().items() if k != "RAY_ADDRESS"}  # a private local cluster, one CPU worker
    command = _command(corpus, run_dir, config_file, "--max-steps", "2")
    command[command.index("local")] = "ray"
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # Both steps are inside the warm-up, whose rates do not depend on max_steps: the same updates as the local run.
    fields = ("step", "loss", "lr", "tokens")
    assert [[r[f] for f in fields] for r in _metrics(run_dir)] == [[r[f] for f in fields] for r in _metrics(straight_run)[:2]]
    assert (run_dir / "export" / "model.safetensors").exists()


def test_a_student_converted_from_llama_starts_from_its_weights(corpus, tiny_llama_dir, tmp_path):
    """With a window longer than any document, the converted student is the Llama: its first loss is the Llama's."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from jobs.train import launch, prepare_run
    from students.data import DataPosition, PackedBatches, TokenizedCorpus
    from students.run_dir import RunDir
    from students.train import read_metrics

    config = tmp_path / "init.yaml"
    config.write_text(yaml.safe_dump({
        "max_steps": 1, "student": {"kind": "swa", "window": 512}, "data": {"seq_len": 512},
        "engine": {"zero_stage": 1, "precision": "fp32"}, "checkpoint": {"every": 1, "keep_last": 1},
    }))
    spec = prepare_run(corpus, tmp_path / "run", config, {"student.init": str(tiny_llama_dir)})
    assert launch(spec, "local") == 0
    first_loss = read_metrics(RunDir(tmp_path / "run").metrics)[0]["loss"]

    llama = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    row = PackedBatches(TokenizedCorpus(RunDir(tmp_path / "run").tokenized), 512, seed=0).micro_batches(DataPosition())[0]
    bounds = row.cu_seqlens.tolist()
    total, count = 0.0, 0
    with torch.no_grad():
        for start, end in zip(bounds, bounds[1:]):
            logits = llama(input_ids=row.input_ids[:, start:end]).logits[0]
            labels = row.labels[0, start:end]
            total += F.cross_entropy(logits[:-1], labels[1:], ignore_index=-100, reduction="sum").item()
            count += int((labels[1:] != -100).sum())
    assert first_loss == pytest.approx(total / count, rel=1e-5)
