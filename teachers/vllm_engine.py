"""The vLLM teacher: vLLM's async engine in this process, continuous batching and prefix caching.

Every `complete` call is one engine request; the job awaits many documents' `read` at once, so rounds of
different documents share batches as they arrive (no waves). In stream mode each round's prompt extends the
previous one, so with prefix caching only the new chunk costs prefill.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from pydantic import Field

from pipeline.chat import ChatTokens
from pipeline.cpu_cores import share_reserved_core
from pipeline.kv_cache import kv_cache_bytes
from pipeline.precision import resolve_dtype
from pipeline.stream import END, READ, STOP
from teachers.base import Completion, FixedParts, LLMTeacher, LLMTeacherConfig, RequestRejected, TeacherUnavailable
from teachers.templates import ReplyKind, answer_regex, summary_regex


class VLLMTeacherConfig(LLMTeacherConfig):
    model: str  # a Hugging Face folder (or Hub name where the Hub can be reached)
    dtype: str = "bfloat16"  # auto: bfloat16 where the hardware has it natively, else float32 (pipeline.precision)
    max_model_len: int = 8192
    max_num_seqs: int = 64  # documents' rounds decoded together
    # Tokens one engine step takes, prefill chunks and decodes together. None: vLLM's offline default for the
    # hardware, the one `LLM` takes (4,096 on CPU, 8,192-16,384 on GPUs), not its server default (2,048): the job is
    # batch work, and a step with more prefill in it reads the weights once for more tokens.
    max_num_batched_tokens: int | None = None
    kv_cache_gb: float = 4.0  # KV cache size; on CPU the RAM reserved for it
    sampling: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0.0})  # vllm.SamplingParams fields
    structured_output: bool = False  # constrain decoding to the summary format, so small teachers always parse
    field_max_chars: int = 400  # with structured_output: the longest Target / Clues / Reason line
    seed: int = 0  # engine seed (sampling["seed"] seeds each request)
    enforce_eager: bool = False  # skip graph compilation: slower decoding, much faster start (tests, small runs)
    # KV cache block size in tokens (None: vLLM's default, 16 on GPU, 128 on CPU). The prefix cache reuses whole
    # blocks only, so a stream-mode round recomputes up to one block of the conversation before its new chunk.
    block_size: int | None = None


# Keys of `sampling` that the teacher sets itself, per request.
_RESERVED_SAMPLING = ("max_tokens", "stop", "include_stop_str_in_output", "skip_special_tokens", "structured_outputs")


class VLLMTeacher(LLMTeacher):
    name = "vllm"

    def __init__(self, config: VLLMTeacherConfig):
        super().__init__(config)
        bad = [k for k in config.sampling if k in _RESERVED_SAMPLING]
        if bad:
            raise ValueError(f"teacher 'vllm': sampling keys {bad} are set per round by the teacher. Fix: remove them")
        from transformers import AutoTokenizer
        from vllm import SamplingParams

        SamplingParams(**config.sampling)  # fail here, before the engine starts, on a misspelt sampling key
        self.config: VLLMTeacherConfig = config
        self.tokenizer = AutoTokenizer.from_pretrained(config.model)
        self.chat_tokens = ChatTokens(self.tokenizer)  # no chat template: fails here, before the engine starts
        # Prompt tokens asked for and served from the prefix cache, totalled over finished requests (vLLM's own stat
        # loggers would do it per engine step, in the process that feeds the engine).
        self.prefix_cache = {"requests": 0, "queries": 0, "hits": 0}
        self._engine = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._request_ids = itertools.count()

    def model_name(self) -> str:
        return self.config.model

    def sampling(self) -> dict[str, Any]:
        return {**self.config.sampling, "structured_output": self.config.structured_output}

    def _start(self):
        """Start the engine on the running event loop: its output handler lives on that loop."""
        loop = asyncio.get_running_loop()
        if self._engine is not None:
            if loop is not self._loop:
                raise RuntimeError(
                    "VLLMTeacher was started on another event loop; its engine serves one loop. "
                    "Fix: run all reads of one teacher inside one asyncio loop, or build a teacher per loop"
                )
            return self._engine
        from vllm import AsyncEngineArgs
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        share_reserved_core()
        args = AsyncEngineArgs(
            model=self.config.model, dtype=resolve_dtype(self.config.dtype), max_model_len=self.config.max_model_len,
            max_num_seqs=self.config.max_num_seqs, max_num_batched_tokens=self.config.max_num_batched_tokens,
            kv_cache_memory_bytes=kv_cache_bytes(self.config.kv_cache_gb),
            enable_prefix_caching=True, seed=self.config.seed, enforce_eager=self.config.enforce_eager,
            block_size=self.config.block_size,
            # AsyncLLM keeps per-step statistics by default (LLM does not): the engine core builds scheduler stats
            # every step and this process files them into Prometheus metrics, on the cores the engine runs on. The
            # prefix-cache figures come from finished requests instead (`prefix_cache_stats`).
            disable_log_stats=True,
        )
        self._engine = AsyncLLM.from_engine_args(args, usage_context=UsageContext.LLM_CLASS)  # offline defaults
        self._loop = loop
        return self._engine

    def render_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        return self.chat_tokens.prompt_ids(messages)

    def sampling_params(self, max_tokens: int, kind: ReplyKind, fixed: FixedParts | None = None):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind, StructuredOutputsParams

        structured = None
        if self.config.structured_output:
            regex = (answer_regex(self.config.field_max_chars, fixed) if kind == "answer"
                     else summary_regex(self.config.field_max_chars, kind, fixed))
            structured = StructuredOutputsParams(regex=regex)
        return SamplingParams(
            **self.config.sampling, max_tokens=max_tokens,
            stop=[END] if kind == "answer" else [READ, STOP], include_stop_str_in_output=kind != "answer",
            skip_special_tokens=False,  # the action markers are special tokens in stream tokenizers
            structured_outputs=structured,
            # Only the finished reply is read: no per-token output object, queue put and task wake-up in this
            # process, which shares the CPU with the engine (as LLM.generate does).
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    async def complete(self, messages: list[dict[str, str]], max_tokens: int, kind: ReplyKind = "round",
                       fixed: FixedParts | None = None) -> Completion:
        engine = self._start()
        prompt_ids = self.render_prompt(messages)
        if len(prompt_ids) + max_tokens > self.config.max_model_len:
            raise RequestRejected(
                f"the prompt has {len(prompt_ids)} tokens and the reply may take {max_tokens}, more than "
                f"max_model_len {self.config.max_model_len}. Fix: plan smaller chunks, use prompt_mode 'summary' "
                "(stream mode grows with every round), or raise max_model_len"
            )
        params = self.sampling_params(max_tokens, kind, fixed)
        from vllm.v1.engine.exceptions import EngineDeadError

        final = None
        try:
            async for out in engine.generate({"prompt_token_ids": prompt_ids}, params,
                                             f"teacher-{next(self._request_ids)}"):
                final = out
        except EngineDeadError as e:
            raise TeacherUnavailable(f"the vLLM engine for {self.config.model} died: {e}. Fix: see the engine "
                                     "log above (often out of memory: lower max_num_seqs or kv_cache_gb)") from e
        result = final.outputs[0]
        completion = Completion(
            text=result.text, prompt_tokens=len(final.prompt_token_ids or prompt_ids),
            completion_tokens=len(result.token_ids), cached_tokens=final.num_cached_tokens or 0,
        )
        self.prefix_cache["requests"] += 1
        self.prefix_cache["queries"] += completion.prompt_tokens
        self.prefix_cache["hits"] += completion.cached_tokens
        return completion

    def prefix_cache_stats(self) -> dict[str, float]:
        """Prompt tokens asked for and served from the prefix cache over this teacher's requests, and the hit rate."""
        c = self.prefix_cache
        return {**c, "hit_rate": c["hits"] / c["queries"] if c["queries"] else 0.0}

    async def reset_prefix_cache(self) -> None:
        """Empty the engine's prefix cache (between timed passes over the same documents, which would hit it)."""
        if self._engine is not None and not await self._engine.reset_prefix_cache():
            raise RuntimeError("vLLM did not reset its prefix cache: requests were still running")

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
