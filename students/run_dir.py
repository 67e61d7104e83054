"""A training run's folder, and the plain-valued spec that carries it into the workers.

`smooth-reading train` writes config.yaml and run.json and prepares tokenizer/ and tokenized/ once, before any worker
starts; every worker then trains from them, rank 0 writing metrics.jsonl, deepspeed.json and export/, all ranks
writing checkpoints/. Rerunning on the same folder resumes from its latest checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.config = self.root / "config.yaml"  # the TrainConfig the checkpoints were trained with
        self.run_info = self.root / "run.json"  # the corpus and tokenizer the run was prepared from
        self.tokenizer = self.root / "tokenizer"
        self.tokenized = self.root / "tokenized"
        self.deepspeed_json = self.root / "deepspeed.json"
        self.checkpoints = self.root / "checkpoints"
        self.metrics = self.root / "metrics.jsonl"
        self.export = self.root / "export"
        self.ray_storage = self.root / "ray"  # Ray Train's own run records


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs, as plain values (it crosses into Ray workers)."""

    run_dir: str
    config: dict  # TrainConfig.to_dict()
    corpus_dir: str
    corpus_manifest_hash: str
    base_model: str | None = None  # what the student was converted from, as its model card names it; None: scratch

    @property
    def folder(self) -> RunDir:
        return RunDir(self.run_dir)
