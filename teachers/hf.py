"""The dependency-light teacher: a transformers model behind a micro-batcher.

Concurrent `complete` calls (rounds of different documents) are collected for a few milliseconds and run as
one left-padded `model.generate` in a worker thread, so the event loop keeps feeding documents meanwhile.
No prefix cache: every round pays its full prefill (use the vLLM teacher for long documents at scale).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any, Callable

from pydantic import Field

from pipeline.chat import chat_prompt
from pipeline.stream import END, READ, STOP
from teachers.base import Completion, FixedParts, LLMTeacher, LLMTeacherConfig, RequestRejected
from teachers.templates import ReplyKind


class TransformersTeacherConfig(LLMTeacherConfig):
    model: str  # a Hugging Face folder
    dtype: str = "float32"
    device: str = "cpu"
    max_batch_size: int = 8
    batch_wait_ms: float = 5.0  # how long a batch waits for more concurrent rounds before it runs
    # temperature (0 = greedy), top_p, top_k; seed seeds torch before each batch (reproducible for a given batch).
    sampling: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0.0})


_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "seed", "repetition_penalty")


class MicroBatcher:
    """Collects concurrent requests with the same key and runs them through `run_batch` together.

    `run_batch(key, items) -> results` runs in a worker thread, one batch at a time.
    """

    def __init__(self, run_batch: Callable[[Any, list[Any]], list[Any]], max_batch_size: int, wait_s: float):
        self.run_batch, self.max_batch_size, self.wait_s = run_batch, max_batch_size, wait_s
        self.pending: dict[Any, list[tuple[Any, asyncio.Future]]] = defaultdict(list)
        self.worker: asyncio.Task | None = None
        self.batch_sizes: list[int] = []

    async def submit(self, key: Any, item: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.pending[key].append((item, future))
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._work())
        return await future

    async def _work(self) -> None:
        while self.pending:
            if not any(len(v) >= self.max_batch_size for v in self.pending.values()):
                await asyncio.sleep(self.wait_s)  # let the other documents' rounds arrive
            key = max(self.pending, key=lambda k: len(self.pending[k]))
            batch = self.pending[key][: self.max_batch_size]
            self.pending[key] = self.pending[key][self.max_batch_size :]
            if not self.pending[key]:
                del self.pending[key]
            self.batch_sizes.append(len(batch))
            try:
                results = await asyncio.to_thread(self.run_batch, key, [item for item, _ in batch])
            except Exception as e:  # every caller of the batch gets the failure, none waits forever
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
            else:
                for (_, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)


class TransformersTeacher(LLMTeacher):
    name = "transformers"

    def __init__(self, config: TransformersTeacherConfig):
        super().__init__(config)
        bad = sorted(set(config.sampling) - set(_SAMPLING_KEYS))
        if bad:
            raise ValueError(f"teacher 'transformers': sampling keys {bad} are not supported. Fix: use {_SAMPLING_KEYS}")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config: TransformersTeacherConfig = config
        self.tokenizer = AutoTokenizer.from_pretrained(config.model, padding_side="left")
        chat_prompt(self.tokenizer, [{"role": "user", "content": "x"}])  # no chat template: fail now, not per round
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(config.model, dtype=getattr(torch, config.dtype))
        self.model.to(config.device).eval()
        self.batcher = MicroBatcher(self._generate, config.max_batch_size, config.batch_wait_ms / 1000)

    def model_name(self) -> str:
        return self.config.model

    def sampling(self) -> dict[str, Any]:
        return dict(self.config.sampling)

    async def complete(self, messages: list[dict[str, str]], max_tokens: int, kind: ReplyKind = "round",
                       fixed: FixedParts | None = None) -> Completion:
        """`fixed` is ignored: this backend has no structured output."""
        stops = (END,) if kind == "answer" else (READ, STOP)
        prompt = chat_prompt(self.tokenizer, messages)
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None:
            length = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
            if length + max_tokens > limit:
                raise RequestRejected(
                    f"the prompt has {length} tokens and the reply may take {max_tokens}, more than the model's "
                    f"{limit} positions. Fix: plan smaller chunks or use prompt_mode 'summary'"
                )
        return await self.batcher.submit((stops, max_tokens), prompt)

    def _generate(self, key: tuple[tuple[str, ...], int], prompts: list[str]) -> list[Completion]:
        import torch

        stops, max_tokens = key
        s = self.config.sampling
        temperature = float(s.get("temperature", 0.0))
        sampling = dict(do_sample=False) if temperature == 0 else dict(
            do_sample=True, temperature=temperature, top_p=s.get("top_p", 1.0), top_k=s.get("top_k", 0),
        )
        if "repetition_penalty" in s:
            sampling["repetition_penalty"] = s["repetition_penalty"]
        if "seed" in s:
            torch.manual_seed(int(s["seed"]))
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(self.config.device)
        with torch.inference_mode():
            out = self.model.generate(
                **batch, max_new_tokens=max_tokens, stop_strings=list(stops), tokenizer=self.tokenizer,
                pad_token_id=self.tokenizer.pad_token_id, **sampling,
            )
        pad = self.tokenizer.pad_token_id
        width = batch["input_ids"].shape[1]
        results = []
        for row, mask in zip(out, batch["attention_mask"]):
            ids = row[width:].tolist()
            while ids and ids[-1] == pad:  # finished rows are padded to the longest one
                ids.pop()
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
            cut = min((text.find(t) + len(t) for t in stops if t in text), default=len(text))
            results.append(Completion(text[:cut], prompt_tokens=int(mask.sum()), completion_tokens=len(ids)))
        return results
