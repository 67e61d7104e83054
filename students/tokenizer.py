"""Tokenizers that know the stream's special tokens: trained from scratch, or extended from a checkpoint's."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from pipeline.stream import CHUNK, END, QUERY, READ, SPECIAL_TOKENS, STOP, SUMMARY

BOS, PAD = "<s>", "<pad>"

# What each stream marker means, in words. A marker new to a pretrained tokenizer starts as the mean embedding of
# its meaning's tokens: markers that start equal (transformers' mean resizing gives every new row the same vector)
# also score equal under tied embeddings, and a converted SmolLM2 then wrote its chat EOS where <STOP> belonged.
# `<end>` means the tokenizer's own end of sequence, which the parent already ends answers with.
STREAM_TOKEN_MEANINGS: dict[str, str] = {
    QUERY: "Question:", CHUNK: "Text:", SUMMARY: "Summary:", READ: "continue reading", STOP: "stop reading and answer",
    END: "",
}

# Plain-text turns so that any tokenizer can render it; `<end>` closes a turn, as it closes a stream.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<s>' + message['role'] + '\n' + message['content'] + '<end>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<s>assistant\n' }}{% endif %}"
)


def train_stream_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts`, with the stream markers as single special tokens.

    Digits are split one per token, as Llama's and Qwen2's tokenizers do: a number is then copied digit by digit,
    which a small student learns far sooner than copying whatever multi-digit pieces BPE would merge.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, *SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=END, pad_token=PAD,
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t != END],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def add_stream_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Add the stream markers to an existing tokenizer as special tokens; returns how many were new.

    The caller resizes the model's embeddings by the same amount (students.convert does).
    """
    missing = [t for t in SPECIAL_TOKENS if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
    if not missing:
        return 0
    return tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)


def resize_for_stream_tokens(model, tokenizer: PreTrainedTokenizerBase) -> int:
    """Grow `model`'s embeddings to `tokenizer`; each new stream marker starts as the mean embedding of the tokens
    of its meaning (STREAM_TOKEN_MEANINGS; `<end>`: the tokenizer's EOS). Returns how many rows were added."""
    import torch

    old = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= old:
        return 0
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)  # rows without a meaning keep the mean
    inputs = model.get_input_embeddings().weight
    outputs = model.get_output_embeddings()
    untied = outputs is not None and outputs.weight.data_ptr() != inputs.data_ptr()
    with torch.no_grad():
        for token, meaning in STREAM_TOKEN_MEANINGS.items():
            row = tokenizer.convert_tokens_to_ids(token)
            if row is None or row < old:
                continue
            if meaning:
                ids = tokenizer(meaning, add_special_tokens=False)["input_ids"]
            else:
                ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
            ids = [i for i in ids if i < old]
            if not ids:
                continue
            inputs[row] = inputs[ids].mean(0)
            if untied:
                outputs.weight[row] = outputs.weight[ids].mean(0)
    return len(tokenizer) - old
