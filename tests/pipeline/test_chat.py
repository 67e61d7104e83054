"""Prompt ids built turn by turn equal a whole rendering, and only the first request of a conversation renders it."""

from __future__ import annotations

import copy

import pytest

from pipeline.chat import ChatTokens, chat_prompt

CHATML = (  # SmolLM2-Instruct's template (a default system prompt when the first message is not one)
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<s>system\nYou are a helpful AI assistant<end>\n' }}{% endif %}"
    "{{'<s>' + message['role'] + '\n' + message['content'] + '<end>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<s>assistant\n' }}{% endif %}"
)
NUMBERED = (  # a template that renders a message by its place: turn-by-turn ids would be wrong
    "{% for message in messages %}{{ '<s>' + loop.index|string + ' ' + message['role'] + '\n' + message['content']"
    " + '<end>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<s>assistant\n' }}{% endif %}"
)


def whole(tokenizer, messages):
    return tokenizer(chat_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]


def with_template(tokenizer, template: str | None):
    """A copy of the tokenizer, with `template` as its chat template (None: its own)."""
    tokenizer = copy.deepcopy(tokenizer)
    if template:
        tokenizer.chat_template = template
    return tokenizer


def stream_reading(rounds: int):
    """The requests a stream-mode reader sends, in order: rounds that grow the conversation, a re-ask after a
    malformed reply, and the answer continuing the last reply."""
    system = {"role": "system", "content": "You read a document in chunks and summarize what matters."}
    conversation = [system]
    for k in range(rounds):
        messages = conversation + [{"role": "user", "content": f"Chunk {k + 1}:\n\n The fox {k} ran   far.\n"}]
        yield messages
        if k == 1:  # round 2 was malformed once: the re-ask extends the round's prompt
            yield messages + [{"role": "assistant", "content": "Target: fox"},
                              {"role": "user", "content": "Your reply had no action. Write it again."}]
        reply = f"Target: where the fox ran.\nClues: ran {k}. <READ>" if k < rounds - 1 else "Clues: far. <STOP>"
        if k == rounds - 1:
            yield messages + [{"role": "assistant", "content": reply}]  # the answer continues the reply
        conversation = messages + [{"role": "assistant", "content": reply}]


@pytest.mark.parametrize("template", [None, CHATML], ids=["stream-tokenizer", "chatml"])
def test_turn_by_turn_ids_equal_whole_renderings_and_render_once(stream_tokenizer, template):
    tokenizer = with_template(stream_tokenizer, template)
    chat = ChatTokens(tokenizer)
    assert chat.incremental
    requests = [[dict(m) for m in messages] for messages in stream_reading(rounds=6)]
    for messages in requests:
        assert chat.prompt_ids(messages) == whole(tokenizer, messages)
    assert chat.renders == 1 and chat.extensions == len(requests) - 1


@pytest.mark.parametrize("template", [None, CHATML], ids=["stream-tokenizer", "chatml"])
def test_summary_rounds_of_every_document_tokenize_only_what_follows_the_system_prompt(stream_tokenizer, template):
    tokenizer = with_template(stream_tokenizer, template)
    chat = ChatTokens(tokenizer)
    system = {"role": "system", "content": "You read a document in chunks and summarize what matters."}
    for doc in range(3):
        for k in range(3):  # summary mode: each round is the system prompt and one new user message
            messages = [system, {"role": "user", "content": f"Summary so far: {doc}.{k}\nChunk {k + 1}: the fox."}]
            assert chat.prompt_ids(messages) == whole(tokenizer, messages)
        answer = messages + [{"role": "assistant", "content": "Clues: the fox. <STOP>"}]
        assert chat.prompt_ids(answer) == whole(tokenizer, answer)
    assert chat.renders == 1 and chat.extensions == 3 * 4 - 1
    other = [{"role": "system", "content": "Another teacher."}, {"role": "user", "content": "Chunk 1: a hen."}]
    assert chat.prompt_ids(other) == whole(tokenizer, other) and chat.renders == 2


def test_a_template_that_numbers_turns_is_rendered_whole(stream_tokenizer):
    tokenizer = copy.deepcopy(stream_tokenizer)
    tokenizer.chat_template = NUMBERED
    chat = ChatTokens(tokenizer)
    assert not chat.incremental
    requests = list(stream_reading(rounds=3))
    for messages in requests:
        assert chat.prompt_ids(messages) == whole(tokenizer, messages)
    assert chat.renders == len(requests) and chat.extensions == 0


def test_forgotten_conversations_are_rendered_whole_again(stream_tokenizer):
    chat = ChatTokens(stream_tokenizer, max_conversations=2)
    readings = [list(stream_reading(rounds=3)) for _ in range(3)]
    for reading in readings:  # three documents, each document's first request: three conversations remembered
        for messages in reading[:1]:
            for m in messages:
                m["content"] = m["content"] + f" ({id(reading)})"
            chat.prompt_ids(messages)
    first = readings[0][0]
    extended = first + [{"role": "assistant", "content": "Clues: none. <READ>"}, {"role": "user", "content": "x"}]
    assert chat.prompt_ids(extended) == whole(stream_tokenizer, extended)
    assert chat.renders == 4  # the oldest document was forgotten (at most two kept), so rendered whole


def test_a_tokenizer_without_a_chat_template_is_named(stream_tokenizer):
    tokenizer = copy.deepcopy(stream_tokenizer)
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="has no chat template. Fix:"):
        ChatTokens(tokenizer)
