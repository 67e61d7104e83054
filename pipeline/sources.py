"""Documents built from the data the package ships (pipeline/data): long HotpotQA, QuALITY, needle-in-a-haystack."""

from __future__ import annotations

import functools
import html.parser
import importlib.resources
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

from pipeline.chunking import TokenCounter, WordEstimate
from pipeline.documents import Document, Evidence

HOTPOTQA_FILE = "hotpotqa_distractor_dev100.json"
QUALITY_FILE = "quality_example.jsonl"
HOTPOTQA_LICENSE = "CC BY-SA 4.0"
QUALITY_LICENSE = "article: public domain (Project Gutenberg); QuALITY questions: CC BY 4.0"
# The default haystack mixes the QuALITY article with HotpotQA paragraphs, so the share-alike licence governs it.
NIAH_LICENSE = HOTPOTQA_LICENSE
PARAGRAPH_SEP = "\n\n"


def data_dir() -> Path:
    """pipeline/data, in a source checkout and in an installed package alike."""
    return Path(str(importlib.resources.files("pipeline") / "data"))


@functools.cache
def hotpotqa_questions() -> tuple[dict, ...]:
    return tuple(json.loads((data_dir() / HOTPOTQA_FILE).read_text(encoding="utf-8")))


def _paragraph(title: str, sentences: Sequence[str]) -> str:
    return f"{title}\n{''.join(sentences).strip()}"


@functools.cache
def hotpotqa_paragraphs() -> tuple[tuple[str, str], ...]:
    """Every distinct (title, paragraph) of the shipped questions, gold and distractor, in file order."""
    return paragraphs_of(hotpotqa_questions())


def paragraphs_of(questions: Sequence[dict]) -> tuple[tuple[str, str], ...]:
    """Every distinct (title, paragraph) of HotpotQA questions, gold and distractor, in order."""
    seen, out = set(), []
    for q in questions:
        pairs = [(q["title_a"], q["para_a"]), (q["title_b"], q["para_b"])] + [(t, s) for t, s, *_ in q["distractors"]]
        for title, sentences in pairs:
            if title not in seen:
                seen.add(title)
                out.append((title, _paragraph(title, sentences)))
    return tuple(out)


def long_hotpotqa(target_tokens: int, n: int | None = None, seed: int = 0,
                  counter: TokenCounter = WordEstimate(), questions: Sequence[dict] | None = None) -> list[Document]:
    """Each HotpotQA question as a long document of about `target_tokens`: its two gold paragraphs at seeded
    positions among distractors (its own first, then other questions' paragraphs, drawn seeded), joined by blank
    lines. The evidence is HotpotQA's supporting facts: in each gold paragraph, its supporting sentences (the first
    to the last), headed by the paragraph's title; the whole paragraph where the record names no valid sentence.
    Documents stop short of the target rather than overshoot it, and a target smaller than the gold paragraphs
    gives just the gold paragraphs.
    `questions`: another set in the shipped layout (the full dev set, pipeline.qa_data); default the shipped 100.
    """
    all_paragraphs = hotpotqa_paragraphs() if questions is None else paragraphs_of(questions)
    questions = (hotpotqa_questions() if questions is None else tuple(questions))[: n if n is not None else None]
    sep_tokens = counter.count(PARAGRAPH_SEP)
    docs = []
    for q in questions:
        rng = random.Random(f"long_hotpotqa:{seed}:{q['_id']}")
        gold_titles = {q["title_a"], q["title_b"]}
        gold = [_paragraph(q["title_a"], q["para_a"]), _paragraph(q["title_b"], q["para_b"])]
        facts = q.get("supporting_facts") or ((), ())
        supporting = {gold[0]: (q["title_a"], q["para_a"], facts[0]), gold[1]: (q["title_b"], q["para_b"], facts[1])}
        own = [_paragraph(t, s) for t, s, *_ in q["distractors"] if t not in gold_titles]
        rng.shuffle(own)
        own_titles = {t for t, *_ in q["distractors"]}
        others = [p for title, p in all_paragraphs if title not in gold_titles and title not in own_titles]
        rng.shuffle(others)

        used = sum(counter.count(p) for p in gold) + sep_tokens
        distractors = []
        for p in own + others:
            cost = counter.count(p) + sep_tokens
            if used + cost > target_tokens:
                break
            distractors.append(p)
            used += cost
        else:
            if used < 0.9 * target_tokens:
                raise ValueError(
                    f"the shipped HotpotQA paragraphs hold about {used} tokens, short of target_tokens="
                    f"{target_tokens}. Fix: use a target of at most {used}, or build longer documents from a larger "
                    "source (see pipeline/data/README.md)"
                )
        # Seeded distinct slots for the two gold paragraphs among all paragraphs.
        slots = sorted(rng.sample(range(len(distractors) + 2), 2))
        paragraphs, pending_gold = list(distractors), list(gold)
        rng.shuffle(pending_gold)
        for slot, p in zip(slots, pending_gold):
            paragraphs.insert(slot, p)
        context = PARAGRAPH_SEP.join(paragraphs)
        evidence = tuple(sorted((_supporting_span(context, paragraphs, i, *supporting[paragraphs[i]]) for i in slots),
                                key=lambda e: e.start))
        docs.append(Document(
            id=f"hotpotqa-{q['_id']}-{target_tokens}-s{seed}",
            question=q["question"],
            context=context,
            answers=(q["answer"],),
            evidence=evidence,
            source="hotpotqa",
            license=HOTPOTQA_LICENSE,
            metadata={"hotpotqa_id": q["_id"], "target_tokens": target_tokens, "tokens": used,
                      "num_paragraphs": len(paragraphs), "gold_paragraph_indices": slots},
        ))
    return docs


