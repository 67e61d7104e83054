"""Small generate-job runs shared by the generate tests: one rule-teacher config and the bytes a corpus is made of."""

from __future__ import annotations

from pathlib import Path

NIAH = {"kind": "niah", "lengths": [300, 600], "depths": [0.0, 0.5, 1.0], "n_per_cell": 2}
HOTPOT = {"kind": "long_hotpotqa", "target_tokens": 700, "n": 6}


def rules_config(sources=(NIAH, HOTPOT), **overrides) -> dict:
    """A small rule-teacher run: 18 documents of a few hundred tokens, several chunks each."""
    config = {
        "seed": 0, "shard_size": 5,
        "engine": {"max_in_flight": 4, "progress_interval_s": 1},
        "parts": [{"name": "rules", "teacher": {"backend": "rules"}, "sources": list(sources),
                   "chunking": {"low": 64, "high": 160}, "max_rounds": 64}],
    }
    for key, value in overrides.items():
        config[key] = value
    return config


def corpus_bytes(output: Path) -> dict[str, bytes]:
    """Every file the corpus is made of (not config.yaml, which also holds engine settings)."""
    names = ["manifest.json", "statistics.json", "rejects.jsonl"]
    names += [f"data/{p.name}" for p in sorted((output / "data").glob("train-*.parquet"))]
    return {name: (output / name).read_bytes() for name in names if (output / name).exists()}
