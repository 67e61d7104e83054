"""Corpus shards: trajectories as parquet files laid out like a Hugging Face dataset repository, resumable.

    OUTPUT/data/train-00000.parquet, train-00001.parquet, ...   finished shards, never rewritten
    OUTPUT/manifest.json      producer and config, counts, per-shard rows and sha256, total teacher tokens
    OUTPUT/rejects.jsonl      every document left out, with the reason and the fix
    OUTPUT/statistics.json    rounds per document, summary lengths, acceptance rate, teacher tokens

Each shard is written to a hidden temp file, fsynced and renamed, so a crash leaves finished shards and at most one
temp file, which the next `CorpusWriter` on the folder discards. Full shards are never rewritten; the last shard,
when it holds fewer than `shard_size` rows, stays open: a resumed run reads it back and rewrites it with the rows
that follow. So a corpus written in one go and one written across any number of interruptions have the same shards,
byte for byte. `datasets.load_dataset("parquet",
data_files=".../data/train-*.parquet")` reads the shards.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.files import write_atomic
from pipeline.rejects import Reject, read_rejects, write_rejects
from pipeline.trajectory import Trajectory

CORPUS_FORMAT = "smooth-reading-corpus/1"
DATA_DIR = "data"
SHARD_PREFIX = "train-"
MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"
STATISTICS = "statistics.json"

_SUMMARY = pa.struct([("target", pa.string()), ("clues", pa.string()), ("reason", pa.string())])
_ROUND = pa.struct([
    ("chunk_index", pa.int64()), ("summary", _SUMMARY), ("action", pa.string()), ("raw", pa.string()),
    ("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()),
])
# Fixed, so every shard has the same schema whatever its rows hold (an empty list has no type to infer).
SCHEMA = pa.schema([
    ("document_id", pa.string()), ("question", pa.string()), ("context", pa.string()),
    ("chunk_ends", pa.list_(pa.int64())), ("rounds", pa.list_(_ROUND)), ("answer", pa.string()),
    ("references", pa.list_(pa.string())), ("teacher", pa.string()), ("answer_passed", pa.bool_()),
    ("answer_score", pa.float64()), ("source", pa.string()), ("metadata", pa.string()),
    ("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()), ("content_hash", pa.string()),
])


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:05d}.parquet"


class CorpusWriter:
    """Appends trajectories to a corpus folder in shards of `shard_size`; reopening a folder resumes it.

    `extra` (the run's config, or its hash) is recorded in the manifest; reopening with a different one is refused,
    so two configurations never mix in one corpus. Use as a context manager: leaving it writes the last, partial
    shard, the manifest and the statistics, also when the run fails, so finished work is kept.
    """

    def __init__(self, output_dir: str | os.PathLike, shard_size: int = 1000, extra: dict[str, Any] | None = None):
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        self.output_dir = Path(output_dir)
        self.shard_size = shard_size
        self.data_dir = self.output_dir / DATA_DIR
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for partial in self.data_dir.glob(".*.tmp"):
            partial.unlink()  # a shard whose write was interrupted; its documents are not in done_ids
        self.manifest = _load_manifest(self.output_dir)
        saved = self.manifest.get("config")
        if saved is not None and extra is not None and saved != extra:
            raise ValueError(
                f"{self.output_dir} holds a corpus made with config {saved}, not {extra}; adding to it would mix two "
                "corpora. Fix: resume with the same config, or write to a new output folder"
            )
        if extra is not None:
            self.manifest["config"] = extra
        self._adopt_unlisted_shards()
        self._done: set[str] = set()
        for shard in self.manifest["shards"]:
            self._done.update(pq.read_table(self.output_dir / shard["path"], columns=["document_id"]).column(0).to_pylist())
        self._rejects = read_rejects(self.output_dir / REJECTS)
        self._reject_keys = {_reject_key(r) for r in self._rejects}
        self._done.update(r.document_id for r in self._rejects if _rejects_document(r))
        self._buffer: list[dict[str, Any]] = []
        self._open_shard: str | None = None  # the partial last shard, whose rows are in the buffer
        shards = self.manifest["shards"]
        if shards and shards[-1]["rows"] < shard_size:
            self._open_shard = shards[-1]["path"]
            self._buffer = pq.read_table(self.output_dir / self._open_shard, schema=SCHEMA).to_pylist()
        self._write_manifest()

    @property
    def done_ids(self) -> frozenset[str]:
        """Documents a resumed run must skip: written to a shard, waiting in the buffer, or rejected."""
        return frozenset(self._done)

    def write(self, trajectory: Trajectory) -> bool:
        """Add one trajectory; False (and nothing written) when its document is already done."""
        if trajectory.document_id in self._done:
            return False
        self._done.add(trajectory.document_id)
        self._buffer.append(trajectory.to_record())
        if len(self._buffer) >= self.shard_size:
            self.flush()
        return True

    def has_reject(self, reject: Reject) -> bool:
        return _reject_key(reject) in self._reject_keys

    def reject(self, reject: Reject) -> bool:
        """Record a reject at once (appended and fsynced); False when the same reject is already recorded."""
        key = _reject_key(reject)
        if key in self._reject_keys:
            return False
        write_rejects(self.output_dir / REJECTS, [reject])
        self._rejects.append(reject)
        self._reject_keys.add(key)
        if _rejects_document(reject):
            self._done.add(reject.document_id)
        self._write_manifest()
        return True

    def flush(self) -> None:
        """Write the buffered trajectories as a shard: the open partial shard if there is one, else a new one."""
        if not self._buffer:
            return
        shards = self.manifest["shards"]
        if self._open_shard is not None:
            shards.pop()  # the buffer starts with this shard's rows; it is rewritten in place
            path = self.output_dir / self._open_shard
        else:
            path = self.data_dir / shard_name(_next_shard_index(shards))
        table = pa.Table.from_pylist(self._buffer, schema=SCHEMA)
        write_atomic(path, lambda tmp: pq.write_table(table, tmp))
        shards.append(_shard_entry(self.output_dir, path))
        full = len(self._buffer) >= self.shard_size
        self._open_shard = None if full else shards[-1]["path"]
        if full:
            self._buffer = []
        self._write_manifest()

    def close(self) -> None:
        self.flush()
        self._write_manifest()
        corpus_statistics(self.output_dir)

    def __enter__(self) -> "CorpusWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _adopt_unlisted_shards(self) -> None:
        # A crash between a shard's rename and the manifest update leaves a finished shard the manifest lacks.
        listed = {s["path"] for s in self.manifest["shards"]}
        for shard in self.manifest["shards"]:
            if not (self.output_dir / shard["path"]).exists():
                raise FileNotFoundError(
                    f"{self.output_dir / shard['path']} is listed in {MANIFEST} but missing. Fix: restore the shard, "
                    "or regenerate the corpus into a new folder"
                )
        for path in sorted(self.data_dir.glob(f"{SHARD_PREFIX}*.parquet")):
            if f"{DATA_DIR}/{path.name}" not in listed:
                self.manifest["shards"].append(_shard_entry(self.output_dir, path))
        self.manifest["shards"].sort(key=lambda s: s["path"])

    def _write_manifest(self) -> None:
        shards = self.manifest["shards"]
        self.manifest["counts"] = {
            "shards": len(shards),
            "trajectories": sum(s["rows"] for s in shards),
            "rejects": len(self._rejects),
        }
        self.manifest["total_tokens"] = {
            "prompt": sum(s["prompt_tokens"] for s in shards),
            "completion": sum(s["completion_tokens"] for s in shards),
        }
        text = json.dumps(self.manifest, indent=2, sort_keys=True) + "\n"
        path = self.output_dir / MANIFEST
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _rejects_document(reject: Reject) -> bool:
    # A reject on 'id' is about a record repeating an id: the first document with that id is still to be done.
    return bool(reject.document_id) and reject.field != "id"


def _reject_key(reject: Reject) -> str:
    return json.dumps(reject.to_dict(), sort_keys=True)


def _next_shard_index(shards: list[dict[str, Any]]) -> int:
    indices = [int(Path(s["path"]).name[len(SHARD_PREFIX):].split(".")[0]) for s in shards]
    return max(indices, default=-1) + 1


def _shard_entry(output_dir: Path, path: Path) -> dict[str, Any]:
    tokens = pq.read_table(path, columns=["prompt_tokens", "completion_tokens"])
    return {
        "path": f"{DATA_DIR}/{path.name}",
        "rows": tokens.num_rows,
        "sha256": _sha256(path),
        "prompt_tokens": int(sum(tokens.column("prompt_tokens").to_pylist())),
        "completion_tokens": int(sum(tokens.column("completion_tokens").to_pylist())),
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _producer() -> dict[str, str]:
    try:
        version = importlib_metadata.version("smooth-reading")
    except importlib_metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": "smooth-reading", "version": version}


def _load_manifest(output_dir: Path) -> dict[str, Any]:
    path = output_dir / MANIFEST
    if not path.exists():
        return {"format": CORPUS_FORMAT, "producer": _producer(), "shards": []}
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != CORPUS_FORMAT:
        raise ValueError(
            f"{path} has format {manifest.get('format')!r}, not {CORPUS_FORMAT!r}. Fix: point at a corpus folder "
            "written by pipeline.corpus.CorpusWriter"
        )
    return manifest


def _shard_paths(corpus_dir: Path, verify: bool) -> list[Path]:
    manifest_path = corpus_dir / MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(
            f"{manifest_path} not found. Fix: point at a corpus folder written by pipeline.corpus.CorpusWriter"
        )
    manifest = _load_manifest(corpus_dir)
    paths = []
    for shard in manifest["shards"]:
        path = corpus_dir / shard["path"]
        if verify and _sha256(path) != shard["sha256"]:
            raise ValueError(
                f"{path} changed since it was written (its sha256 differs from {MANIFEST}). Fix: restore the shard, "
                "or regenerate the corpus"
            )
        paths.append(path)
    return paths


def read_corpus(corpus_dir: str | os.PathLike, verify: bool = True) -> Iterator[Trajectory]:
    """Every trajectory of a corpus, shard by shard in order; `verify` checks each shard against its sha256."""
    for path in _shard_paths(Path(corpus_dir), verify):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            for record in batch.to_pylist():
                yield Trajectory.from_record(record)


def corpus_statistics(corpus_dir: str | os.PathLike) -> dict[str, Any]:
    """What a corpus holds, also written to statistics.json next to the shards."""
    from pipeline.verify import verifier_statistics

    corpus_dir = Path(corpus_dir)
    columns = ["document_id", "chunk_ends", "rounds", "answer_passed", "answer_score", "source",
               "prompt_tokens", "completion_tokens", "teacher"]
    rounds, chunks, summary_words, prompt, completion, scores = [], [], [], [], [], []
    passed = early = 0
    sources: Counter[str] = Counter()
    hints: Counter[str] = Counter()
    for path in _shard_paths(corpus_dir, verify=False):
        for row in pq.read_table(path, columns=columns).to_pylist():
            rounds.append(len(row["rounds"]))
            chunks.append(len(row["chunk_ends"]))
            early += len(row["rounds"]) < len(row["chunk_ends"])
            summary_words.extend(
                sum(len(r["summary"][f].split()) for f in ("target", "clues", "reason")) for r in row["rounds"]
            )
            prompt.append(row["prompt_tokens"])
            completion.append(row["completion_tokens"])
            scores.append(row["answer_score"])
            passed += bool(row["answer_passed"])
            sources[row["source"]] += 1
            hints[json.loads(row["teacher"]).get("hint") or "none"] += 1
    rejects = read_rejects(corpus_dir / REJECTS)
    n = len(rounds)
    stats = {
        "documents": n,
        "rejects": len(rejects),
        "rejects_by_stage": dict(sorted(Counter(r.stage or "unknown" for r in rejects).items())),
        "acceptance_rate": n / (n + len(rejects)) if n + len(rejects) else 0.0,
        "answer_pass_rate": passed / n if n else 0.0,
        "answer_score_mean": sum(scores) / n if n else 0.0,
        "rounds_per_document": _describe(rounds),
        "rounds_histogram": {str(k): v for k, v in sorted(Counter(rounds).items())},
        "chunks_per_document": _describe(chunks),
        "early_stop_rate": early / n if n else 0.0,
        "summary_words": _describe(summary_words),
        "teacher_tokens": {
            "prompt": sum(prompt), "completion": sum(completion),
            "prompt_per_document": sum(prompt) / n if n else 0.0,
            "completion_per_document": sum(completion) / n if n else 0.0,
        },
        "sources": dict(sorted(sources.items())),
        "verifier": verifier_statistics(hints, rejects),
    }
    text = json.dumps(stats, indent=2, sort_keys=True) + "\n"
    write_atomic(corpus_dir / STATISTICS, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return stats


def _describe(values: list[int]) -> dict[str, float]:
    if not values:
        return {"count": 0, "mean": 0.0, "min": 0, "p50": 0, "p95": 0, "max": 0}
    ordered = sorted(values)

    def rank(q: float) -> int:  # nearest-rank percentile
        return ordered[max(0, math.ceil(len(ordered) * q) - 1)]

    return {"count": len(values), "mean": sum(values) / len(values), "min": ordered[0], "p50": rank(0.5),
            "p95": rank(0.95), "max": ordered[-1]}
