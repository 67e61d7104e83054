"""`auto` precision picks bf16 only where the hardware computes it natively: on an AVX2-only CPU bf16 training and
reading run many times slower than fp32 (the SmolLM2 recipe's fourth run)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from jobs.eval_tasks import EvalConfig
from pipeline.precision import resolve_dtype
from students.train_config import TrainConfig, deepspeed_config


@pytest.fixture
def cpu(monkeypatch):
    """This machine as a CPU without a GPU, with the bf16 instructions the test names (hardware a test cannot swap)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def with_flags(avx512_bf16: bool, amx: bool):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    return with_flags


@pytest.mark.parametrize(("avx512_bf16", "amx", "dtype", "bf16"), [
    (False, False, "float32", False),  # AVX2 only (AMD EPYC Rome/Milan, older Xeons)
    (True, False, "bfloat16", True),   # AVX512-BF16 (Cooper Lake, Zen 4)
    (False, True, "bfloat16", True),   # AMX (Sapphire Rapids and later)
])
def test_auto_is_bf16_only_where_native(cpu, avx512_bf16, amx, dtype, bf16):
    cpu(avx512_bf16, amx)
    assert resolve_dtype("auto") == dtype
    assert deepspeed_config(TrainConfig.from_values({"engine": {"precision": "auto"}}), world_size=1)["bf16"] == {"enabled": bf16}


def test_a_named_dtype_or_precision_is_kept_on_any_cpu(cpu):
    cpu(False, False)
    assert resolve_dtype("bfloat16") == "bfloat16" and resolve_dtype("float32") == "float32"
    assert deepspeed_config(TrainConfig.from_values({"engine": {"precision": "bf16"}}), world_size=1)["bf16"] == {"enabled": True}
    cpu(True, True)
    assert deepspeed_config(TrainConfig.from_values({"engine": {"precision": "fp32"}}), world_size=1)["bf16"] == {"enabled": False}


def test_an_auto_reader_starts_vllm_in_the_dtype_this_cpu_runs_fast(cpu, monkeypatch, tmp_path):
    import students.reading_vllm
    from jobs.eval_readers import vllm_reader_engine

    engines = []
    monkeypatch.setattr(students.reading_vllm, "vllm_engine", lambda folder, **kw: engines.append(kw["dtype"]))
    reader = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(max_position_embeddings=8192)))
    for avx512_bf16 in (False, True):
        cpu(avx512_bf16, amx=False)
        vllm_reader_engine(tmp_path, reader, EvalConfig(dtype="auto"), parent=False)
    assert engines == ["float32", "bfloat16"]
