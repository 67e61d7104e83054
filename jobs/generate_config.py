"""The generate job's configuration: typed sections (pipeline.config) loaded from YAML, unknown keys refused by name.

A run is a list of parts, each a teacher with its sources, chunking and round cap; filter and engine settings
apply to every part. The config's content hash (what decides the records) goes into manifest.json, so a resumed
run can refuse a changed config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from jobs.teacher_models import PREPARED_MODELS, is_prepared, resolve_model
from pipeline.config import Config
from pipeline.verify import CHECKS, check_names

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "generate_default.yaml"
SOURCE_KINDS = ("file", "long_hotpotqa", "long_squad", "quality", "niah")
HOTPOTQA_DATASETS = ("shipped", "full")
NIAH_HAYSTACKS = ("default", "heldout_hotpotqa")


class SourceConfig(Config):
    kind: str  # file | long_hotpotqa | long_squad | quality | niah
    path: str = ""  # file: a jsonl / parquet file or a Hugging Face dataset folder
    n: int = 8  # long_hotpotqa, long_squad: documents to build
    target_tokens: int = 2000  # long_hotpotqa, long_squad: length of each document
    dataset: str = "shipped"  # long_hotpotqa: the shipped 100 questions | full (7,405; `smooth-reading prepare-data`)
    lengths: list[int] = Field(default_factory=lambda: [1000, 2000])  # niah: haystack lengths in tokens
    depths: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9])  # niah: needle depths, 0 (start) .. 1 (end)
    n_per_cell: int = 1  # niah: documents per (length, depth)
    value_digits: int = 7  # niah: digits of each needle's value
    random_start: bool = False  # niah: each haystack starts at a seeded paragraph (not the text's start)
    # Training data kept apart from the evaluation's (which reads the shipped questions and the default haystack):
    # long_hotpotqa with dataset full: leave out the shipped questions and every paragraph titled like one of theirs;
    # niah haystack: default (the QuALITY article + the shipped HotpotQA paragraphs) | heldout_hotpotqa (the full
    # dev set's paragraphs, the shipped questions' left out; needs `smooth-reading prepare-data`).
    exclude_shipped: bool = False
    haystack: str = "default"
    limit: int = 0  # keep at most this many documents of the source (0: all)

    @property
    def needs_prepared_data(self) -> bool:
        """Whether reading this source needs the files `smooth-reading prepare-data` fetches."""
        return (self.kind == "long_squad" or (self.kind == "long_hotpotqa" and self.dataset == "full")
                or (self.kind == "niah" and self.haystack == "heldout_hotpotqa"))

    @model_validator(mode="after")
    def _check(self) -> "SourceConfig":
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"source kind {self.kind!r} is unknown. Fix: use one of {list(SOURCE_KINDS)}")
        if self.dataset not in HOTPOTQA_DATASETS:
            raise ValueError(f"source dataset {self.dataset!r} is unknown. Fix: use one of {list(HOTPOTQA_DATASETS)}")
        if self.haystack not in NIAH_HAYSTACKS:
            raise ValueError(f"source haystack {self.haystack!r} is unknown. Fix: use one of {list(NIAH_HAYSTACKS)}")
        if self.exclude_shipped and self.dataset != "full":
            raise ValueError("exclude_shipped needs dataset: full (the shipped questions are all there is otherwise)")
        if self.kind == "file" and not self.path:
            raise ValueError("source kind 'file' needs 'path'. Fix: give a jsonl / parquet file or a dataset folder")
        return self


class ChunkingConfig(Config):
    low: int = 128  # chunk size range in tokens; each document draws its size from it (seeded)
    high: int = 1024
    counter: Literal["words", "tokenizer"] = "words"  # words: pipeline.chunking.WordEstimate (1.5 tokens a word, ...) | tokenizer: exact counts
    tokenizer: str = ""  # counter 'tokenizer': a Hugging Face folder (or a prepared model name)
    question_budget: float = 0.5  # the most a question may take, as a fraction of the chunk size; longer: rejected

    @model_validator(mode="after")
    def _check(self) -> "ChunkingConfig":
        if not 0 < self.low <= self.high:
            raise ValueError(f"chunking: need 0 < low <= high, got low={self.low}, high={self.high}")
        if self.counter == "tokenizer" and not self.tokenizer:
            raise ValueError("chunking.counter 'tokenizer' needs chunking.tokenizer (a Hugging Face folder)")
        return self


class PartConfig(Config):
    """One teacher over some sources; a run may hold several parts writing into one corpus."""

    name: str
    teacher: dict[str, Any]  # teachers.build_teacher config: {"backend": "rules" | "vllm" | ..., ...}
    sources: list[SourceConfig]
    chunking: ChunkingConfig = Field(default_factory=ChunkingConfig)
    max_rounds: int = 64  # round cap: a document is read in at most this many chunks
    optional: bool = False  # skip the part (saying so) when its teacher's model folder is missing
    engine: EngineConfig | None = None  # this part's Ray settings (default: the run's)

    @model_validator(mode="after")
    def _check(self) -> "PartConfig":
        if not self.sources:
            raise ValueError(f"part {self.name!r} has no sources. Fix: list at least one under 'sources'")
        if self.max_rounds < 1:
            raise ValueError(f"part {self.name!r}: max_rounds must be at least 1")
        return self


def _all_checks() -> list[str]:
    return list(CHECKS)


class FilterConfig(Config):
    min_answer_score: float | None = None  # None: the metric's own pass verdict; a number: score >= it
    max_stream_tokens: int = 32768  # token cap: longer rendered streams are rejected (the training length)
    checks: list[str] = Field(default_factory=_all_checks)  # the verifier's checks to apply (pipeline/verify.py)

    @field_validator("checks")
    @classmethod
    def _known_checks(cls, checks: list[str]) -> list[str]:
        return list(check_names(checks))


class EngineConfig(Config):
    """How teaching runs on Ray. Changes here do not change what is written, so resume ignores them."""

    num_actors: int = 0  # 0: one per GPU of the cluster for LLM teachers, else one
    # Documents one actor reads at once. 0: twice its engine's slots (vLLM's max_num_seqs), so a document waiting on
    # its next round's prompt never leaves a slot empty; 16 where the teacher has no engine slots.
    max_in_flight: int = Field(0, ge=0)
    num_cpus: float = 1  # per actor where it gets no GPU
    num_gpus: float | None = None  # per actor; None: 1 for LLM teachers when the cluster has GPUs, else 0
    resources: dict[str, float] = Field(default_factory=dict)  # custom Ray resources per actor (e.g. {teacher: 1})
    max_restarts: int = 4  # Ray restarts of a dead actor
    max_attempts: int = 3  # tries of one document before it is rejected with its last error
    restart_timeout_s: float = 600.0  # how long to wait for a restarted actor before going on without it
    progress_interval_s: float = 10.0


class GenerateConfig(Config):
    parts: list[PartConfig]
    seed: int = 0
    shard_size: int = 256
    filter: FilterConfig = Field(default_factory=FilterConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)

    @model_validator(mode="after")
    def _check(self) -> "GenerateConfig":
        if not self.parts:
            raise ValueError("the config has no parts. Fix: list at least one part (a teacher and its sources)")
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise ValueError(f"part names {names} repeat. Fix: give every part its own name")
        return self

    @property
    def needs_prepared_data(self) -> bool:
        """Whether any source of any part reads the files `smooth-reading prepare-data` fetches."""
        return any(source.needs_prepared_data for part in self.parts for source in part.sources)

    def content_hash(self) -> str:
        """Hash of what decides the records (Ray settings and optional do not): resume requires it unchanged."""
        return super().content_hash(exclude={"engine": True, "parts": {"__all__": {"optional", "engine"}}})


def config_from_dict(values: dict[str, Any]) -> GenerateConfig:
    if isinstance(values, dict) and "fault" in values:
        values = dict(values)
        # Older versions saved test-only fault settings (all off) into every corpus's config.yaml; faults are now
        # injected by the tests from outside the job (tests/faults.py), so only the all-off block is accepted.
        if any((values.pop("fault") or {}).values()):
            raise ValueError("config: 'fault' settings are no longer part of the job. Fix: remove the 'fault' block")
    return GenerateConfig.from_values(values, "config")


def load_config(path: str | Path) -> GenerateConfig:
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    try:
        return config_from_dict(values)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def missing_model(teacher: dict[str, Any]) -> str | None:
    """The local model folder a teacher config names when it does not exist (None when present or remote)."""
    model = teacher.get("model")
    if not model or teacher.get("backend") == "openai":
        return None
    path = Path(resolve_model(model)).expanduser()
    if model in PREPARED_MODELS:
        return None if is_prepared(path) else str(path)
    # Anything else that is not a path (a Hub name such as org/model) is left to the engine to find.
    looks_local = path.is_absolute() or model.startswith((".", "~"))
    return str(path) if looks_local and not path.is_dir() else None
