"""Training data for the students: EMR streams tokenized with their loss masks, packed into batch-1 rows.

Three steps, each a pure function of its inputs so that a resumed run reads exactly what an uninterrupted one would:

1. `tokenize_stream` renders nothing itself: it tokenizes a rendered stream and labels every token from the roles
   of the characters it covers (-100 on query and chunk tokens, the token id on summary, action and answer tokens).
2. `TokenizedCorpus.build` streams trajectories (from the parquet shards) through the tokenizer once and writes the
   token ids and loss mask as flat memory-mapped arrays, so training never re-tokenizes and reads any stream in O(1).
3. `PackedBatches` orders the streams by a shuffle keyed on (seed, epoch, each stream's content hash), so the order
   does not depend on how the corpus is sharded or in which order it was written; it packs them next-fit into
   rows of at most `seq_len` tokens with `cu_seqlens` and position ids that restart at every document, and hands out
   the rows of optimizer step `step` of epoch `epoch`. The position in the data is therefore `DataPosition(epoch,
   step)`: two integers a checkpoint stores.

A stream longer than `seq_len` is dropped (and counted), never truncated or split: a truncated EMR stream loses its
answer, and a split one would start mid-document without the question, teaching the student to read without a task.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.files import staged_folder
from pipeline.stream import RenderedStream, loss_mask_for_offsets
from pipeline.trajectory import Trajectory

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # labels with this value carry no loss (the Hugging Face convention)


@dataclass(frozen=True)
class TokenizedStream:
    input_ids: list[int]
    loss_mask: list[bool]  # True where the token is trained on

    @property
    def labels(self) -> list[int]:
        return [t if m else IGNORE_INDEX for t, m in zip(self.input_ids, self.loss_mask)]


def tokenize_stream(stream: RenderedStream, tokenizer) -> TokenizedStream:
    """Token ids and loss mask of one rendered stream, from the tokenizer's character offsets.

    The tokenizer's own special tokens (a BOS, for Llama's) are added exactly as students.reading feeds the stream at
    inference; they cover no character of the text, so the mask gives them no loss.
    """
    enc = tokenizer(stream.text, add_special_tokens=True, return_offsets_mapping=True)
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    return TokenizedStream(list(enc["input_ids"]), loss_mask_for_offsets(stream.spans, offsets))


def tokenize_trajectory(trajectory: Trajectory, tokenizer) -> TokenizedStream:
    return tokenize_stream(trajectory.render(), tokenizer)


def tokenizer_hash(tokenizer) -> str:
    """Identifies a tokenizer by its full serialized definition (vocabulary, merges, special tokens)."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]


