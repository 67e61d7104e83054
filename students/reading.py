"""Smooth Reading inference: end-to-end multi-round reading (EMR) in one continuous stream, and the one-round baseline.

The reader feeds the question once, then each chunk; after each chunk the model writes its summary and an action
greedily. The cache is carried from round to round and nothing is ever fed twice (no re-prefill), so a student
reads any number of chunks in the memory of its cache. Any Hugging Face causal LM works here: the students with
their constant-size caches (a sliding-window student gets transformers' `StaticCache`, whose sliding layers hold
`window` keys each, allocated in full), or a self-attention model (e.g. the teacher's Llama) whose cache grows, as a
reference.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch

from pipeline.stream import (
    END,
    READ,
    STOP,
    MalformedOutput,
    Summary,
    parse_summary_and_action,
    render_chunk,
    render_prefix,
)
from students.common import cache_nbytes
from students.swa import window_of


@dataclass(frozen=True)
class ReadingRound:
    chunk_index: int
    summary_text: str  # what the model wrote after <summary>, up to (not including) its action
    action: str  # "READ" or "STOP": the action the stream continued with
    action_forced: bool  # the reader chose it: no action within max_summary_tokens, or READ after the last chunk
    summary: Summary | None  # the parsed summary, None when summary_text does not follow the format
    tokens_fed: int
    tokens_generated: int
    cache_bytes: int  # after this round's summary and action


@dataclass
class ReadingResult:
    answer: str
    answer_text: str  # what the model wrote after <STOP>, up to <end> (or EOS)
    rounds: list[ReadingRound] = field(default_factory=list)
    chunks_read: int = 0
    stopped_early: bool = False  # the model wrote <STOP> before the last chunk
    tokens_fed: int = 0  # tokens the reader wrote into the stream: query, chunks, role markers, forced actions
    tokens_generated: int = 0  # tokens the model wrote: summaries, actions, answer
    stream_ids: list[int] = field(default_factory=list)  # every token fed, in order: the stream as the model saw it
    written_by_model: list[bool] = field(default_factory=list)  # per stream_ids: chosen by the model, not the reader
    tokens_prefilled: int = 0  # vLLM reader only: prompt tokens the engine computed, not served from its prefix cache

    @property
    def cache_bytes(self) -> list[int]:
        return [r.cache_bytes for r in self.rounds]

    @property
    def parsed_rounds(self) -> int:
        return sum(r.summary is not None for r in self.rounds)


class _Stream:
    """One sequence being read: feeds tokens into the model, carrying its cache, and decodes greedily."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer
        self.cache = constant_cache(model)
        self.next_logits: torch.Tensor | None = None
        self.tokens_fed = 0
        self.tokens_generated = 0
        self.stream_ids: list[int] = []
        self.written_by_model: list[bool] = []
        self.keep_last_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    def token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"tokenizer has no {token!r} token: add the stream markers with students.tokenizer.add_stream_tokens")
        return token_id

    def feed(self, ids: list[int], by_model: bool = False) -> None:
        self.stream_ids.extend(ids)
        self.written_by_model.extend([by_model] * len(ids))
        extra = {"logits_to_keep": 1} if self.keep_last_logits else {}
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.model.device)
        out = self.model(input_ids=input_ids, past_key_values=self.cache, use_cache=True, **extra)
        self.cache = out.past_key_values
        self.next_logits = out.logits[0, -1]

    def feed_text(self, text: str, add_special_tokens: bool = False) -> None:
        ids = self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
        self.tokens_fed += len(ids)
        self.feed(ids)

    def feed_reader_token(self, token_id: int) -> None:
        self.tokens_fed += 1
        self.feed([token_id])

    def generate(self, stop_ids: set[int], max_new_tokens: int) -> tuple[list[int], int | None]:
        """Greedy tokens until one of stop_ids (returned, not fed) or max_new_tokens (returns None as the stop)."""
        generated: list[int] = []
        while True:
            token = int(self.next_logits.argmax())
            if token in stop_ids:
                self.tokens_generated += 1
                return generated, token
            if len(generated) == max_new_tokens:
                return generated, None
            generated.append(token)
            self.tokens_generated += 1
            self.feed([token], by_model=True)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)


