"""How each mode reads a document: EMR and one-round streams by the student, the parent's one-round prompt; one
document at a time with transformers, or a length's documents at once on vLLM."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import students  # noqa: F401  (registers the GLA student classes with AutoModelForCausalLM)
from jobs.eval_tasks import EvalConfig, EvalItem, score_item
from pipeline.chat import chat_prompt
from pipeline.chunking import check_chunk_size, chunk_document
from pipeline.documents import chunk_texts, question_text
from pipeline.precision import resolve_dtype
from pipeline.stream import SPECIAL_TOKENS
from students.reading import one_round_read, smooth_read
from students.swa import window_of

# LongBench's instruction for its QA tasks, said before and after the passages as LongBench does.
PARENT_INSTRUCTION = "Answer the question based on the given passages. Only give me the answer and do not output any other words."


@dataclass
class Reader:
    """A loaded model, how it reads, and what the rows say about it."""

    name: str
    model: Any
    tokenizer: Any
    window: int | None  # None: no window (linear-attention state, or a self-attention teacher)
    knows_stream: bool  # the tokenizer has the stream markers: it reads in the EMR format


def load_reader(folder: Path) -> Reader:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json. Fix: point at a Hugging Face model folder (RUN_DIR/export)")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    vocab = tokenizer.get_vocab()
    return Reader(
        name=folder.name if folder.name not in ("export", "") else folder.parent.name, model=model,
        tokenizer=tokenizer, window=window_of(model.config),
        knows_stream=all(t in vocab for t in SPECIAL_TOKENS),
    )


def resolve_chunk_tokens(reader: Reader, chunk_tokens: int) -> int:
    """The EMR chunk size: asked for, or half the window; checked against the window."""
    if not chunk_tokens:
        if reader.window is None:
            raise ValueError(f"{reader.name} has no window to derive a chunk size from. Fix: pass --chunk-tokens N")
        chunk_tokens = reader.window // 2
    if reader.window is not None:
        check_chunk_size(chunk_tokens, reader.window)
    return chunk_tokens


def read_item(reader: Reader, item: EvalItem, mode: str, chunk_tokens: int, counter, config: EvalConfig,
              batched: tuple[Any, float] | None = None) -> dict:
    """Read one document in one mode; the per-document record (prediction, score, cost).

    `batched`: what `read_with_vllm` read for this document (a ReadingResult, or the parent's answer and the context
    tokens its prompt kept) and its share of the batch's seconds, instead of reading here."""
    question = question_text(item.doc)
    start = time.perf_counter()
    if batched is not None:
        result, seconds = batched
        start -= seconds
    extra: dict[str, Any] = {}
    if mode == "emr":
        chunks = chunk_texts(item.doc.context, chunk_document(item.doc.context, chunk_tokens, counter))
        if batched is None:
            result = smooth_read(reader.model, reader.tokenizer, question, chunks, config.max_summary_tokens,
                                 config.max_new_tokens)
        prediction = result.answer
        # The last summary is what the student carried to its answer: whether it still holds the evidence tells a
        # reading failure (evidence never recorded, or lost on the way) from an answering one.
        extra = {"chunks": len(chunks), "chunks_read": result.chunks_read, "stopped_early": result.stopped_early,
                 "parsed_rounds": result.parsed_rounds, "tokens_generated": result.tokens_generated,
                 "final_summary": result.rounds[-1].summary_text if result.rounds else ""}
    elif mode == "one-round":
        if batched is None:
            result = one_round_read(reader.model, reader.tokenizer, question, item.doc.context,
                                    config.max_summary_tokens, config.max_new_tokens)
        prediction = result.answer
        extra = {"tokens_generated": result.tokens_generated}
    else:
        if batched is not None:
            prediction, kept = result
        else:
            prompt, kept = parent_prompt(reader, question, item.doc.context, config.max_new_tokens)
            prediction = chat_read(reader, prompt, config.max_new_tokens)
        extra = {"context_tokens_kept": kept}
    return {
        "task": item.task, "mode": mode, "length": item.length, "model": reader.name,
        "window": reader.window, "chunk_tokens": chunk_tokens if mode == "emr" else None, "metric": item.metric,
        "document_id": item.doc.id, "prediction": prediction, "references": list(item.doc.answers),
        "score": score_item(item, prediction), "seconds": round(time.perf_counter() - start, 3), **extra,
    }