def _span(context: str, paragraphs: list[str], index: int) -> Evidence:
    start = sum(len(p) + len(PARAGRAPH_SEP) for p in paragraphs[:index])
    end = start + len(paragraphs[index])
    return Evidence(start, end, context[start:end])


def _supporting_span(context: str, paragraphs: list[str], index: int, title: str, sentences: Sequence[str],
                     sentence_ids: Sequence[int]) -> Evidence:
    """The supporting sentences of paragraph `index` (built by _paragraph from `title` and `sentences`), first to
    last, as evidence headed by the title; the whole paragraph if no id names one of its sentences."""
    whole = _span(context, paragraphs, index)
    ids = sorted(i for i in sentence_ids if isinstance(i, int) and 0 <= i < len(sentences))
    if not ids:
        return whole
    body = "".join(sentences)
    # _paragraph strips the joined sentences: offsets into the body shift by what the strip removed in front.
    shift = len(title) + 1 - (len(body) - len(body.lstrip()))
    first, last = sentences[ids[0]], sentences[ids[-1]]
    left = len("".join(sentences[: ids[0]])) + len(first) - len(first.lstrip()) + shift
    right = len("".join(sentences[: ids[-1] + 1])) - (len(last) - len(last.rstrip())) + shift
    left, right = whole.start + max(left, len(title) + 1), whole.start + min(right, len(paragraphs[index]))
    if right <= left:
        return whole
    return Evidence(left, right, context[left:right], heading=title)


class _ParagraphExtractor(html.parser.HTMLParser):
    """Text of the block elements of an HTML page, one paragraph each, whitespace collapsed."""

    BLOCKS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "blockquote", "pre", "div"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "head", "title"):
            self._skip += 1
        elif tag in self.BLOCKS or tag == "hr":
            self._end_paragraph()
        elif tag == "br":
            self._parts.append(" ")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "head", "title"):
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCKS:
            self._end_paragraph()

    def handle_data(self, data):
        if not self._skip:
            self._parts.append(data)

    def _end_paragraph(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self._parts)).strip()
        # Inline tags (<i>) come with the page's line breaks around them: no space before closing punctuation.
        text = re.sub(r" ([.,;:!?)\]])", r"\1", text)
        if text:
            self.paragraphs.append(text)
        self._parts = []

    def close(self) -> None:
        super().close()
        self._end_paragraph()


def html_paragraphs(page: str) -> list[str]:
    parser = _ParagraphExtractor()
    parser.feed(page)
    parser.close()
    return parser.paragraphs


@functools.cache
def _quality_records() -> tuple[dict, ...]:
    records, seen = [], set()
    with (data_dir() / QUALITY_FILE).open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                if record["unique_id"] not in seen:  # the shipped file repeats its one record
                    seen.add(record["unique_id"])
                    records.append(record)
    return tuple(records)


def quality_paragraphs() -> list[str]:
    """The paragraphs of the shipped QuALITY article(s), in order."""
    out = []
    for record in _quality_records():
        out.extend(html_paragraphs(_article_html(record)))
    return out


def _article_html(record: dict) -> str:
    article = record["article"]
    return "".join(article) if isinstance(article, list) else article


def quality_documents() -> list[Document]:
    """One multiple-choice document per QuALITY question: the article as paragraphs, four options, the gold letter."""
    docs = []
    for record in _quality_records():
        context = PARAGRAPH_SEP.join(html_paragraphs(_article_html(record)))
        number = 1
        while f"question{number}" in record:
            options = tuple(record[f"question{number}option{k}"].strip() for k in range(1, 5))
            gold = int(record[f"question{number}_gold_label"])  # 1-indexed
            docs.append(Document(
                id=f"quality-{record['unique_id']}-q{number}",
                question=record[f"question{number}"].strip(),
                context=context,
                answers=(chr(ord("A") + gold - 1),),
                options=options,
                source="quality",
                license=QUALITY_LICENSE,
                metadata={"article_id": record["article_id"], "title": record["title"], "author": record["author"],
                          "question_number": number},
            ))
            number += 1
    return docs


