"""Publish a corpus or a checkpoint with its card: to a local folder laid out as a Hub repository, or to the Hub.

A dataset folder holds README.md (the dataset card; its YAML `configs` point at data/train-*.parquet, so
`datasets.load_dataset(folder)` reads it), the parquet shards, manifest.json and statistics.json. A model folder
holds the checkpoint's files as they are and README.md (the model card). To the Hub: the same folder is built in a
temporary directory, the repository is created (private unless --public) and the folder uploaded in one commit.
The token comes from the HF_TOKEN environment variable (or `hf auth login`) and is never printed.
Both --to and --repo-id: the folder is laid out as that repository, its cards loading from the repo id, and nothing
is uploaded (review it, then `hf upload USER/NAME LOCAL_DIR`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, get_token

from data_cards import dataset_card, model_card

# Corpus files a published dataset carries beside its shards; rejects.jsonl stays behind (it quotes documents that
# failed validation, which need not be redistributable).
DATASET_SIDE_FILES: tuple[str, ...] = ("manifest.json", "statistics.json", "config.yaml")
# Training-run leftovers that never belong in a published checkpoint.
MODEL_SKIP: tuple[str, ...] = ("optimizer*", "global_step*", "*.pt", "latest", "zero_to_fp32.py", "rng_state*")


@dataclass(frozen=True)
class PublishTarget:
    """Where to publish: a local folder, a Hub repository, or a local folder laid out for a Hub repository."""

    local_dir: Path | None = None
    repo_id: str | None = None
    public: bool = False

    def __post_init__(self):
        if self.local_dir is None and not self.repo_id:
            raise ValueError("nowhere to publish. Fix: give --to LOCAL_DIR, --repo-id USER/NAME, or both (a folder "
                             "laid out for that repository, not uploaded)")
        if self.local_dir is not None and self.public:
            raise ValueError("--public is for an upload, and --to uploads nothing. Fix: drop --to, or drop --public")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--dataset", type=Path, metavar="CORPUS_DIR", help="a corpus written by `generate`")
    what.add_argument("--model", type=Path, metavar="HF_FOLDER", help="a checkpoint folder (e.g. RUN_DIR/export)")
    parser.add_argument("--to", type=Path, metavar="LOCAL_DIR", help="write a Hub-layout folder here, upload nothing")
    parser.add_argument("--repo-id", metavar="USER/NAME",
                        help="upload to this Hub repository (token: $HF_TOKEN); with --to, the repository the folder "
                             "is laid out for")
    parser.add_argument("--public", action="store_true", help="create the Hub repository public (default: private)")
    parser.add_argument("--evaluation", type=Path, metavar="RESULTS_JSON",
                        help="--model: results.json written by `evaluate`, shown in the model card")
    parser.add_argument("--trained-on", metavar="DATASET", help="--model: the dataset's repo id or path, for the card")


def run(args: argparse.Namespace) -> int:
    target = PublishTarget(local_dir=args.to, repo_id=args.repo_id, public=args.public)
    if args.dataset is not None:
        where = publish_dataset(args.dataset, target)
    else:
        evaluation = json.loads(args.evaluation.read_text()) if args.evaluation else None
        where = publish_model(args.model, target, evaluation=evaluation, dataset_id=args.trained_on)
    print(f"published to {where}")
    return 0


def publish_dataset(corpus_dir: Path, target: PublishTarget) -> str:
    return _publish(lambda folder, load_path: stage_dataset(corpus_dir, folder, load_path), "dataset", target)


def publish_model(model_dir: Path, target: PublishTarget, evaluation: list[dict] | None = None,
                  dataset_id: str | None = None) -> str:
    return _publish(lambda folder, load_path: stage_model(model_dir, folder, load_path, evaluation, dataset_id),
                    "model", target)


def _publish(stage, repo_type: str, target: PublishTarget) -> str:
    if target.local_dir is not None:
        stage(target.local_dir, target.repo_id or str(target.local_dir))
        return str(target.local_dir)
    token = hub_token()
    with tempfile.TemporaryDirectory(prefix="smooth-reading-publish-") as tmp:
        stage(Path(tmp), target.repo_id)
        return push_folder(Path(tmp), target.repo_id, repo_type, private=not target.public, token=token)


def hub_token() -> str:
    token = get_token()  # $HF_TOKEN, else the token `hf auth login` saved
    if not token:
        raise RuntimeError(
            "no Hugging Face token: publishing to the Hub reads it from the HF_TOKEN environment variable or from "
            "`hf auth login`. Fix: export HF_TOKEN=... (a token with write access), or publish to a local folder with --to"
        )
    return token


def push_folder(folder: Path, repo_id: str, repo_type: str, private: bool, token: str) -> str:
    """Create the repository (private by default; an existing one is kept as it is) and upload the folder."""
    api = HfApi(token=token)
    url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id, repo_type=repo_type, folder_path=folder,
        commit_message=f"smooth-reading: publish {repo_type}",
    )
    return str(url)


def stage_dataset(corpus_dir: Path, folder: Path, load_path: str) -> None:
    """Lay the corpus out as a Hub dataset repository in `folder`: card, shards, manifest, statistics."""
    corpus_dir = Path(corpus_dir)
    shards = sorted((corpus_dir / "data").glob("train-*.parquet"))
    if not shards:
        raise FileNotFoundError(
            f"{corpus_dir} holds no shards at data/train-*.parquet. Fix: point --dataset at a corpus folder written "
            f"by `smooth-reading generate`"
        )
    card = dataset_card(corpus_dir, load_path=load_path)
    folder = Path(folder)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for old in (folder / "data").glob("train-*.parquet"):
        old.unlink()  # a republished corpus may have fewer shards
    for shard in shards:
        shutil.copy2(shard, folder / "data" / shard.name)
    for name in DATASET_SIDE_FILES:
        if (corpus_dir / name).is_file():
            shutil.copy2(corpus_dir / name, folder / name)
    card.save(folder / "README.md")


def stage_model(model_dir: Path, folder: Path, load_path: str, evaluation: list[dict] | None = None,
                dataset_id: str | None = None) -> None:
    """Lay the checkpoint out as a Hub model repository in `folder`: its files and a model card."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"{model_dir} has no config.json, so it is not a Hugging Face checkpoint folder. Fix: point --model at "
            f"the exported folder (RUN_DIR/export)"
        )
    card = model_card(model_dir, load_path=load_path, evaluation=evaluation, dataset_id=dataset_id)
    folder = Path(folder)
    if folder.resolve() != model_dir.resolve():
        shutil.copytree(model_dir, folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*MODEL_SKIP, "README.md"))
    card.save(folder / "README.md")
