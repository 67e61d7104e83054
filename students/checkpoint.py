"""Training checkpoints that resume exactly, and the Hugging Face export of a trained student.

A checkpoint is a folder `CHECKPOINT_DIR/step-NNNNNNNN/` holding DeepSpeed's own files (model, optimizer and
scheduler state, written by `engine.save_checkpoint`), `train_state.json` (optimizer step, data position, tokens
seen) and one `rng-rankR.pt` per rank (python, numpy and torch generator states). `CHECKPOINT_DIR/latest` names the
newest complete checkpoint; it is replaced atomically only after every rank has written everything, so a run killed
mid-save resumes from the previous checkpoint, never from a half-written one.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from data_cards import training_card
from pipeline.files import staged_folder, write_atomic
from students.data import DataPosition

LATEST = "latest"
TRAIN_STATE = "train_state.json"


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    position: DataPosition = field(default_factory=DataPosition)  # the next step's data
    tokens_seen: int = 0  # tokens of all ranks, padding-free (rows are packed, never padded)

    def to_json(self) -> dict:
        return {"step": self.step, "position": asdict(self.position), "tokens_seen": self.tokens_seen}

    @classmethod
    def from_json(cls, d: dict) -> "TrainState":
        return cls(step=d["step"], position=DataPosition(**d["position"]), tokens_seen=d["tokens_seen"])


def checkpoint_tag(step: int) -> str:
    return f"step-{step:08d}"


def latest_tag(checkpoint_dir: str | Path) -> str | None:
    path = Path(checkpoint_dir) / LATEST
    return path.read_text().strip() if path.exists() else None


def latest_train_state(checkpoint_dir: str | Path) -> TrainState | None:
    """The train state of the newest complete checkpoint, read without loading any weights."""
    tag = latest_tag(checkpoint_dir)
    if tag is None:
        return None
    return TrainState.from_json(json.loads((Path(checkpoint_dir) / tag / TRAIN_STATE).read_text()))


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(engine, checkpoint_dir: str | Path, state: TrainState, keep_last: int) -> Path:
    """Save everything needed to continue bit for bit; every rank must call this. Keeps the newest `keep_last`."""
    import deepspeed.comm as dist

    checkpoint_dir = Path(checkpoint_dir)
    tag = checkpoint_tag(state.step)
    folder = checkpoint_dir / tag
    rank = dist.get_rank()
    folder.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    torch.save(rng_state(), folder / f"rng-rank{rank}.pt")
    if rank == 0:
        (folder / TRAIN_STATE).write_text(json.dumps(state.to_json()))
    engine.save_checkpoint(str(checkpoint_dir), tag=tag, client_state={"train_state": state.to_json()}, save_latest=False)
    dist.barrier()
    if rank == 0:
        write_atomic(checkpoint_dir / LATEST, lambda tmp: Path(tmp).write_text(tag))
        prune_checkpoints(checkpoint_dir, keep_last)
    dist.barrier()
    return folder


def prune_checkpoints(checkpoint_dir: str | Path, keep_last: int) -> None:
    """Delete every checkpoint folder but the newest `keep_last` up to `latest` (leftovers of a killed save too)."""
    checkpoint_dir = Path(checkpoint_dir)
    latest = latest_tag(checkpoint_dir)
    tags = sorted(p.name for p in checkpoint_dir.glob("step-*") if p.is_dir())
    keep = set([t for t in tags if latest is not None and t <= latest][-max(keep_last, 1) :])
    for tag in tags:
        if tag not in keep:
            shutil.rmtree(checkpoint_dir / tag, ignore_errors=True)


def load_checkpoint(engine, checkpoint_dir: str | Path) -> TrainState | None:
    """Restore engine (model, optimizer, scheduler) and RNG states from the latest checkpoint; None if there is none."""
    import deepspeed.comm as dist

    tag = latest_tag(checkpoint_dir)
    if tag is None:
        return None
    load_path, client_state = engine.load_checkpoint(str(checkpoint_dir), tag=tag)
    if load_path is None:
        raise RuntimeError(f"DeepSpeed could not load checkpoint {Path(checkpoint_dir) / tag}; delete it to resume from an earlier one")
    rng_file = Path(checkpoint_dir) / tag / f"rng-rank{dist.get_rank()}.pt"
    if not rng_file.exists():
        raise RuntimeError(
            f"{rng_file} is missing: the checkpoint was written by a run with fewer ranks; resume with the same "
            "number of workers"
        )
    set_rng_state(torch.load(rng_file, weights_only=False))
    return TrainState.from_json(client_state["train_state"])


def consolidated_state_dict(engine) -> dict[str, torch.Tensor] | None:
    """The full model weights on rank 0 (gathered from the partitions under ZeRO-3); None on other ranks."""
    import deepspeed.comm as dist

    if engine.zero_optimization_stage() == 3:
        state = engine._zero3_consolidated_16bit_state_dict()
    else:
        state = engine.module.state_dict()
    return state if dist.get_rank() == 0 else None


@dataclass(frozen=True)
class ExportInfo:
    """What the model card says about the run."""

    student: str  # swa | gla
    base_model: str | None  # the Hugging Face folder or repo the student was initialised from; None from scratch
    corpus: str
    corpus_manifest_hash: str
    steps: int
    tokens_seen: int
    seq_len: int
    losses: list[tuple[int, float]]  # (step, loss) of every logged step
    config: dict


def export_hf(model, state_dict, tokenizer, out_dir: str | Path, info: ExportInfo) -> Path:
    """Write a Hugging Face folder: safetensors weights, config, tokenizer (with the stream tokens), model card."""
    out_dir = Path(out_dir)
    with staged_folder(out_dir) as staging:
        model.save_pretrained(staging, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        _plot_loss(info.losses, staging / "loss_curve.png")
        training_card(asdict(info)).save(staging / "README.md")
    return out_dir


def _plot_loss(losses: list[tuple[int, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([s for s, _ in losses], [v for _, v in losses])
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