class TokenizedCorpus:
    """Token ids and loss masks of every stream of a corpus, as flat arrays on disk.

    Files: `tokens.npy` (int32, all streams back to back), `loss_mask.npy` (uint8), `offsets.npy` (int64, stream i
    is tokens[offsets[i]:offsets[i+1]]) and `meta.json` (what they were made from, so a stale cache is never used,
    and each stream's document id and content hash).
    """

    FORMAT = 2  # 2: meta.json holds content_hashes

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.meta = json.loads((self.directory / "meta.json").read_text())
        self.content_hashes: list[str] = self.meta["content_hashes"]
        self.tokens = np.load(self.directory / "tokens.npy", mmap_mode="r")
        self.loss_mask = np.load(self.directory / "loss_mask.npy", mmap_mode="r")
        self.offsets = np.load(self.directory / "offsets.npy")
        self.lengths = np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    def stream(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.offsets[index], self.offsets[index + 1]
        return np.asarray(self.tokens[start:end]), np.asarray(self.loss_mask[start:end], dtype=bool)

    @classmethod
    def build(cls, trajectories: Iterable[Trajectory], tokenizer, directory: str | Path, source: dict) -> "TokenizedCorpus":
        """Tokenize `trajectories` in one streaming pass; reuse the directory when it was built from the same source.

        `source` identifies the input (corpus manifest hash, tokenizer hash): a directory built from another source is
        rebuilt. Tokens are appended to a file as they come, so memory stays flat however large the corpus is.
        """
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            if meta.get("source") == source and meta.get("format") == cls.FORMAT:
                return cls(directory)

        with staged_folder(directory) as staging:
            offsets, document_ids, content_hashes = [0], [], []
            with open(staging / "tokens.bin", "wb") as tok_f, open(staging / "mask.bin", "wb") as mask_f:
                for trajectory in trajectories:
                    stream = tokenize_trajectory(trajectory, tokenizer)
                    tok_f.write(np.asarray(stream.input_ids, dtype=np.int32).tobytes())
                    mask_f.write(np.asarray(stream.loss_mask, dtype=np.uint8).tobytes())
                    offsets.append(offsets[-1] + len(stream.input_ids))
                    document_ids.append(trajectory.document_id)
                    content_hashes.append(trajectory.content_hash())
            if len(offsets) == 1:
                raise ValueError(f"the corpus has no trajectories to train on (source {source}); generate a corpus first")
            _bin_to_npy(staging / "tokens.bin", staging / "tokens.npy", np.int32)
            _bin_to_npy(staging / "mask.bin", staging / "loss_mask.npy", np.uint8)
            np.save(staging / "offsets.npy", np.asarray(offsets, dtype=np.int64))
            meta = {"format": cls.FORMAT, "source": source, "num_streams": len(document_ids),
                    "num_tokens": offsets[-1], "document_ids": document_ids, "content_hashes": content_hashes}
            (staging / "meta.json").write_text(json.dumps(meta))
        return cls(directory)


def _bin_to_npy(raw: Path, out: Path, dtype) -> None:
    """Wrap a raw binary file as .npy without loading it (the header is written, then the data copied in blocks)."""
    count = raw.stat().st_size // np.dtype(dtype).itemsize
    array = np.lib.format.open_memmap(out, mode="w+", dtype=dtype, shape=(count,))
    block = 1 << 24
    with open(raw, "rb") as f:
        for start in range(0, count, block):
            chunk = np.frombuffer(f.read(block * np.dtype(dtype).itemsize), dtype=dtype)
            array[start : start + len(chunk)] = chunk
    array.flush()
    del array
    raw.unlink()


@dataclass(frozen=True, order=True)
class DataPosition:
    """Where a run is in its data: optimizer step `step` of epoch `epoch` is the next one to train."""

    epoch: int = 0
    step: int = 0


@dataclass(frozen=True)
class PackedRow:
    """One micro-batch: documents back to back in a batch-1 row; attention and state never cross cu_seqlens."""

    input_ids: torch.Tensor  # [1, L] long
    labels: torch.Tensor  # [1, L] long, IGNORE_INDEX where there is no loss
    position_ids: torch.Tensor  # [1, L] long, restarting at 0 at every document
    cu_seqlens: torch.Tensor  # [documents + 1] int32: 0, end_1, ..., L
    stream_indices: tuple[int, ...]

    @property
    def num_tokens(self) -> int:
        return self.input_ids.shape[1]

    def model_inputs(self, device) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids.to(device),
            "labels": self.labels.to(device),
            "position_ids": self.position_ids.to(device),
            "cu_seqlens": self.cu_seqlens.to(device),
        }


def shuffled_order(keys: list[str], seed: int, epoch: int) -> list[int]:
    """Indices of `keys` in an order that depends on (seed, epoch) and on each key, not on where a key stands.

    Keyed on content, the order of a corpus is the same however its shards are laid out: a stream's place is
    sha256(seed, epoch, its content hash), ties (identical streams) kept in index order.
    """
    ranks = [hashlib.sha256(f"{seed}:{epoch}:{key}".encode()).digest() for key in keys]
    return sorted(range(len(keys)), key=lambda i: (ranks[i], i))


def pack_rows(lengths: np.ndarray, keys: list[str], seq_len: int, seed: int, epoch: int) -> list[tuple[int, ...]]:
    """Stream indices of every row of an epoch: the (seed, epoch) shuffle of `keys`, packed next-fit into `seq_len`.

    Streams longer than `seq_len` are left out (see `count_too_long`).
    """
    rows, row, used = [], [], 0
    for index in shuffled_order(keys, seed, epoch):
        length = int(lengths[index])
        if length > seq_len:
            continue
        if used + length > seq_len:
            rows.append(tuple(row))
            row, used = [], 0
        row.append(index)
        used += length
    if row:
        rows.append(tuple(row))
    return rows


