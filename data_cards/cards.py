"""Dataset and model cards, filled from a corpus' manifest and a checkpoint's config with huggingface_hub's classes.

The card texts are Jinja templates under data_cards/templates/; the YAML metadata is built with DatasetCardData /
ModelCardData, so the Hub (and `datasets.load_dataset`) read it as they read any card.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from safetensors import safe_open

from pipeline.chunking import WordEstimate
from pipeline.corpus import MANIFEST, REJECTS, STATISTICS, corpus_statistics, read_corpus
from pipeline.qa_data import SQUAD_LICENSE
from pipeline.rejects import read_rejects
from pipeline.sources import HOTPOTQA_LICENSE, NIAH_LICENSE, QUALITY_LICENSE

TEMPLATES = Path(__file__).resolve().parent / "templates"
PAPER = "arXiv 2507.19353"


# ---------------------------------------------------------------------------------------------------------------- model
def model_card(model_dir: Path, load_path: str, evaluation: list[dict[str, Any]] | None = None,
               dataset_id: str | None = None):
    """The card of a checkpoint folder: what the model is, how to read with it, its evaluation and training run.

    The training run's own card (README.md written by the train job's export) is kept whole as the last section,
    and its metadata is the starting point of this card's metadata.
    """
    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    run_card = ModelCard.load(model_dir / "README.md") if (model_dir / "README.md").is_file() else None

    metadata = run_card.data.to_dict() if run_card is not None else {}
    metadata.setdefault("library_name", "transformers")
    metadata.setdefault("pipeline_tag", "text-generation")
    metadata.setdefault("license", "apache-2.0")
    tags = list(metadata.get("tags") or [])
    for tag in ("smooth-reading", "long-context"):
        if tag not in tags:
            tags.append(tag)
    metadata["tags"] = tags
    on_hub = bool(dataset_id) and is_hub_repo_id(dataset_id)
    if on_hub:
        metadata["datasets"] = [dataset_id]  # the Hub links a card's datasets by repo id; a local path is no id
    metadata["model_name"] = load_path.rstrip("/").split("/")[-1]
    card_data = ModelCardData(**metadata)

    window = config_window(config)
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "model_card.md"),
        model_name=metadata["model_name"],
        model_rows=_model_rows(config, model_dir),
        max_chunk_tokens=window // 2 if window else None,
        dataset_id=dataset_id,
        dataset_link=f"https://huggingface.co/datasets/{dataset_id}" if on_hub else None,
        evaluation_rows=evaluation or [],
        load_path=load_path,
        stock=bool(window) and config.get("model_type") != "smooth_reading_swa",
        architecture=(config.get("architectures") or ["?"])[0],
        training_section=_demote_headings(run_card.text.strip()) if run_card is not None else "",
    )


def is_hub_repo_id(name: str) -> bool:
    """Whether `name` is a Hub repository id (owner/name) rather than a local folder."""
    if "/" not in name or Path(name).exists():
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def training_card(run: dict[str, Any]):
    """The card the train job's export carries: the run (an ExportInfo as a dict), its loss curve and config."""
    kind = {"swa": "sliding-window attention", "gla": "gated linear attention"}.get(run["student"], run["student"])
    card_data = ModelCardData(
        library_name="transformers", pipeline_tag="text-generation", license="apache-2.0", base_model=run["base_model"],
        tags=["smooth-reading", f"smooth-reading-{run['student']}", "recurrent", "long-context"],
    )
    losses = [tuple(point) for point in run["losses"]]
    curve = losses[:: max(1, len(losses) // 10)]  # about ten rows, and always the last step
    if losses and curve[-1] != losses[-1]:
        curve.append(losses[-1])
    return ModelCard.from_template(
        card_data, template_path=str(TEMPLATES / "training_run.md"), kind=kind,
        **{k: run[k] for k in ("base_model", "corpus", "corpus_manifest_hash", "steps", "tokens_seen", "seq_len")},
        final_loss=f"{losses[-1][1]:.4f}" if losses else "nan", curve=curve,
        config_json=json.dumps(run["config"], indent=2, sort_keys=True),
    )


def config_window(config: dict[str, Any]) -> int | None:
    """The window of a sliding-window student's config.json: a stock Mistral / Qwen2 whose every layer is
    sliding-window (or a legacy `smooth_reading_swa` export); None for any other model."""
    if config.get("model_type") == "smooth_reading_swa":
        return config.get("window")
    layer_types = config.get("layer_types") or ["sliding_attention"]
    if config.get("sliding_window") and all(t == "sliding_attention" for t in layer_types):
        return int(config["sliding_window"])
    return None


def _model_rows(config: dict[str, Any], model_dir: Path) -> list[tuple[str, Any]]:
    window = config_window(config)
    if window:
        kind = "sliding-window attention in every layer (stock architecture; constant-size KV cache)"
    else:
        kind = {"smooth_reading_gla": "gated linear attention (constant-size recurrent state)"}.get(
            config.get("model_type", ""), config.get("model_type", "?"))
    rows: list[tuple[str, Any]] = [
        ("architecture", f"`{(config.get('architectures') or ['?'])[0]}`: {kind}"),
        ("parameters", f"{count_parameters(model_dir):,}"),
    ]
    if window:
        rows.append(("window", f"{window} tokens (chunks of at most {window // 2})"))
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "vocab_size"):
        if key in config:
            rows.append((key.replace("_", " "), config[key]))
    return rows


def count_parameters(model_dir: Path) -> int:
    """Parameters stored in the folder's safetensors files, from the tensors' shapes (no tensor is loaded)."""
    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(path, framework="numpy") as f:
            total += sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())
    return total


