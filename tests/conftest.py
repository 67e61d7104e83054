"""Fixtures every test folder shares: a tokenizer trained on the shipped data and a tiny Llama built in code.

Nothing is downloaded: both are made from pipeline/data in a few hundred milliseconds.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

# Triton fixes its own library as compiled or interpreted at its first import, and any test module may import it
# first (transformers does). Without CUDA, import it here, before collection, in interpreter mode, then clear the
# variable: tests/kernels sets it per test to run the Triton kernels; every other test keeps the PyTorch path.
if not torch.cuda.is_available() and "triton" not in sys.modules:
    os.environ["TRITON_INTERPRET"] = "1"
    import triton.language  # noqa: F401

    del os.environ["TRITON_INTERPRET"]

DATA_DIR = Path(__file__).resolve().parents[1] / "pipeline" / "data"


def shipped_texts() -> list[str]:
    hotpot = json.loads((DATA_DIR / "hotpotqa_distractor_dev100.json").read_text())
    texts = []
    for q in hotpot:
        texts.append(q["question"] + " " + q["answer"])
        texts.append("".join(q["para_a"]) + "\n\n" + "".join(q["para_b"]))
        texts.extend("".join(sentences) for _title, sentences, *_ in q["distractors"])
    texts.append("Target: Clues: Reason: Answer: The special magic number for is:")
    return texts


@pytest.fixture(scope="session")
def stream_tokenizer():
    from students.tokenizer import train_stream_tokenizer

    return train_stream_tokenizer(shipped_texts(), vocab_size=1024)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, stream_tokenizer) -> Path:
    """A 2-layer Llama (hidden 64, head dim 32) with the stream tokenizer, saved as a Hugging Face folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(stream_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=4096,
        bos_token_id=stream_tokenizer.bos_token_id, eos_token_id=stream_tokenizer.eos_token_id,
        pad_token_id=stream_tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(out)
    stream_tokenizer.save_pretrained(out)
    return out
