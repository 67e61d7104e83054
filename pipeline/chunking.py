"""Rule-based hierarchical chunking, token counters, and per-document chunk plans.

Chunks are described by their END character offsets, the convention of `Trajectory.chunk_ends`: chunk i is
`text[ends[i-1]:ends[i]]` with `ends[-1] == len(text)`. Chunking is lossless (the chunks concatenate back to the
text exactly), every chunk is non-empty and counts at most `max_tokens`.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any, Protocol

from pipeline.documents import Document, DocumentError


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...


# Scripts written without spaces between words (Chinese, Japanese, Korean syllables, Thai, Lao, Khmer, Myanmar,
# Tibetan; CJK punctuation and full-width forms): one "word" may be a whole sentence, so each character counts.
_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u3000-\u30ff\u3100-\u312f\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003134f]"
)
# Emoji and pictographs, with their joiners and variation selectors: several byte-level tokens each.
_SYMBOLS = re.compile("[\u2600-\u27bf\u200d\ufe0f\U0001f000-\U0001faff]")


@dataclass(frozen=True)
class WordEstimate:
    """The paper's estimate, 1.5 tokens per whitespace-separated word, made safe for text that is not spaced words.

    Characters of scripts without spaces count `tokens_per_unspaced_char` each, emoji `tokens_per_symbol` each,
    and a word longer than `long_word_chars` (a URL, base64, a 100,000-character run) counts one token per
    character. The weights are SmolLM2's tokenizer measured on such text (common Chinese 1.5 tokens a character,
    rare CJK 2.7, Thai 1.8, emoji 2.7, long letter runs 0.6, digit runs 1.0): the estimate may overshoot a real
    count but stays within the margin tests/pipeline/test_estimate.py states. Plain English counts as before.
    """

    tokens_per_word: float = 1.5
    tokens_per_unspaced_char: float = 2.0
    tokens_per_symbol: float = 3.0
    long_word_chars: int = 24

    def count(self, text: str) -> int:
        words = text.split()
        if text.isascii() and all(len(w) <= self.long_word_chars for w in words):
            return math.ceil(self.tokens_per_word * len(words))
        total = 0.0
        for word in words:
            unspaced = len(_UNSPACED.findall(word)) if not word.isascii() else 0
            symbols = len(_SYMBOLS.findall(word)) if not word.isascii() else 0
            rest = len(word) - unspaced - symbols
            total += unspaced * self.tokens_per_unspaced_char + symbols * self.tokens_per_symbol
            if rest > self.long_word_chars:
                total += rest
            elif rest:
                total += self.tokens_per_word
        return math.ceil(total)


class TokenizerCounter:
    """Exact counts from a tokenizer: any object with `encode` (Hugging Face, `tokenizers.Tokenizer`, tiktoken).

    Special tokens (BOS and the like) are not counted: a chunk is text inside a stream, not a sequence of its own.
    """

    def __init__(self, tokenizer: Any):
        if not callable(getattr(tokenizer, "encode", None)):
            raise TypeError(
                f"{type(tokenizer).__name__} has no encode method. Fix: pass a Hugging Face tokenizer, a "
                "tokenizers.Tokenizer, or any object whose encode(text) returns token ids"
            )
        self.tokenizer = tokenizer

    def count(self, text: str) -> int:
        if not text:
            return 0
        try:
            encoded = self.tokenizer.encode(text, add_special_tokens=False)
        except TypeError:  # encoders without the keyword (tiktoken) add no special tokens anyway
            encoded = self.tokenizer.encode(text)
        return len(getattr(encoded, "ids", encoded))


# Cut points, strongest first. Each delimiter stays at the end of the piece before it, so pieces concatenate back
# to the text exactly. After the last level comes the hard split.
DELIMITER_LEVELS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\n{3,}"),  # sections
    re.compile(r"\n\n+"),  # paragraphs
    re.compile(r"\n"),  # lines
    re.compile(r"[.?!] +"),  # sentences
    re.compile(r"\s+"),  # words
)


def chunk_document(text: str, max_tokens: int, counter: TokenCounter) -> tuple[int, ...]:
    """Cut `text` into chunks of at most `max_tokens` tokens; returns the chunk end offsets.

    Greedy packing on the strongest delimiter: a piece (section, paragraph, line, sentence, word) that does not fit
    in the current chunk starts the next one if it fits in a chunk on its own; only a piece bigger than a whole
    chunk is cut, at the next weaker delimiter, and a word bigger than a chunk is split by characters.
    """
    if not text:
        raise ValueError("cannot chunk an empty text: there is nothing to read. Fix: drop the document")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    packer = _Packer(text, max_tokens, counter)
    packer.add(0, len(text), 0)
    packer.flush()
    return tuple(packer.ends)


class _Packer:
    """The chunk being built is text[start:end]; finished chunks' ends are in `ends`."""

    def __init__(self, text: str, max_tokens: int, counter: TokenCounter):
        self.text, self.max_tokens, self.counter = text, max_tokens, counter
        self.ends: list[int] = []
        self.start = self.end = 0

    def fits(self, start: int, end: int) -> bool:
        return self.counter.count(self.text[start:end]) <= self.max_tokens

    def flush(self) -> None:
        if self.end > self.start:
            self.ends.append(self.end)
            self.start = self.end

    def add(self, start: int, end: int, level: int, overflows: bool = False) -> None:
        """Append text[start:end] (start == self.end) to the chunks; `overflows`: it is known not to fit in the
        current chunk."""
        if not overflows and self.fits(self.start, end):
            self.end = end
            return
        if self.end > self.start and self.fits(start, end):
            self.flush()
            self.end = end
            return
        self.cut(start, end, level)

    def cut(self, start: int, end: int, level: int) -> None:
        """text[start:end] does not fit: pack its pieces at the delimiters of `level` (weaker ones if it has none)."""
        if level == len(DELIMITER_LEVELS):
            self.hard_split(end)
            return
        cuts = [m.end() for m in DELIMITER_LEVELS[level].finditer(self.text, start, end) if m.end() < end] + [end]
        if len(cuts) == 1:
            self.cut(start, end, level + 1)
            return
        i = 0
        while i < len(cuts):
            j = self.furthest_fitting(cuts, i)
            if j >= i:
                self.end = cuts[j]
                i = j + 1
            else:
                self.add(self.end, cuts[i], level + 1, overflows=True)
                i += 1

    def furthest_fitting(self, cuts: Sequence[int], i: int) -> int:
        """The largest j >= i with text[start:cuts[j]] within budget, or i - 1 when cuts[i] already overflows.

        Galloping then bisecting keeps the number of counts logarithmic in the pieces per chunk, and each count
        covers about one chunk, so chunking stays linear in the text even with an exact tokenizer.
        """
        good, step = i - 1, 1
        bad = len(cuts)
        while good + step < len(cuts):
            if self.fits(self.start, cuts[good + step]):
                good += step
                step *= 2
            else:
                bad = good + step
                break
        while bad - good > 1:
            mid = (good + bad) // 2
            if self.fits(self.start, cuts[mid]):
                good = mid
            else:
                bad = mid
        return good

    def hard_split(self, end: int) -> None:
        """The last resort for a run of text with no delimiter that is bigger than a chunk: cut by characters."""
        while self.end < end:
            offsets = range(self.end + 1, end + 1)
            k = self.furthest_fitting(offsets, 0)  # probes stop past one chunk: never counts the whole run
            if k == len(offsets) - 1:
                self.end = end
            elif k >= 0:
                self.end = offsets[k]
                self.flush()
            elif self.end > self.start:
                self.flush()
            else:
                raise ValueError(
                    f"max_tokens={self.max_tokens} is less than one character costs ({self.text[self.end]!r} counts "
                    f"{self.counter.count(self.text[self.end])} tokens with {type(self.counter).__name__}). "
                    "Fix: use a larger chunk size"
                )


