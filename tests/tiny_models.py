"""Tiny models made in code, shared by the tests and the benchmarks: nothing is downloaded.

A tokenizer trained on the shipped data with the stream's special tokens, a 2-layer Llama (hidden 64, head dim 32)
saved as a Hugging Face folder, and a logit bias that keeps a random-weight teacher reading to its round cap.
"""

from __future__ import annotations

import json
from pathlib import Path

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


def train_tiny_tokenizer():
    from students.tokenizer import train_stream_tokenizer

    return train_stream_tokenizer(shipped_texts(), vocab_size=1024)


def save_tiny_llama(folder: Path, tokenizer) -> Path:
    """A 2-layer Llama (hidden 64, head dim 32) with `tokenizer`, saved as a Hugging Face folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def stop_spelling_bias(tokenizer) -> dict[int, float]:
    """A logit bias against every token that could begin writing <STOP>.

    A random model's greedy action is arbitrary; biased this way it reads on until the structured-output regex
    of the final round allows nothing but <STOP>, so every document reads to the round cap.
    """
    bias = {}
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id]).lstrip("\n").lstrip("<")
        if text and "STOP>".startswith(text[:5]) and text[:1] == "S":
            bias[token_id] = -100.0
    return bias
