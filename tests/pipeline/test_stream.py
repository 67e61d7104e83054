from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.stream import (
    CHUNK, END, LOSS_ROLES, SPECIAL_TOKENS, SUMMARY, StreamRound, Summary, parse_summary_and_action, render_stream,
)

import pytest

from pipeline.stream import MalformedOutput

# Field text as a teacher writes it: one line, no stream markers, no leading/trailing space.
_field = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=40) \
    .map(lambda s: " ".join(s.split())).filter(lambda s: s and "<" not in s and not _starts_like_a_field(s))


def _starts_like_a_field(s: str) -> bool:
    return any(s.lstrip().startswith(name) for name in ("Target", "Clues", "Reason", "answer:", "Answer:"))


_summary = st.builds(Summary, target=_field, clues=_field | st.just(""), reason=_field | st.just(""))
_chunk = st.text(min_size=1, max_size=60).filter(lambda s: not any(t in s for t in SPECIAL_TOKENS))


def _model_output(text: str, spans) -> list[str]:
    """What the model wrote after each <summary> marker: summary, action, and (last round) the answer."""
    outputs, current = [], None
    for span in spans:
        if span.role == "chunk":
            if current is not None:
                outputs.append(current)
            current = ""
        elif span.role in LOSS_ROLES:
            current += text[span.start:span.end]
    outputs.append(current)
    return outputs


@settings(max_examples=60, deadline=None)
@given(question=_chunk, chunks=st.lists(_chunk, min_size=1, max_size=4), summaries=st.data(), answer=_field)
def test_rendered_rounds_parse_back_to_the_same_summary_action_and_answer(question, chunks, summaries, answer):
    rounds = [
        StreamRound(chunk, summaries.draw(_summary), "STOP" if i == len(chunks) - 1 else "READ")
        for i, chunk in enumerate(chunks)
    ]
    stream = render_stream(question, rounds, answer)
    outputs = _model_output(stream.text, stream.spans)
    assert len(outputs) == len(rounds)
    for i, (round_, raw) in enumerate(zip(rounds, outputs)):
        summary, action, parsed_answer = parse_summary_and_action(raw)
        assert (summary, action) == (round_.summary, round_.action)
        assert parsed_answer == (answer if i == len(rounds) - 1 else None)


@settings(max_examples=60, deadline=None)
@given(question=_chunk, chunks=st.lists(_chunk, min_size=1, max_size=4), summary=_summary, answer=_field)
def test_loss_mask_never_covers_query_or_chunk_characters(question, chunks, summary, answer):
    from pipeline.stream import loss_mask_for_offsets

    rounds = [StreamRound(c, summary, "STOP" if i == len(chunks) - 1 else "READ") for i, c in enumerate(chunks)]
    stream = render_stream(question, rounds, answer)
    offsets = [(i, i + 1) for i in range(len(stream.text))]  # one token per character
    mask = loss_mask_for_offsets(stream.spans, offsets)
    roles = [next(s.role for s in stream.spans if s.start <= i < s.end) for i in range(len(stream.text))]
    assert all(m == (role in LOSS_ROLES) for m, role in zip(mask, roles))
    # every character of the question and of every chunk is outside the loss
    text_positions = [i for i, r in enumerate(roles) if r in ("query", "chunk")]
    assert not any(mask[i] for i in text_positions)
    assert stream.text.endswith(answer + END)


def test_loss_mask_with_a_real_tokenizer(stream_tokenizer):
    from pipeline.stream import loss_mask_for_offsets

    summary = Summary("find the capital", "Paris is named", "the chunk names it")
    stream = render_stream("Which city is the capital of France?",
                           [StreamRound("France has Paris.", summary, "READ"),
                            StreamRound("More text.", summary, "STOP")], "Paris")
    enc = stream_tokenizer(stream.text, add_special_tokens=False, return_offsets_mapping=True)
    mask = loss_mask_for_offsets(stream.spans, [tuple(o) for o in enc["offset_mapping"]])
    for (start, end), m in zip(enc["offset_mapping"], mask):
        piece = stream.text[start:end]
        if piece in (CHUNK, SUMMARY) or "France has" in piece:
            assert not m
    trained = "".join(stream.text[s:e] for (s, e), m in zip(enc["offset_mapping"], mask) if m)
    assert "Which city" not in trained and "France has Paris" not in trained and "More text" not in trained
    assert "Paris is named" in trained and "<STOP>" in trained and trained.endswith("Paris" + END)


@pytest.mark.parametrize("raw, message", [
    ("Target: t\nClues: c\nReason: r\n", "no action"),
    ("Target: t\nClues: c\n<READ>", "missing field"),
    ("Target: \nClues: c\nReason: r\n<READ>", "Target' is empty"),
    ("Target: t\nClues: c\nReason: r\n<STOP>", "not followed by an answer"),
    ("Target: t\nTarget: u\nClues: c\nReason: r\n<READ>", "appears twice"),
])
def test_malformed_outputs_are_named(raw, message):
    with pytest.raises(MalformedOutput, match=message):
        parse_summary_and_action(raw)