def chunk_size_for(document_id: str, seed: int, low: int, high: int) -> int:
    """A chunk size in [low, high] drawn per document, the same in every process and on every machine.

    Training on many chunk sizes lets one student serve them all (the paper draws 128-4096 tokens).
    """
    if not 1 <= low <= high:
        raise ValueError(f"chunk size range must satisfy 1 <= low <= high, got low={low}, high={high}")
    digest = hashlib.sha256(f"{seed}\x00{document_id}".encode()).digest()
    return low + int.from_bytes(digest[:8], "big") % (high - low + 1)


def check_chunk_size(chunk_tokens: int, window: int, force: bool = False) -> None:
    """Refuse chunks a sliding-window student cannot read whole: above half its window, unless forced."""
    if chunk_tokens < 1 or window < 1:
        raise ValueError(f"chunk size and window must be positive, got chunk_tokens={chunk_tokens}, window={window}")
    if chunk_tokens > window // 2 and not force:
        collapse = " (larger than the window itself: accuracy collapses to 0% in the paper)" if chunk_tokens > window else ""
        raise ValueError(
            f"chunk size {chunk_tokens} is above half the student's window {window}{collapse}. The window must "
            "hold a whole chunk plus the summary that carries the task across rounds; C <= W/2 is the paper's "
            f"recipe (W=4096, C=2048: 100% on needle-in-a-haystack). Fix: use a chunk size of at most {window // 2}, "
            "or pass force=True to measure the failure on purpose"
        )