def _demote_headings(markdown: str) -> str:
    """Nest a whole card under one section: every heading one level deeper (code blocks untouched)."""
    out, in_code = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        out.append("#" + line if not in_code and re.match(r"#{1,5} ", line) else line)
    return "\n".join(out)


# -------------------------------------------------------------------------------------------------------------- dataset
# Licences of the sources the package ships, as Hugging Face licence ids; the strictest one governs the dataset.
SOURCE_LICENSE_IDS: dict[str, str] = {"CC BY-SA 4.0": "cc-by-sa-4.0", "CC BY 4.0": "cc-by-4.0"}
LICENSE_STRICTNESS: tuple[str, ...] = ("cc-by-sa-4.0", "cc-by-4.0")


def dataset_card(corpus_dir: Path, load_path: str):
    """The card of a corpus folder, from its manifest, statistics, generation config, rejects and records."""
    corpus_dir = Path(corpus_dir)
    manifest = json.loads((corpus_dir / MANIFEST).read_text())
    stats = (json.loads((corpus_dir / STATISTICS).read_text()) if (corpus_dir / STATISTICS).is_file()
             else corpus_statistics(corpus_dir))
    config_path = corpus_dir / "config.yaml"
    config = _read_yaml(config_path)
    records = _corpus_summary(corpus_dir)

    license_id = _dataset_license(records["licenses"].values())
    n = manifest["counts"]["trajectories"]
    card_data = DatasetCardData(
        language=["en"],
        license=license_id,
        task_categories=["question-answering", "text-generation"],
        size_categories=[size_category(n)],
        pretty_name=f"Smooth Reading corpus ({', '.join(sorted(records['sources']))})",
        tags=["smooth-reading", "long-context", "multi-round-reading", "synthetic"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
    )
    rejects = _reject_reasons(corpus_dir / REJECTS)
    n_rejected = manifest["counts"]["rejects"]
    return DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "dataset_card.md"),
        pretty_name=card_data.pretty_name,
        n_trajectories=n,
        n_shards=manifest["counts"]["shards"],
        n_documents=n + n_rejected,
        n_accepted=n,
        n_rejected=n_rejected,
        acceptance=f"{100 * stats['acceptance_rate']:.1f}%",
        software_version=manifest.get("producer", {}).get("version", "unknown"),
        sources=[{"name": s, "count": c, "license": records["licenses"].get(s) or "not recorded: see the source"}
                 for s, c in sorted(records["sources"].items())],
        license=license_id,
        teacher_rows=_teacher_rows(records["teachers"]),
        chunking=_chunking_text(config, stats),
        filter_description=_filter_text(config, stats),
        verifier_rows=_verifier_rows(stats),
        hint_rows=_hint_rows(stats),
        reject_reasons=rejects,
        count_rows=_count_rows(manifest, stats, records),
        load_path=load_path,
        reproduce=(f"smooth-reading generate --output CORPUS_DIR --config config.yaml   # config hash "
                   f"{manifest.get('config', {}).get('config_hash', '?')}\n"
                   f"smooth-reading publish --dataset CORPUS_DIR --to LOCAL_DIR   # or --repo-id USER/NAME"),
        config_text=config_path.read_text().strip() if config_path.is_file() else "",
    )


