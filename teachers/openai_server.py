"""The teacher over HTTP: any OpenAI-compatible chat-completions server, typically `vllm serve` elsewhere.

The server batches concurrent requests itself (vLLM: continuous batching and prefix caching), so the job only
has to keep many documents in flight. Transient failures (timeouts, dropped connections, 429, 5xx) are
retried with exponential backoff; a request the server refuses (4xx, e.g. a prompt past the context length)
rejects its document; a server that stays down stops the job (`TeacherUnavailable`).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from pydantic import Field

from pipeline.stream import END, READ, STOP
from teachers.base import Completion, FixedParts, LLMTeacher, LLMTeacherConfig, RequestRejected, TeacherUnavailable
from teachers.templates import ReplyKind, answer_regex, summary_regex


class OpenAIServerConfig(LLMTeacherConfig):
    base_url: str  # e.g. http://HOST:8000/v1
    model: str  # the served model name
    api_key: str = "EMPTY"
    timeout_s: float = 120.0  # per request
    attempts: int = Field(4, ge=1)  # tries per request before the server counts as down
    backoff_s: float = 1.0  # first wait between tries; doubles each time
    sampling: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0.0})  # temperature, top_p, seed, ...
    # vLLM's extensions of the chat route: continue the assistant's message for the answer, keep the action
    # markers (special tokens) in the text, and constrain decoding when structured_output is on.
    vllm_extensions: bool = True
    structured_output: bool = False
    field_max_chars: int = 400


_RESERVED_SAMPLING = ("model", "messages", "max_tokens", "stop", "extra_body")


class OpenAIServerTeacher(LLMTeacher):
    name = "openai"

    def __init__(self, config: OpenAIServerConfig):
        super().__init__(config)
        bad = [k for k in config.sampling if k in _RESERVED_SAMPLING]
        if bad:
            raise ValueError(f"teacher 'openai': sampling keys {bad} are set per round by the teacher. Fix: remove them")
        from openai import AsyncOpenAI

        self.config: OpenAIServerConfig = config
        # Retries are ours (below), so that every kind of failure is retried the same way and counted.
        self.client = AsyncOpenAI(base_url=config.base_url, api_key=config.api_key, timeout=config.timeout_s,
                                  max_retries=0)
        self.retries = 0  # requests tried again after a transient failure, for the job's report
        self._ids = itertools.count()

    def model_name(self) -> str:
        return self.config.model

    def sampling(self) -> dict[str, Any]:
        return {**self.config.sampling, "structured_output": self.config.structured_output}

    def request(self, messages: list[dict[str, str]], max_tokens: int, kind: ReplyKind,
                fixed: FixedParts | None = None) -> dict[str, Any]:
        """The keyword arguments of one chat-completions call."""
        request: dict[str, Any] = dict(
            model=self.config.model, messages=messages, max_tokens=max_tokens,
            stop=[END] if kind == "answer" else [READ, STOP], **self.config.sampling,
        )
        if self.config.vllm_extensions:
            continuing = messages[-1]["role"] == "assistant"
            extra: dict[str, Any] = dict(
                continue_final_message=continuing, add_generation_prompt=not continuing,
                skip_special_tokens=False, include_stop_str_in_output=kind != "answer",
            )
            if self.config.structured_output:
                regex = (answer_regex(self.config.field_max_chars, fixed) if kind == "answer"
                         else summary_regex(self.config.field_max_chars, kind, fixed))
                extra["structured_outputs"] = {"regex": regex}
            request["extra_body"] = extra
        return request

    async def complete(self, messages: list[dict[str, str]], max_tokens: int, kind: ReplyKind = "round",
                       fixed: FixedParts | None = None) -> Completion:
        import openai

        request = self.request(messages, max_tokens, kind, fixed)
        last_error: Exception | None = None
        for attempt in range(self.config.attempts):
            if attempt:
                self.retries += 1
                await asyncio.sleep(self.config.backoff_s * 2 ** (attempt - 1))
            try:
                response = await self.client.chat.completions.create(**request)
            except (openai.APITimeoutError, openai.APIConnectionError, openai.RateLimitError,
                    openai.InternalServerError) as e:
                last_error = e
                continue
            except openai.APIStatusError as e:  # 4xx other than 429: this request, not the server, is at fault
                raise RequestRejected(f"HTTP {e.status_code} from {self.config.base_url}: {e.message}") from e
            return self._completion(response, kind)
        raise TeacherUnavailable(
            f"{self.config.base_url} failed {self.config.attempts} time(s), last with {last_error!r}. Fix: check "
            f"that the server is up and serves model {self.config.model!r}, or raise timeout_s / attempts"
        ) from last_error

    def _completion(self, response: Any, kind: ReplyKind) -> Completion:
        choice = response.choices[0]
        text = choice.message.content or ""
        # Servers without include_stop_str_in_output drop the matched stop string; vLLM reports it as stop_reason.
        stop_reason = getattr(choice, "stop_reason", None)
        if kind != "answer" and choice.finish_reason == "stop" and isinstance(stop_reason, str) \
                and not text.rstrip().endswith(stop_reason):
            text += stop_reason
        usage = response.usage
        details = getattr(usage, "prompt_tokens_details", None) if usage else None
        return Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cached_tokens=(getattr(details, "cached_tokens", None) or 0) if details else 0,
        )

    async def close(self) -> None:
        await self.client.close()
