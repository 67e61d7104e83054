"""The one place a model's chat template is applied (teachers' prompts, the parent's evaluation prompt)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

Messages = list[dict[str, str]]


def chat_prompt(tokenizer: Any, messages: Messages) -> str:
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


_SENTINEL = "\x00content\x00"
_PROBE: Messages = [
    {"role": "system", "content": "You read."},
    {"role": "user", "content": "Question: who?\nChunk 1: Ann met Bo."},
    {"role": "assistant", "content": "Target: who.\nClues: Ann met Bo. <READ>"},
    {"role": "user", "content": " Chunk 2:\n\nBo left.\n"},
    {"role": "assistant", "content": "Clues: Bo left. <STOP>"},
]


class ChatTokens:
    """Prompt token ids of conversations that grow turn by turn, tokenizing only what a turn adds.

    A reader's conversation is sent once per round, each time one or two messages longer (stream mode: the reply and
    the next chunk; every mode: the reply continued with the answer, a re-ask after a malformed reply). Rendering the
    chat template over the whole conversation and tokenizing it again every round costs time quadratic in the rounds,
    on the cores the engine runs on. Here a request's ids are the ids of the longest conversation already sent that it
    extends, plus the tokenized text of its new messages; the cut falls between two messages, where chat templates put
    special tokens, so the ids equal a whole rendering's. A system message counts as sent once any conversation began
    with it: every reader's first round, and every summary-mode round (the system prompt and one new user message),
    tokenizes only what follows it. That is checked once on a probe conversation: a template that renders a message
    differently by its place (or a tokenizer that merges across the cut) gets whole renderings.
    """

    def __init__(self, tokenizer: Any, max_conversations: int = 1024):
        self.tokenizer = tokenizer
        self.max_conversations = max_conversations
        # per document (a conversation's first two messages): the last conversations sent, closed, with their ids
        self._sent: OrderedDict[tuple, list[tuple[tuple[tuple[str, str], ...], list[int]]]] = OrderedDict()
        self._systems: OrderedDict[str, list[int]] = OrderedDict()  # a system message's ids, rendered alone (closed)
        self.renders = self.extensions = 0
        self._wrap: dict[str, tuple[str, str]] = {}
        chat_prompt(tokenizer, _PROBE[:2])  # no chat template: fail here, naming the tokenizer
        self.incremental = self._learn_template()
        self._sent.clear()
        self._systems.clear()
        self.renders = self.extensions = 0

    def prompt_ids(self, messages: Messages) -> list[int]:
        """The ids of `chat_prompt(messages)`: a generation prompt, or the trailing assistant message continued."""
        key = tuple((m["role"], m["content"]) for m in messages)
        continuing = key[-1][0] == "assistant"
        ids = self._extend(key, continuing) if self.incremental else None
        if ids is None:
            self.renders += 1
            ids = self._tokenize(chat_prompt(self.tokenizer, messages))
            if self.incremental and key[0][0] == "system" and len(key) > 1:
                self._remember_system(key[0][1])
        else:
            self.extensions += 1
        if not continuing and self.incremental:
            self._remember(key, ids[: len(ids) - len(self._generation_ids)])
        return ids

    def _extend(self, key: tuple[tuple[str, str], ...], continuing: bool) -> list[int] | None:
        candidates = list(reversed(self._sent.get(key[:2], ())))
        if key[0][0] == "system" and key[0][1] in self._systems:
            candidates.append((key[:1], self._systems[key[0][1]]))
        for sent_key, sent in candidates:
            if len(sent_key) >= len(key) or key[: len(sent_key)] != sent_key:
                continue
            new = key[len(sent_key):]
            if len(new) > 2 or any(role not in self._wrap for role, _ in new):
                return None
            closed, last = (new, None) if not continuing else (new[:-1], new[-1])
            text = "".join(self._wrap[r][0] + c + self._wrap[r][1] for r, c in closed)
            text += self._wrap["assistant"][0] + last[1] if last else self._generation
            return sent + self._tokenize(text)
        return None

    def _remember(self, key: tuple[tuple[str, str], ...], closed_ids: list[int]) -> None:
        """Keep the last two conversations sent per document (its first two messages): a round is extended by the
        next round, and also by a re-ask when its reply was malformed."""
        recent = self._sent.pop(key[:2], [])
        self._sent[key[:2]] = (recent + [(key, closed_ids)])[-2:]
        while len(self._sent) > self.max_conversations:
            self._sent.popitem(last=False)

    def _remember_system(self, content: str) -> None:
        if content not in self._systems:
            alone = self.tokenizer.apply_chat_template([{"role": "system", "content": content}], tokenize=False)
            self._systems[content] = self._tokenize(alone)
            while len(self._systems) > 16:  # a job has one system prompt per teacher; hinted parts add a few
                self._systems.popitem(last=False)

    def _tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _learn_template(self) -> bool:
        """Each role's text around a message and the generation prompt, then a check that turn-by-turn ids equal
        whole renderings on the probe, in every way a reader extends a conversation."""
        render = self.tokenizer.apply_chat_template
        system = _PROBE[:1]
        alone = render(system, tokenize=False)
        self._generation = render(system, tokenize=False, add_generation_prompt=True)[len(alone):]
        self._generation_ids = self._tokenize(self._generation)
        for role in ("user", "assistant"):
            text = render(system + [{"role": role, "content": _SENTINEL}], tokenize=False)
            if not text.startswith(alone) or text.count(_SENTINEL) != 1:
                return False
            self._wrap[role] = tuple(text[len(alone):].split(_SENTINEL))
        self.incremental = True
        another_round = [_PROBE[0], {"role": "user", "content": "Question: who left?\nChunk 2: Bo left."}]
        for messages in [_PROBE[:n] for n in range(2, len(_PROBE) + 1)] + [another_round]:
            if self.prompt_ids(messages) != self._tokenize(chat_prompt(self.tokenizer, messages)):
                return False
            if messages[-1]["role"] == "user":
                continued = messages + [{"role": "assistant", "content": "Answer: Bo"}]
                if self.prompt_ids(continued) != self._tokenize(chat_prompt(self.tokenizer, continued)):
                    return False
        return self.extensions > 0