def size_category(n: int) -> str:
    """The Hub's size_categories value for n rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "n>10M"


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}

    return yaml.safe_load(path.read_text()) or {}


def _corpus_summary(corpus_dir: Path) -> dict[str, Any]:
    """What the card needs from the records: sources, their licences, teachers, and the size of the streams."""
    known = {"niah": NIAH_LICENSE, "hotpotqa": HOTPOTQA_LICENSE, "quality": QUALITY_LICENSE, "squad": SQUAD_LICENSE}
    sources: dict[str, int] = {}
    teachers: dict[str, dict[str, Any]] = {}
    stream_tokens = context_tokens = 0
    estimate = WordEstimate()
    for trajectory in read_corpus(corpus_dir, verify=False):
        sources[trajectory.source] = sources.get(trajectory.source, 0) + 1
        key = json.dumps(trajectory.teacher, sort_keys=True)
        teachers.setdefault(key, {**trajectory.teacher, "trajectories": 0})["trajectories"] += 1
        stream_tokens += estimate.count(trajectory.render().text)
        context_tokens += estimate.count(trajectory.context)
    licenses = {s: known[s] for s in sources if s in known}
    return {"sources": sources, "licenses": licenses, "teachers": list(teachers.values()),
            "stream_tokens": stream_tokens, "context_tokens": context_tokens}


def _dataset_license(source_licenses) -> str:
    ids = {hub_id for text in source_licenses for name, hub_id in SOURCE_LICENSE_IDS.items() if name in text}
    for hub_id in LICENSE_STRICTNESS:
        if hub_id in ids:
            return hub_id
    return "other"


def _teacher_rows(teachers: list[dict[str, Any]]) -> list[tuple[str, str]]:
    rows = []
    for t in teachers:
        label = t.get("name", "?") + (f" ({t['model']})" if t.get("model") else "")
        sampling = json.dumps(t.get("sampling") or {}, sort_keys=True) if t.get("sampling") else "none (rules)"
        rows += [
            (f"teacher: {label}", f"{t['trajectories']} trajectories"),
            ("model", t.get("model") or "none: the paper's rule-written summaries (evidence positions are known)"),
            ("sampling", sampling),
            ("prompt template", f"`{t.get('prompt_template', '?')}`, sha256 `{t.get('prompt_sha256', '?')}`"),
        ]
        if t.get("hint"):
            fixed = ", ".join(t.get("hint_fixed") or []) or "nothing (no structured output)"
            rows.append(("hint", f"`{t['hint']}` (rationalization: told where the evidence is and the reference "
                                 f"answer; `{t.get('hint_template')}`); written as given: {fixed}"))
    return rows


def _chunking_text(config: dict[str, Any], stats: dict[str, Any]) -> str:
    parts = []
    for part in config.get("parts", []):
        c = part.get("chunking", {})
        counter = ("1.5 tokens per word (the paper's estimate; characters of unspaced scripts, emoji and long runs "
                   "by length)" if c.get("counter", "words") == "words"
                   else f"exact counts with the tokenizer of {c.get('tokenizer')}")
        parts.append(f"part `{part.get('name')}`: {c.get('low', 128)}-{c.get('high', 1024)} tokens counted as "
                     f"{counter}, at most {part.get('max_rounds', 64)} rounds")
    chunks = stats.get("chunks_per_document", {})
    observed = (f"; chunks per document: mean {chunks.get('mean', 0):.1f}, min {chunks.get('min', 0)}, "
                f"max {chunks.get('max', 0)}") if chunks.get("count") else ""
    return ("; ".join(parts) or "the chunk size range is not recorded (no config.yaml beside the shards)") + observed


def _filter_text(config: dict[str, Any], stats: dict[str, Any]) -> str:
    f = config.get("filter", {})
    threshold = f.get("min_answer_score")
    answer_rule = ("the metric's own pass verdict (exact or F1 >= 0.5 by task)" if threshold is None
                   else f"answer score >= {threshold}")
    return (
        f"A trajectory is kept when its summaries parse in the stream format, it passes the verifier's checks "
        f"({', '.join(f.get('checks') or CHECK_DESCRIPTIONS)}; the final answer against the reference: "
        f"{answer_rule}) and its rendered stream stays within {f.get('max_stream_tokens', 32768)} tokens. "
        f"Acceptance: {100 * stats.get('acceptance_rate', 0):.1f}% of the documents; answer pass rate of the kept "
        f"ones: {100 * stats.get('answer_pass_rate', 0):.1f}%; early stops (fewer rounds than chunks): "
        f"{100 * stats.get('early_stop_rate', 0):.1f}%."
    )


# What each verifier check keeps out (pipeline/verify.py), for the card.
CHECK_DESCRIPTIONS: dict[str, str] = {
    "answer": "the final answer fails the answer check",
    "target_restates_question": "a Target does not restate the question, or holds the answer",
    "clues_before_evidence": "Clues hold the answer before the text has given it",
    "stop_after_evidence": "STOP before the chunk of the last evidence",
    "clues_hold_evidence": "the Clues at STOP hold nothing of the evidence",
    "fields_distinct": "Target, Clues and Reason copy each other, or a field copies the chunk",
    "hint_not_echoed": "a hinted teacher's summary repeats its hint (\"the reference answer is ...\")",
    "needs_context": "the teacher answers without the document (MemAgent's check; when asked for)",
}


def _verifier_rows(stats: dict[str, Any]) -> list[tuple[str, str, int]]:
    failures = stats.get("verifier", {}).get("check_failures", {})
    return [(name, text, failures.get(name, 0)) for name, text in CHECK_DESCRIPTIONS.items()]


def _hint_rows(stats: dict[str, Any]) -> list[tuple[str, int, int, str]]:
    by_hint = stats.get("verifier", {}).get("by_hint", {})
    return [(hint, v["accepted"], v["rejected"], f"{100 * v['acceptance_rate']:.1f}%") for hint, v in by_hint.items()]


def _reject_reasons(path: Path) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for r in read_rejects(path):
        key = f"{r.stage or 'unknown'}: field `{r.field}`"
        counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])


def _count_rows(manifest: dict[str, Any], stats: dict[str, Any], records: dict[str, Any]) -> list[tuple[str, Any]]:
    rounds = stats.get("rounds_per_document", {})
    words = stats.get("summary_words", {})
    teacher_tokens = manifest.get("total_tokens", {})
    return [
        ("streams, estimated tokens (the word estimate)", f"{records['stream_tokens']:,}"),
        ("contexts, estimated tokens", f"{records['context_tokens']:,}"),
        ("rounds per document", f"mean {rounds.get('mean', 0):.1f}, p95 {rounds.get('p95', 0)}, max {rounds.get('max', 0)}"),
        ("summary words per round", f"mean {words.get('mean', 0):.1f}, max {words.get('max', 0)}"),
        ("teacher prompt tokens (compute)", f"{teacher_tokens.get('prompt', 0):,}"),
        ("teacher completion tokens (compute)", f"{teacher_tokens.get('completion', 0):,}"),
    ]
