"""The one place a model's chat template is applied (teachers' prompts, the parent's evaluation prompt)."""

from __future__ import annotations

from typing import Any


def chat_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """Render messages with the model's chat template; a trailing assistant message is continued, not closed."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"the tokenizer of {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template. Fix: use an "
            "instruction-tuned model, or set tokenizer.chat_template and save it with the model"
        )
    continuing = messages[-1]["role"] == "assistant"
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=not continuing, continue_final_message=continuing,
    )
