"""Real QA data at scale, from the files `smooth-reading prepare-data` fetches (RULER's copies, CC BY-SA 4.0):
the full HotpotQA dev set as long-HotpotQA questions, and SQuAD v2 dev as long documents (`long_squad`).

Both loaders take the file's path, so tests can hand them a small file in the same JSON layout.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

from pipeline.chunking import TokenCounter, WordEstimate
from pipeline.documents import Document, sentence_around
from pipeline.sources import hotpotqa_questions, paragraphs_of

SQUAD_LICENSE = "CC BY-SA 4.0"
ARTICLE_SEP = "\n\n\n"  # between articles: a section break, stronger than the paragraphs' blank line
PARAGRAPH_SEP = "\n\n"


@functools.cache
def hotpotqa_full_questions(path: str | Path) -> tuple[dict, ...]:
    """HotpotQA's own dev file (`context`: [title, sentences] pairs, `supporting_facts`: [title, sentence]) in the
    layout of the shipped questions: the two supporting paragraphs as `title_a`/`para_a`, `title_b`/`para_b`, the
    other paragraphs as `distractors`, the supporting facts as sentence indices per gold paragraph. A question
    whose supporting facts do not name two paragraphs is left out."""
    records = json.loads(Path(path).read_text(encoding="utf-8"))
    out = []
    for r in records:
        paragraphs = {title: sentences for title, sentences in r["context"]}
        gold = list(dict.fromkeys(title for title, _ in r["supporting_facts"]))
        if len(gold) != 2 or any(t not in paragraphs for t in gold):
            continue
        out.append({
            "_id": r["_id"], "question": r["question"], "answer": r["answer"],
            "title_a": gold[0], "para_a": paragraphs[gold[0]], "title_b": gold[1], "para_b": paragraphs[gold[1]],
            # As the shipped file has them: the supporting sentences' indices, per gold paragraph.
            "supporting_facts": [[i for t, i in r["supporting_facts"] if t == title] for title in gold],
            "distractors": [[t, s, 0.0] for t, s in r["context"] if t not in gold],
        })
    return tuple(out)


def without_shipped(questions: tuple[dict, ...]) -> tuple[dict, ...]:
    """The questions minus the shipped ones (the evaluation's), and with no paragraph titled like any of theirs:
    training documents built from what is left share neither a question nor a paragraph with evaluation documents."""
    shipped = hotpotqa_questions()
    shipped_ids = {q["_id"] for q in shipped}
    shipped_titles = {title for title, _ in paragraphs_of(shipped)}
    out = []
    for q in questions:
        if q["_id"] in shipped_ids or q["title_a"] in shipped_titles or q["title_b"] in shipped_titles:
            continue
        out.append({**q, "distractors": [d for d in q["distractors"] if d[0] not in shipped_titles]})
    return tuple(out)


def heldout_haystack(questions: tuple[dict, ...]) -> list[str]:
    """NIAH haystack paragraphs for training: those of `questions` once the shipped ones are left out."""
    return [paragraph for _title, paragraph in paragraphs_of(without_shipped(questions))]


@functools.cache
def _squad_articles(path: str | Path) -> tuple[tuple[str, tuple[str, ...], tuple[tuple[int, dict], ...]], ...]:
    """(title, paragraphs, answerable questions as (paragraph index, qa)) per article, in file order."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    articles = []
    for article in data:
        paragraphs = tuple(p["context"] for p in article["paragraphs"])
        questions = tuple((i, qa) for i, p in enumerate(article["paragraphs"]) for qa in p["qas"]
                          if not qa.get("is_impossible") and qa.get("answers"))
        articles.append((article["title"], paragraphs, questions))
    return tuple(articles)


def _interleaved(articles) -> list[tuple[int, int, dict]]:
    """Questions taken round-robin over the articles (first of each, then second of each, ...), so the first n
    questions cover many articles rather than one."""
    out, depth = [], 0
    while True:
        layer = [(a, *articles[a][2][depth]) for a in range(len(articles)) if depth < len(articles[a][2])]
        if not layer:
            return out
        out.extend(layer)
        depth += 1


def long_squad(path: str | Path, target_tokens: int, n: int | None = None, seed: int = 0,
               counter: TokenCounter = WordEstimate()) -> list[Document]:
    """Each answerable SQuAD v2 question as a long document: its article (title, then paragraphs) at a seeded place
    among other whole articles, drawn seeded, until about `target_tokens` (an article longer than the target stands
    alone). Unanswerable questions are left out. Evidence: the sentence that holds the annotated answer. Answers: the
    annotators' distinct answers."""
    articles = _squad_articles(str(path))
    texts = [title.replace("_", " ") + PARAGRAPH_SEP + PARAGRAPH_SEP.join(paragraphs)
             for title, paragraphs, _ in articles]
    costs = [counter.count(t) for t in texts]
    sep_tokens = counter.count(ARTICLE_SEP)
    docs = []
    for a, paragraph_index, qa in _interleaved(articles)[: n if n is not None else None]:
        rng = random.Random(f"long_squad:{seed}:{qa['id']}")
        others = [i for i in range(len(texts)) if i != a]
        rng.shuffle(others)
        chosen, used = [], costs[a]
        for i in others:
            if used + costs[i] + sep_tokens > target_tokens:
                continue
            chosen.append(i)
            used += costs[i] + sep_tokens
        slot = rng.randrange(len(chosen) + 1)
        order = chosen[:slot] + [a] + chosen[slot:]
        context = ARTICLE_SEP.join(texts[i] for i in order)
        # The answer's offset in its paragraph, moved to the document: the article's start, its title, the
        # paragraphs before.
        title, paragraphs, _ = articles[a]
        article_start = sum(len(texts[i]) + len(ARTICLE_SEP) for i in order[:slot])
        paragraph_start = (article_start + len(title) + len(PARAGRAPH_SEP)
                           + sum(len(p) + len(PARAGRAPH_SEP) for p in paragraphs[:paragraph_index]))
        first = qa["answers"][0]
        start = paragraph_start + int(first["answer_start"])
        end = start + len(first["text"])
        if context[start:end] != first["text"]:
            raise ValueError(f"SQuAD question {qa['id']}: the answer {first['text']!r} is not at its answer_start in "
                             f"{path}. Fix: prepare the data again (`smooth-reading prepare-data`)")
        evidence = sentence_around(context, start, end)
        docs.append(Document(
            id=f"squad-{qa['id']}-{target_tokens}-s{seed}",
            question=qa["question"].strip(),
            context=context,
            answers=tuple(dict.fromkeys(x["text"].strip() for x in qa["answers"])),
            evidence=(evidence,),
            source="squad",
            license=SQUAD_LICENSE,
            metadata={"squad_id": qa["id"], "title": title, "target_tokens": target_tokens, "tokens": used,
                      "articles": [articles[i][0] for i in order], "answer_start": start},
        ))
    return docs
