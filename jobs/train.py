"""Distil a Smooth Reading corpus into a recurrent student with DeepSpeed; rerun on the same --output to resume.

The run folder holds everything: config.yaml (the resolved config), run.json (corpus and tokenizer it was made
from), deepspeed.json, tokenizer/, tokenized/ (the corpus as token arrays), checkpoints/, metrics.jsonl and, once
max_steps is reached, export/ (a Hugging Face folder with a model card). Rerunning the command on a folder that has
checkpoints resumes from the latest one; its saved config wins, and --max-steps may extend the run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import ray
import ray.train
import torch
import yaml
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from transformers import AutoTokenizer

from jobs.teacher_models import PREPARED_MODELS, prepare_smollm2, resolve_model
from pipeline.config import differences
from pipeline.corpus import read_corpus
from pipeline.files import staged_folder
from students.data import TokenizedCorpus, tokenizer_hash
from students.run_dir import RunDir, RunSpec
from students.tokenizer import add_stream_tokens, train_stream_tokenizer
from students.train import run_training
from students.train_config import TrainConfig

log = logging.getLogger("smooth_reading.train")

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", required=True, help="corpus folder: data/train-NNNNN.parquet shards + manifest.json")
    parser.add_argument("--output", required=True, help="run folder; an existing one with checkpoints is resumed")
    parser.add_argument("--config", help=f"training config YAML (default: {CONFIG_DIR / 'train_tiny.yaml'})")
    parser.add_argument("--max-steps", type=int, help="optimizer steps to train to (overrides the config)")
    parser.add_argument("--student", choices=("swa", "gla"), help="student family (overrides the config)")
    parser.add_argument(
        "--init", help="'scratch' (train a tokenizer on the corpus, build a student from the config), a Hugging Face "
        "Llama / Mistral / Qwen2 folder to convert, or 'smollm2' (prepared if missing) (overrides the config)",
    )
    parser.add_argument(
        "--launcher", choices=("auto", "local", "ray"), default="auto",
        help="local: this process is the only worker; ray: Ray Train's TorchTrainer, one worker per GPU of the "
        "cluster; auto: ray when RAY_ADDRESS is set or there is more than one GPU, else local",
    )


def run(args: argparse.Namespace) -> int:
    spec = prepare_run(
        corpus_dir=Path(args.corpus), run_dir=Path(args.output), config_path=args.config,
        overrides={"max_steps": args.max_steps, "student.kind": args.student, "student.init": args.init},
    )
    return launch(spec, args.launcher)


def load_config(config_path: str | Path | None, overrides: dict | None = None):
    """TrainConfig from a YAML file (every key optional) with dotted-key overrides that are not None."""
    raw = yaml.safe_load(Path(config_path or CONFIG_DIR / "train_tiny.yaml").read_text()) or {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return TrainConfig.from_values(raw)


def manifest_hash(corpus_dir: Path) -> str:
    manifest = corpus_dir / "manifest.json"
    if not manifest.exists():
        raise FileNotFoundError(
            f"{manifest} not found: --corpus must be a corpus folder written by `smooth-reading generate` "
            "(data/train-NNNNN.parquet shards and manifest.json)"
        )
    return hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]


def prepare_run(corpus_dir: Path, run_dir: Path, config_path: str | Path | None = None, overrides: dict | None = None,
                config: TrainConfig | None = None):
    """Resolve the config, make the tokenizer and the tokenized corpus once, and say what the workers train.

    The config is `config`, or read from `config_path` with `overrides`. A new run folder gets config.yaml and
    run.json. An existing one keeps its config (the one its checkpoints were trained with): a different --config,
    --student or --init is refused, a new --max-steps is taken.
    """
    corpus_dir, run_dir = corpus_dir.resolve(), run_dir.resolve()
    corpus_hash = manifest_hash(corpus_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    folder = RunDir(run_dir)
    config_file, run_file = folder.config, folder.run_info
    given = config is not None
    requested = config if given else load_config(config_path, overrides)

    if config_file.exists():
        config = TrainConfig.from_values(yaml.safe_load(config_file.read_text()), str(config_file))
        changed = differences(config, requested, ignore={"max_steps"})
        explicit = given or config_path is not None or any(v is not None for k, v in (overrides or {}).items() if k != "max_steps")
        if changed and explicit:
            raise ValueError(
                f"{run_dir} was started with another config ({'; '.join(changed)}); its checkpoints can only continue "
                "with the same one: omit --config/--student/--init to resume, or use a new --output"
            )
        if (overrides or {}).get("max_steps") is not None and overrides["max_steps"] != config.max_steps:
            log.info("max_steps %d -> %d (the cosine schedule is stretched to the new end)", config.max_steps, overrides["max_steps"])
            config.max_steps = overrides["max_steps"]
        previous = json.loads(run_file.read_text())
        if previous["corpus_manifest_hash"] != corpus_hash:
            raise ValueError(
                f"{run_dir} was trained on corpus {previous['corpus']} (manifest hash {previous['corpus_manifest_hash']}); "
                f"{corpus_dir} has manifest hash {corpus_hash}: resume with that corpus, or use a new --output"
            )
    else:
        config = requested.model_copy(deep=True)  # the caller's config is not changed by what follows
    config_file.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    # config.yaml keeps a prepared model's name (portable); the workers get its folder on this machine.
    base_model = None if config.student.init == "scratch" else config.student.init
    if config.student.init in PREPARED_MODELS:
        prepare_smollm2()
        base_model = PREPARED_MODELS[config.student.init]
    config.student.init = resolve_model(config.student.init)
    tokenizer = _run_tokenizer(config, corpus_dir, folder.tokenizer)
    source = {"corpus_manifest_hash": corpus_hash, "tokenizer_hash": tokenizer_hash(tokenizer)}
    corpus = TokenizedCorpus.build(read_corpus(corpus_dir), tokenizer, folder.tokenized, source)
    run_file.write_text(json.dumps({"corpus": str(corpus_dir), **source}, indent=2) + "\n")
    log.info("corpus %s: %d streams, %d tokens", corpus_dir, len(corpus), corpus.num_tokens)
    return RunSpec(run_dir=str(run_dir), config=config.to_dict(), corpus_dir=str(corpus_dir), corpus_manifest_hash=corpus_hash,
                   base_model=base_model)


def _run_tokenizer(config, corpus_dir: Path, directory: Path):
    """The run's tokenizer: made once (trained on the corpus, or the init checkpoint's plus the stream tokens)."""
    if directory.exists():
        return AutoTokenizer.from_pretrained(directory)
    if config.student.init == "scratch":
        texts = (trajectory.render().text for trajectory in read_corpus(corpus_dir))
        tokenizer = train_stream_tokenizer(texts, vocab_size=config.student.vocab_size)
    else:
        tokenizer = AutoTokenizer.from_pretrained(config.student.init)
        add_stream_tokens(tokenizer)
    with staged_folder(directory) as staging:
        tokenizer.save_pretrained(staging)
    return AutoTokenizer.from_pretrained(directory)


def launch(spec, launcher: str = "auto") -> int:
    """Run the workers: this process alone, or Ray Train's TorchTrainer with one worker per GPU."""
    config = TrainConfig.from_values(spec.config)
    if launcher == "auto":
        many = config.num_workers > 1 or torch.cuda.device_count() > 1
        launcher = "ray" if os.environ.get("RAY_ADDRESS") or many else "local"
    if launcher == "local":
        if config.num_workers > 1:
            raise ValueError(f"num_workers={config.num_workers} needs --launcher ray (local runs one worker)")
        return run_training(spec)
    return _launch_ray(spec, config.num_workers)


def _launch_ray(spec, num_workers: int) -> int:
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=True)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    workers = num_workers or max(gpus, 1)
    log.info("Ray Train: %d worker(s), %s", workers, f"{gpus} GPU(s) in the cluster" if gpus else "CPU")
    trainer = TorchTrainer(
        train_loop_per_worker=_ray_worker,
        train_loop_config=asdict(spec),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus > 0),
        run_config=RunConfig(name="train", storage_path=str(spec.folder.ray_storage)),
    )
    trainer.fit()
    return 0


def _ray_worker(spec: dict) -> None:
    context = ray.train.get_context()
    os.environ["LOCAL_RANK"] = str(context.get_local_rank())
    os.environ["RANK"] = str(context.get_world_rank())
    os.environ["WORLD_SIZE"] = str(context.get_world_size())
    code = run_training(spec)
    if code != 0:
        raise RuntimeError(f"training worker {context.get_world_rank()} stopped with code {code}")
