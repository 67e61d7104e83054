"""The training loop in-process: schedule, DeepSpeed config, ZeRO stages, checkpoints kept, learning happens."""

from __future__ import annotations

import json

import pytest
import torch
from test_data import hotpot_trajectories

from pipeline.precision import native_bf16
from students.checkpoint import checkpoint_tag, latest_train_state, prune_checkpoints
from students.data import TokenizedCorpus, tokenizer_hash
from students.run_dir import RunDir, RunSpec
from students.train import lr_schedule, read_metrics, run_training
from students.train_config import OptimConfig, TrainConfig, deepspeed_config


def test_learning_rate_warms_up_linearly_then_follows_a_cosine_to_the_floor():
    optim = OptimConfig(lr=1.0, warmup_steps=4, min_lr_ratio=0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=optim.lr)
    schedule = lr_schedule(optimizer, optim, max_steps=20)
    lrs = []
    for _ in range(21):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert all(a > b for a, b in zip(lrs[4:20], lrs[5:21]))
    assert lrs[12] == pytest.approx(0.55)  # half way down the cosine
    assert lrs[20] == pytest.approx(0.1)  # the floor at max_steps


def test_deepspeed_json_follows_the_config():
    config = TrainConfig.from_values(
        {"engine": {"zero_stage": 3, "gradient_accumulation": 4, "precision": "fp32"}, "optim": {"gradient_clipping": 0.5}}
    )
    ds = deepspeed_config(config, world_size=8)
    assert ds["train_batch_size"] == 32 and ds["gradient_accumulation_steps"] == 4
    assert ds["train_micro_batch_size_per_gpu"] == 1
    assert ds["zero_optimization"] == {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True}
    assert ds["gradient_clipping"] == 0.5 and ds["bf16"] == {"enabled": False}
    auto = deepspeed_config(TrainConfig(), world_size=1)
    assert auto["bf16"]["enabled"] == native_bf16()


def test_config_mistakes_name_the_key():
    with pytest.raises(ValueError, match=r"config.optim: unknown setting\(s\) \['learning_rate'\]. Fix: use only"):
        TrainConfig.from_values({"optim": {"learning_rate": 1.0}})
    with pytest.raises(ValueError, match="config.engine.zero_stage: Input should be 0, 1, 2 or 3"):
        TrainConfig.from_values({"engine": {"zero_stage": 4}})
    with pytest.raises(ValueError, match="config.student.kind: Input should be 'swa' or 'gla'"):
        TrainConfig.from_values({"student": {"kind": "rnn"}})


def test_pruning_keeps_the_newest_complete_checkpoints(tmp_path):
    for step in (2, 4, 6, 8):
        (tmp_path / checkpoint_tag(step)).mkdir()
    (tmp_path / "latest").write_text(checkpoint_tag(6))  # step 8 is a save that was killed half-way
    prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == [checkpoint_tag(4), checkpoint_tag(6)]


def _run_dir(tmp_path, stream_tokenizer, trajectories=24):
    run = tmp_path / "run"
    stream_tokenizer.save_pretrained(RunDir(run).tokenizer)
    source = {"corpus": f"hotpot-{trajectories}", "tokenizer_hash": tokenizer_hash(stream_tokenizer)}
    TokenizedCorpus.build(hotpot_trajectories(trajectories), stream_tokenizer, RunDir(run).tokenized, source)
    return run


def _config(kind: str, **engine) -> dict:
    return TrainConfig.from_values({
        "max_steps": 4,
        "student": {"kind": kind, "window": 64, "hidden_size": 32, "intermediate_size": 64},
        "data": {"seq_len": 1536},
        "optim": {"warmup_steps": 1},
        "engine": {"zero_stage": 1, "precision": "fp32", **engine},
        "checkpoint": {"every": 2, "keep_last": 2},
    }).to_dict()


@pytest.mark.parametrize(("kind", "engine"), [
    ("swa", {"zero_stage": 0, "gradient_accumulation": 2}),
    ("gla", {"zero_stage": 3, "activation_checkpointing": True}),
])
def test_training_resumes_exactly_under_each_engine_setting(tmp_path, stream_tokenizer, kind, engine):
    run = _run_dir(tmp_path, stream_tokenizer)
    spec = RunSpec(str(run), _config(kind, **engine), "hotpot", "manifest-hash")
    assert run_training(spec) == 0
    straight = read_metrics(RunDir(run).metrics)
    assert [r["step"] for r in straight] == [1, 2, 3, 4]
    assert latest_train_state(RunDir(run).checkpoints).step == 4
    assert sorted(p.name for p in RunDir(run).checkpoints.glob("step-*")) == [checkpoint_tag(2), checkpoint_tag(4)]
    exported = json.loads((RunDir(run).export / "config.json").read_text())
    assert exported["hidden_size"] == 32 and exported["model_type"] == {"swa": "mistral", "gla": "smooth_reading_gla"}[kind]

    # As if the run had died right after the step-2 checkpoint: the replay of steps 3-4 matches bit for bit.
    (RunDir(run).checkpoints / "latest").write_text(checkpoint_tag(2))
    assert run_training(spec) == 0
    replay = read_metrics(RunDir(run).metrics)
    fields = ("step", "loss", "lr", "grad_norm", "tokens", "tokens_seen")
    assert [[r[f] for f in fields] for r in replay] == [[r[f] for f in fields] for r in straight]


@pytest.mark.slow
def test_training_lowers_the_loss(tmp_path, stream_tokenizer):
    run = _run_dir(tmp_path, stream_tokenizer, trajectories=6)
    config = TrainConfig.from_values({
        "max_steps": 40,
        "student": {"window": 64, "hidden_size": 32, "intermediate_size": 64},
        "data": {"seq_len": 1536},
        "optim": {"lr": 3e-3, "warmup_steps": 3},
        "engine": {"precision": "fp32"},
        "checkpoint": {"every": 100, "keep_last": 1},
    })
    assert run_training(RunSpec(str(run), config.to_dict(), "hotpot", "manifest-hash")) == 0
    losses = [r["loss"] for r in read_metrics(RunDir(run).metrics)]
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4