def parent_prompt(reader: Reader, question: str, context: str, max_new_tokens: int) -> tuple[str, int]:
    """A self-attention model's one-round prompt (its chat template), and how many context tokens it keeps.

    A context longer than the model's position limit leaves room for the prompt and the answer by dropping its
    middle (LongBench's rule: the start and the end of a document are kept), so a parent is measured reading what
    it can hold rather than failing past its context."""
    def prompt(text: str) -> str:
        return chat_prompt(reader.tokenizer, [{
            "role": "user",
            "content": f"{PARENT_INSTRUCTION}\n\nThe following are given passages.\n{text}\n\n{PARENT_INSTRUCTION}\n\n"
                       f"Question: {question}\nAnswer:",
        }])

    ids = reader.tokenizer(context, add_special_tokens=False)["input_ids"]
    limit = getattr(reader.model.config, "max_position_embeddings", None)
    if limit is not None:
        overhead = len(reader.tokenizer(prompt(""), add_special_tokens=False)["input_ids"])
        room = limit - overhead - max_new_tokens - 8  # 8: slack for tokens merging across the cut
        if len(ids) > room:
            head = room // 2
            context = reader.tokenizer.decode(ids[:head]) + "\n\n" + reader.tokenizer.decode(ids[len(ids) - (room - head):])
            ids = ids[:room]
    return prompt(context), len(ids)


def chat_read(reader: Reader, prompt: str, max_new_tokens: int) -> str:
    """Greedy decoding of `prompt` by a model that does not know the stream format."""
    ids = reader.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = reader.model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=reader.tokenizer.pad_token_id or reader.tokenizer.eos_token_id)
    return reader.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


def read_with_vllm(llm, reader: Reader, items: list[EvalItem], mode: str, chunk_tokens: int, counter,
                   config: EvalConfig) -> list[tuple[Any, float]]:
    """Read `items` in `mode` all at once on a vLLM engine: EMR and one-round streams with
    students.reading_vllm.smooth_read_batch, the parent's prompts with one generate call; (result, seconds per document)."""
    from vllm import SamplingParams

    from students.reading_vllm import smooth_read_batch

    start = time.perf_counter()
    if mode == "teacher":
        prompts = [parent_prompt(reader, question_text(i.doc), i.doc.context, config.max_new_tokens) for i in items]
        params = SamplingParams(temperature=0.0, max_tokens=config.max_new_tokens)
        outputs = llm.generate([prompt for prompt, _ in prompts], params, use_tqdm=False)
        results: list[Any] = [(o.outputs[0].text.strip(), kept) for o, (_, kept) in zip(outputs, prompts)]
    else:
        documents = [(question_text(i.doc), chunk_texts(i.doc.context, chunk_document(i.doc.context, chunk_tokens, counter))
                      if mode == "emr" else [i.doc.context]) for i in items]
        results = smooth_read_batch(llm, reader.tokenizer, documents, config.max_summary_tokens, config.max_new_tokens)
    seconds = (time.perf_counter() - start) / max(len(items), 1)
    return [(result, seconds) for result in results]


def vllm_reader_engine(folder: Path, reader: Reader, config: EvalConfig, parent: bool):
    """One engine per model: a student's reads past any parent's context, a parent's stops at its own."""
    from students.reading_vllm import vllm_engine

    limit = {"max_model_len": reader.model.config.max_position_embeddings} if parent else {}
    return vllm_engine(str(folder), dtype=resolve_dtype(config.dtype), kv_cache_gb=config.kv_cache_gb, **limit)