def summary_room_warning(chunk_tokens: int, max_summary_tokens: int, window: int) -> str | None:
    """Why a sliding-window reader may lose its state with these settings, or None.

    A round's summary is written while the window must still hold the previous summary and the chunk between them:
    chunk + 2 x summary cap above the window lets a long summary push the start of the previous one out, and over
    many rounds the carried state decays (seen with W=512, chunks of 256 and HotpotQA summaries of ~150 tokens)."""
    need = chunk_tokens + 2 * max_summary_tokens
    if need <= window:
        return None
    return (f"chunks of {chunk_tokens} tokens and summaries of up to {max_summary_tokens} need {need} tokens of "
            f"window (previous summary + chunk + new summary), the student has {window}: a summary longer than "
            f"{max(0, (window - chunk_tokens) // 2)} tokens is written without the whole previous one in view. Fix: "
            f"smaller chunks, a lower summary cap, or a student with a window of at least {need}")

@dataclass(frozen=True)
class ChunkPlan:
    """How one document is cut: the chunk size it drew and the chunk end offsets into its context."""

    document_id: str
    chunk_tokens: int
    chunk_ends: tuple[int, ...]

    @property
    def num_chunks(self) -> int:
        return len(self.chunk_ends)


def plan_chunks(doc: Document, low: int, high: int, seed: int, counter: TokenCounter,
                question_budget: float = 1.0) -> ChunkPlan:
    """Draw the document's chunk size and cut its context.

    `question_budget` is the most tokens the question may take, as a fraction of the chunk size: the question is
    read once at the start and restated in every summary's Target, so it must fit well inside a chunk.
    """
    chunk_tokens = chunk_size_for(doc.id, seed, low, high)
    question_tokens = counter.count(doc.question)
    limit = math.floor(question_budget * chunk_tokens)
    if question_tokens > limit:
        raise DocumentError(
            doc.id, "question",
            f"has {question_tokens} tokens, more than its budget of {limit} ({question_budget:g} x the chunk size "
            f"{chunk_tokens} drawn from [{low}, {high}])",
            "shorten the question, or raise the lower chunk size so every draw leaves room for it",
        )
    try:
        ends = chunk_document(doc.context, chunk_tokens, counter)
    except ValueError as e:
        raise DocumentError(doc.id, "context", str(e), "use a larger chunk size") from e
    return ChunkPlan(doc.id, chunk_tokens, ends)