def fitted_seq_len(lengths: np.ndarray, multiple: int = 256) -> int:
    """The shortest training length, in whole `multiple`s, that holds every stream: nothing is left out."""
    return int(-(-int(np.max(lengths)) // multiple) * multiple)


def count_too_long(lengths: np.ndarray, seq_len: int) -> int:
    return int((np.asarray(lengths) > seq_len).sum())


class PackedBatches:
    """The rows each rank trains on at each optimizer step, as a pure function of (seed, epoch, step).

    One optimizer step consumes `rows_per_step = gradient_accumulation * world_size` rows: micro-step m of rank r takes
    row `step * rows_per_step + m * world_size + r`. An epoch has `len(rows) // rows_per_step` steps; the rows left
    over are dropped so that every step has the same number of micro-batches on every rank.
    """

    def __init__(
        self, corpus: TokenizedCorpus, seq_len: int, seed: int, gradient_accumulation: int = 1,
        rank: int = 0, world_size: int = 1,
    ):
        self.corpus, self.seq_len, self.seed = corpus, seq_len, seed
        self.gradient_accumulation, self.rank, self.world_size = gradient_accumulation, rank, world_size
        self.rows_per_step = gradient_accumulation * world_size
        self._epoch_rows: tuple[int, list[tuple[int, ...]]] | None = None
        self.dropped_too_long = count_too_long(corpus.lengths, seq_len)
        if self.dropped_too_long:
            log.warning(
                "%d of %d streams are longer than seq_len=%d tokens and are left out of training (never truncated: "
                "an EMR stream cut short loses its answer); raise seq_len or generate with smaller chunks to keep them",
                self.dropped_too_long, len(corpus), seq_len,
            )
        if self.steps_in_epoch(0) == 0:
            raise ValueError(
                f"the corpus packs into {len(self._rows(0))} row(s) of {seq_len} tokens, fewer than one optimizer step "
                f"needs ({self.rows_per_step} = gradient accumulation {gradient_accumulation} x world size "
                f"{world_size}); use a larger corpus, a shorter seq_len or less gradient accumulation"
            )

    def _rows(self, epoch: int) -> list[tuple[int, ...]]:
        if self._epoch_rows is None or self._epoch_rows[0] != epoch:
            rows = pack_rows(self.corpus.lengths, self.corpus.content_hashes, self.seq_len, self.seed, epoch)
            self._epoch_rows = (epoch, rows)
        return self._epoch_rows[1]

    def steps_in_epoch(self, epoch: int) -> int:
        return len(self._rows(epoch)) // self.rows_per_step

    def next_position(self, position: DataPosition) -> DataPosition:
        if position.step + 1 < self.steps_in_epoch(position.epoch):
            return DataPosition(position.epoch, position.step + 1)
        return DataPosition(position.epoch + 1, 0)

    def micro_batches(self, position: DataPosition) -> list[PackedRow]:
        """This rank's rows for the optimizer step at `position`, one per gradient-accumulation micro-step."""
        rows = self._rows(position.epoch)
        first = position.step * self.rows_per_step
        return [
            self.packed_row(rows[first + m * self.world_size + self.rank]) for m in range(self.gradient_accumulation)
        ]

    def packed_row(self, stream_indices: tuple[int, ...]) -> PackedRow:
        return pack_streams([self.corpus.stream(i) for i in stream_indices], stream_indices)


def pack_streams(streams: list[tuple[np.ndarray, np.ndarray]], stream_indices: tuple[int, ...] = ()) -> PackedRow:
    """One batch-1 row from (token ids, loss mask) pairs, with document boundaries and per-document positions.

    The first token of every document gets no loss: the causal-LM shift would otherwise train the previous document's
    last token to predict the next document's first.
    """
    ids = np.concatenate([s[0] for s in streams]).astype(np.int64)
    mask = np.concatenate([s[1] for s in streams]).astype(bool)
    lengths = [len(s[0]) for s in streams]
    starts = np.cumsum([0] + lengths[:-1])
    mask[starts] = False
    labels = np.where(mask, ids, IGNORE_INDEX)
    positions = np.concatenate([np.arange(n) for n in lengths])
    cu = np.cumsum([0] + lengths)
    return PackedRow(
        input_ids=torch.from_numpy(ids).unsqueeze(0),
        labels=torch.from_numpy(labels).unsqueeze(0),
        position_ids=torch.from_numpy(positions.astype(np.int64)).unsqueeze(0),
        cu_seqlens=torch.from_numpy(cu.astype(np.int32)),
        stream_indices=tuple(stream_indices),
    )
