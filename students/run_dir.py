"""A training run's folder, and the plain-valued spec that carries it into the workers.

`smooth-reading train` writes config.yaml and run.json and prepares tokenizer/ and tokenized/ once, before any worker
starts; every worker then trains from them, rank 0 writing metrics.jsonl, deepspeed.json and export/, all ranks
writing checkpoints/. Rerunning on the same folder resumes from its latest checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def config(self) -> Path:  # the TrainConfig the checkpoints were trained with
        return self.root / "config.yaml"

    @property
    def run_info(self) -> Path:  # the corpus and tokenizer the run was prepared from
        return self.root / "run.json"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def tokenized(self) -> Path:
        return self.root / "tokenized"

    @property
    def deepspeed_json(self) -> Path:
        return self.root / "deepspeed.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def ray_storage(self) -> Path:  # Ray Train's own run records
        return self.root / "ray"


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs, as plain values (it crosses into Ray workers)."""

    run_dir: str
    config: dict  # TrainConfig.to_dict()
    corpus_dir: str
    corpus_manifest_hash: str

    @property
    def folder(self) -> RunDir:
        return RunDir(Path(self.run_dir))
