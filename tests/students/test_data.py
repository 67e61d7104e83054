"""Training data: the loss mask of a tokenized EMR stream, packing, and the data order a checkpoint can resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.stream import ACTION_TOKEN, END, Summary, render_chunk, render_prefix
from pipeline.trajectory import TeacherRound, Trajectory
from students.data import (
    IGNORE_INDEX,
    DataPosition,
    PackedBatches,
    TokenizedCorpus,
    pack_rows,
    pack_streams,
    tokenize_trajectory,
    tokenizer_hash,
)

DATA_DIR = Path(__file__).resolve().parents[2] / "pipeline" / "data"


def hotpot_trajectories(count: int, max_paragraphs: int = 3) -> list[Trajectory]:
    """Trajectories over the shipped HotpotQA paragraphs: one chunk per paragraph, STOP on the last one."""
    items = json.loads((DATA_DIR / "hotpotqa_distractor_dev100.json").read_text())[:count]
    out = []
    for item in items:
        paragraphs = ["".join(item["para_a"])] + ["".join(s) for _t, s, *_ in item["distractors"]] + ["".join(item["para_b"])]
        paragraphs = paragraphs[: max_paragraphs - 1] + paragraphs[-1:]
        context, ends = "", []
        for p in paragraphs:
            context += p + "\n\n"
            ends.append(len(context))
        rounds = tuple(
            TeacherRound(
                chunk_index=i,
                summary=Summary(f"Answer: {item['question']}", f"paragraph {i + 1} read", "it may hold the answer"),
                action="STOP" if i == len(paragraphs) - 1 else "READ",
            )
            for i in range(len(paragraphs))
        )
        out.append(
            Trajectory(
                document_id=item["_id"], question=item["question"], context=context, chunk_ends=tuple(ends),
                rounds=rounds, answer=item["answer"], references=(item["answer"],), teacher={"name": "test"},
            )
        )
    return out


def test_loss_mask_covers_exactly_summaries_actions_and_answer(stream_tokenizer):
    trajectory = hotpot_trajectories(1, max_paragraphs=3)[0]
    stream = tokenize_trajectory(trajectory, stream_tokenizer)

    # Decode each run of tokens that share a mask value: the runs must alternate between what the reader feeds
    # (query, chunks with their markers) and what the model writes (summary + action, and the answer at the end).
    runs: list[tuple[bool, list[int]]] = []
    for token, trained in zip(stream.input_ids, stream.loss_mask):
        if runs and runs[-1][0] == trained:
            runs[-1][1].append(token)
        else:
            runs.append((trained, [token]))
    decoded = [(trained, stream_tokenizer.decode(ids, skip_special_tokens=False)) for trained, ids in runs]

    chunks = trajectory.chunks
    expected = [(False, render_prefix(trajectory.question) + render_chunk(chunks[0]))]
    for i, r in enumerate(trajectory.rounds):
        written = r.summary.render() + ACTION_TOKEN[r.action]
        if r.action == "STOP":
            written += trajectory.answer + END
        expected.append((True, written))
        if i + 1 < len(trajectory.rounds):
            expected.append((False, render_chunk(chunks[i + 1])))
    assert decoded == expected

    labels = stream.labels
    assert all((label == IGNORE_INDEX) != trained for label, trained in zip(labels, stream.loss_mask))
    assert all(label == token for label, token in zip(labels, stream.input_ids) if label != IGNORE_INDEX)


def test_pack_rows_uses_every_short_stream_once_and_leaves_out_long_ones():
    lengths = np.array([5, 30, 7, 12, 3, 50, 9, 10])
    rows = pack_rows(lengths, [f"h{i}" for i in range(8)], seq_len=20, seed=3, epoch=0)
    used = [i for row in rows for i in row]
    assert sorted(used) == [0, 2, 3, 4, 6, 7]  # 30 and 50 do not fit in 20 tokens
    assert all(sum(lengths[list(row)]) <= 20 for row in rows)


def test_sample_order_is_a_function_of_seed_epoch_and_content_not_of_corpus_order():
    lengths, keys = np.arange(1, 41), [f"hash-{i}" for i in range(40)]
    assert pack_rows(lengths, keys, 64, seed=1, epoch=2) == pack_rows(lengths, keys, 64, seed=1, epoch=2)
    assert pack_rows(lengths, keys, 64, seed=1, epoch=2) != pack_rows(lengths, keys, 64, seed=1, epoch=3)
    assert pack_rows(lengths, keys, 64, seed=1, epoch=2) != pack_rows(lengths, keys, 64, seed=2, epoch=2)
    # The same streams stored in another order (another sharding) give the same rows of the same streams.
    moved = np.random.default_rng(0).permutation(40)
    rows = pack_rows(lengths[moved], [keys[i] for i in moved], 64, seed=1, epoch=2)
    assert [tuple(int(moved[i]) for i in row) for row in rows] == pack_rows(lengths, keys, 64, seed=1, epoch=2)


def test_packed_row_restarts_positions_and_trains_no_token_across_a_boundary():
    a = (np.array([10, 11, 12]), np.array([True, True, True]))
    b = (np.array([20, 21]), np.array([True, False]))
    row = pack_streams([a, b], (4, 9))
    assert row.input_ids.tolist() == [[10, 11, 12, 20, 21]]
    assert row.cu_seqlens.tolist() == [0, 3, 5]
    assert row.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    # The first token of each document is never a target: predicting it would cross from the previous document.
    assert row.labels.tolist() == [[IGNORE_INDEX, 11, 12, IGNORE_INDEX, IGNORE_INDEX]]
    assert row.stream_indices == (4, 9)


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory, stream_tokenizer) -> TokenizedCorpus:
    source = {"corpus": "hotpot-12", "tokenizer_hash": tokenizer_hash(stream_tokenizer)}
    return TokenizedCorpus.build(
        hotpot_trajectories(12), stream_tokenizer, tmp_path_factory.mktemp("tok") / "tokenized", source
    )


def test_tokenized_corpus_holds_each_stream_as_tokenized_and_is_reused(tokenized, stream_tokenizer):
    trajectories = hotpot_trajectories(12)
    assert len(tokenized) == 12
    for i in (0, 7, 11):
        ids, mask = tokenized.stream(i)
        expected = tokenize_trajectory(trajectories[i], stream_tokenizer)
        assert ids.tolist() == expected.input_ids and mask.tolist() == expected.loss_mask

    def never_read():
        raise AssertionError("a cache built from the same source must not read the corpus again")
        yield

    again = TokenizedCorpus.build(never_read(), stream_tokenizer, tokenized.directory, tokenized.meta["source"])
    assert again.num_tokens == tokenized.num_tokens


def test_tokenized_corpus_is_rebuilt_for_another_source(tmp_path, stream_tokenizer):
    first = TokenizedCorpus.build(hotpot_trajectories(2), stream_tokenizer, tmp_path / "t", {"corpus": "a"})
    second = TokenizedCorpus.build(hotpot_trajectories(3), stream_tokenizer, tmp_path / "t", {"corpus": "b"})
    assert (len(first), len(second)) == (2, 3)


def test_ranks_split_each_step_and_positions_roll_over_epochs(tokenized):
    seq_len = int(tokenized.lengths.max()) * 2
    one = PackedBatches(tokenized, seq_len, seed=0, gradient_accumulation=2)
    ranks = [PackedBatches(tokenized, seq_len, seed=0, gradient_accumulation=1, rank=r, world_size=2) for r in (0, 1)]
    position, seen = DataPosition(0, 0), []
    for _ in range(one.steps_in_epoch(0)):
        together = [row.stream_indices for row in one.micro_batches(position)]
        seen += together
        split = [ranks[r].micro_batches(position)[0].stream_indices for r in (0, 1)]
        # Same rows for the step, each rank a different one of them.
        assert sorted(together) == sorted(split) and split[0] != split[1]
        position = one.next_position(position)
    assert position == DataPosition(1, 0)
    assert len({i for row in seen for i in row}) == sum(len(r) for r in seen)  # nothing twice in an epoch


def test_too_small_a_corpus_says_how_to_fix_it(tokenized):
    with pytest.raises(ValueError, match="fewer than one optimizer step"):
        PackedBatches(tokenized, seq_len=10**6, seed=0, gradient_accumulation=4)


@pytest.mark.parametrize("kind", ["swa", "gla"])
def test_document_b_does_not_see_document_a_in_a_packed_row(kind):
    from transformers import AutoModelForCausalLM

    from students.gla import GatedLinearAttentionConfig, GatedLinearAttentionForCausalLM
    from students.swa import sliding_window_config
    from students.train import packed_row_inputs

    torch.manual_seed(0)
    shared = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    if kind == "swa":
        model = AutoModelForCausalLM.from_config(sliding_window_config(64, num_key_value_heads=1, **shared))
    else:
        model = GatedLinearAttentionForCausalLM(GatedLinearAttentionConfig(**shared))
    model.eval()
    rng = np.random.default_rng(0)
    doc_a, doc_b = rng.integers(0, 97, 23), rng.integers(0, 97, 17)
    other_a = rng.integers(0, 97, 23)
    with torch.no_grad():
        logits = []
        for a in (doc_a, other_a):
            row = pack_streams([(a, np.ones(23, bool)), (doc_b, np.ones(17, bool))])
            inputs = packed_row_inputs(model, row.model_inputs("cpu"))
            inputs.pop("labels")
            logits.append(model(**inputs).logits[0])
        alone = model(input_ids=torch.as_tensor(doc_b).unsqueeze(0)).logits[0]
    assert not torch.equal(logits[0][:23], logits[1][:23])  # document A did change
    assert torch.equal(logits[0][23:], logits[1][23:])  # document B did not
    torch.testing.assert_close(logits[0][23:], alone, rtol=1e-5, atol=1e-5)


def test_stream_tokenizer_gives_each_digit_its_own_token_and_decodes_losslessly(stream_tokenizer):
    text = "The special magic number for quiet-dolphin is: 3701443.\n<READ> 1999 or 2024?"
    ids = stream_tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = [stream_tokenizer.decode([i]) for i in ids]
    digits = [p.strip() for p in pieces if any(c.isdigit() for c in p)]
    assert digits == list("3701443") + list("1999") + list("2024")  # a needle value is copied digit by digit
    assert "<READ>" in pieces and stream_tokenizer.decode(ids) == text