NEEDLE_TEMPLATE = "The special magic number for {key} is: {value}."
NIAH_QUESTION = "What is the special magic number for {key} mentioned in the provided text?"
_KEY_ADJECTIVES = ("amber", "brave", "calm", "dusty", "eager", "faint", "gentle", "hollow", "icy", "jolly",
                   "keen", "lucky", "mellow", "noisy", "odd", "proud", "quiet", "rapid", "silent", "tidy")
_KEY_NOUNS = ("anchor", "badger", "canyon", "dolphin", "ember", "falcon", "glacier", "harbor", "island", "jungle",
              "kettle", "lantern", "meadow", "nectar", "orchard", "pebble", "quarry", "river", "saddle", "tunnel")


def default_haystack() -> list[str]:
    """Real text with no magic numbers in it: the QuALITY article, then every HotpotQA paragraph."""
    return quality_paragraphs() + [p for _title, p in hotpotqa_paragraphs()]


def niah_documents(lengths: Sequence[int], depths: Sequence[float], n_per_cell: int = 1, seed: int = 0,
                   counter: TokenCounter = WordEstimate(), haystack: str | Sequence[str] | None = None,
                   value_digits: int = 7, random_start: bool = False, haystack_license: str = "") -> list[Document]:
    """The paper's needle-in-a-haystack grid: for each length (tokens) and depth (0 = start, 1 = end), documents
    of real text with one needle sentence inserted on the paragraph boundary nearest the depth.

    The haystack is read from its start (skipping paragraphs too long for the room left) and repeated from its
    start when a length needs more text than it holds.
    A custom haystack is a list of paragraphs or a text whose paragraphs are separated by blank lines, under
    `haystack_license`.
    Needle values are `value_digits`-digit numbers (the paper's 7 by default; fewer are easier for tiny students).
    `random_start` reads each document's haystack from a seeded paragraph instead of the start, so that short
    training documents cover the whole haystack and a student cannot tell the needle by the text around it.
    """
    if not 1 <= value_digits <= 18:
        raise ValueError(f"value_digits={value_digits} is outside 1..18. Fix: give the number of digits of a needle value")
    if haystack is None:
        paragraphs = default_haystack()
        license = NIAH_LICENSE
    else:
        paragraphs = [p for p in (haystack.split(PARAGRAPH_SEP) if isinstance(haystack, str) else haystack) if p.strip()]
        license = haystack_license
        if not paragraphs:
            raise ValueError("the haystack holds no text. Fix: pass paragraphs of real text, or None for the default")
    for depth in depths:
        if not 0.0 <= depth <= 1.0:
            raise ValueError(f"depth {depth} is outside [0, 1]. Fix: give depths as fractions of the document")
    costs = [counter.count(p) for p in paragraphs]
    shortest = min(costs)
    sep_tokens = counter.count(PARAGRAPH_SEP)

    docs = []
    for length in lengths:
        for depth in depths:
            for k in range(n_per_cell):
                rng = random.Random(f"niah:{seed}:{length}:{depth!r}:{k}")
                key = f"{rng.choice(_KEY_ADJECTIVES)}-{rng.choice(_KEY_NOUNS)}"
                value = str(rng.randint(10 ** (value_digits - 1), 10**value_digits - 1))
                needle = NEEDLE_TEMPLATE.format(key=key, value=value)
                budget = length - counter.count(needle) - sep_tokens
                if budget < 0:
                    raise ValueError(
                        f"length {length} is shorter than the needle ({counter.count(needle)} tokens). "
                        "Fix: use lengths of at least a few dozen tokens"
                    )
                i = rng.randrange(len(paragraphs)) if random_start else 0
                chosen, used, misses = [], 0, 0
                # A paragraph too long for what is left is skipped, not the end: the text fills its length
                # (until not even the shortest paragraph fits).
                while misses < len(paragraphs) and used + shortest + sep_tokens <= budget:
                    p = i % len(paragraphs)
                    if used + costs[p] + sep_tokens <= budget:
                        chosen.append(paragraphs[p])
                        used += costs[p] + sep_tokens
                        misses = 0
                    else:
                        misses += 1
                    i += 1
                slot = _boundary_nearest(chosen, depth)
                chosen.insert(slot, needle)
                context = PARAGRAPH_SEP.join(chosen)
                evidence = _span(context, chosen, slot)
                docs.append(Document(
                    id=f"niah-s{seed}-L{length}-d{depth:g}-{k}",
                    question=NIAH_QUESTION.format(key=key),
                    context=context,
                    answers=(value,),
                    evidence=(evidence,),
                    source="niah",
                    license=license,
                    metadata={"length": length, "depth": depth, "tokens": used + length - budget, "key": key,
                              "needle_paragraph": slot},
                ))
    return docs


def _boundary_nearest(paragraphs: list[str], depth: float) -> int:
    """Index i to insert at (before paragraphs[i]) whose character offset is nearest depth x the text length."""
    total = sum(len(p) for p in paragraphs)
    offsets, pos = [], 0
    for p in paragraphs:
        offsets.append(pos)
        pos += len(p)
    offsets.append(total)
    return min(range(len(offsets)), key=lambda i: abs(offsets[i] - depth * total))