def constant_cache(model):
    """A cache of constant size for a sliding-window model (StaticCache: `window` slots per layer); None otherwise,
    which lets the model make its own (the GLA student's recurrent state, a self-attention model's DynamicCache)."""
    from transformers import StaticCache

    config = getattr(model, "config", None)
    window = window_of(config) if config is not None else None
    if window is None:
        return None
    return StaticCache(config=config, max_cache_len=window)


@torch.inference_mode()
def smooth_read(
    model, tokenizer, question: str, chunks: list[str], max_summary_tokens: int = 256, max_answer_tokens: int = 64
) -> ReadingResult:
    """Read `chunks` in one EMR stream and answer `question`.

    The stream is render_prefix(question), then per chunk render_chunk(chunk) followed by what the model writes:
    summary, then <READ> (the next chunk follows) or <STOP> (the answer follows, up to <end> or the tokenizer's EOS). If the model never
    stops, <STOP> is written for it after the last chunk. A summary that reaches max_summary_tokens without an action
    is closed with <READ> (or <STOP> after the last chunk).
    """
    if not chunks:
        raise ValueError("smooth_read needs at least one chunk to read")
    stream = _Stream(model, tokenizer)
    read_id, stop_id = stream.token_id(READ), stream.token_id(STOP)
    stream.token_id(END)  # checked now: a tokenizer without the stream markers fails before any reading
    result = ReadingResult(answer="", answer_text="")

    for index, chunk in enumerate(chunks):
        fed_before, generated_before = stream.tokens_fed, stream.tokens_generated
        if index == 0:
            # The question goes in once, with the tokenizer's BOS if it adds one; the rest continues the stream.
            stream.feed_text(render_prefix(question) + render_chunk(chunk), add_special_tokens=True)
        else:
            stream.feed_text(render_chunk(chunk))
        summary_ids, action_id = stream.generate({read_id, stop_id}, max_summary_tokens)
        last = index == len(chunks) - 1
        forced = action_id is None or (last and action_id == read_id)
        if forced:
            action_id = stop_id if last else read_id
        summary_text = stream.decode(summary_ids)
        action = "STOP" if action_id == stop_id else "READ"
        # The action enters the stream now: the model's own token, or the reader's when forced.
        if forced:
            stream.feed_reader_token(action_id)
        else:
            stream.feed([action_id], by_model=True)
        result.rounds.append(
            ReadingRound(
                chunk_index=index,
                summary_text=summary_text,
                action=action,
                action_forced=forced,
                summary=_parse_summary(summary_text),
                tokens_fed=stream.tokens_fed - fed_before,
                tokens_generated=stream.tokens_generated - generated_before,
                cache_bytes=cache_nbytes(stream.cache),
            )
        )
        if action == "STOP":
            result.stopped_early = not last
            break
    result.chunks_read = len(result.rounds)

    answer_ids, _ = stream.generate(answer_end_ids(tokenizer), max_answer_tokens)
    result.answer_text = stream.decode(answer_ids)
    result.answer = _clean_answer(result.answer_text)
    result.tokens_fed, result.tokens_generated = stream.tokens_fed, stream.tokens_generated
    result.stream_ids, result.written_by_model = stream.stream_ids, stream.written_by_model
    return result


def answer_end_ids(tokenizer) -> set[int]:
    """Tokens that end an answer: the stream's <end>, and the tokenizer's own end-of-sequence token, which a student
    converted from a chat model (SmolLM2's <|im_end|>) may still write after an answer out of habit."""
    ids = {tokenizer.convert_tokens_to_ids(END)}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def one_round_read(
    model, tokenizer, question: str, context: str, max_summary_tokens: int = 256, max_answer_tokens: int = 64
) -> ReadingResult:
    """The baseline: the whole context fed as a single chunk, then summary, <STOP> and the answer."""
    return smooth_read(model, tokenizer, question, [context], max_summary_tokens, max_answer_tokens)


def _parse_summary(summary_text: str) -> Summary | None:
    try:
        summary, _, _ = parse_summary_and_action(summary_text + READ)  # any action will do: only the fields matter
    except MalformedOutput:
        return None
    return summary


def _clean_answer(answer_text: str) -> str:
    # The same cleaning parse_summary_and_action applies to a teacher's answer.
    answer = answer_text.split(END, 1)[0].strip()
    if answer.lower().startswith("answer:"):
        answer = answer[len("answer:") :].strip()
    return answer
