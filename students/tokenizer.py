"""Tokenizers that know the stream's special tokens: trained from scratch, or extended from a checkpoint's."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from pipeline.stream import END, SPECIAL_TOKENS

BOS, PAD = "<s>", "<pad>"

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
