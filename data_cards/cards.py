"""Dataset and model cards, filled from a corpus' manifest and a checkpoint's config with huggingface_hub's classes.

The card texts are Jinja templates under data_cards/templates/; the YAML metadata is built with DatasetCardData /
ModelCardData, so the Hub (and `datasets.load_dataset`) read it as they read any card.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"
PAPER = "arXiv 2507.19353"


# ---------------------------------------------------------------------------------------------------------------- model
def model_card(model_dir: Path, load_path: str, evaluation: list[dict[str, Any]] | None = None,
               dataset_id: str | None = None):
    """The card of a checkpoint folder: what the model is, how to read with it, its evaluation and training run.

    The training run's own card (README.md written by the train job's export) is kept whole as the last section,
    and its metadata is the starting point of this card's metadata.
    """
    from huggingface_hub import ModelCard, ModelCardData

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
    if dataset_id:
        metadata["datasets"] = [dataset_id]
    metadata["model_name"] = load_path.rstrip("/").split("/")[-1]
    card_data = ModelCardData(**metadata)

    window = config.get("window")
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATES / "model_card.md"),
        model_name=metadata["model_name"],
        model_rows=_model_rows(config, model_dir),
        max_chunk_tokens=window // 2 if window else None,
        dataset_id=dataset_id,
        dataset_link=f"https://huggingface.co/datasets/{dataset_id}" if dataset_id and "/" in dataset_id else dataset_id,
        evaluation_rows=evaluation or [],
        load_path=load_path,
        training_section=_demote_headings(run_card.text.strip()) if run_card is not None else "",
    )


def _model_rows(config: dict[str, Any], model_dir: Path) -> list[tuple[str, Any]]:
    kind = {
        "smooth_reading_swa": "sliding-window attention (constant-size ring-buffer KV cache)",
        "smooth_reading_gla": "gated linear attention (constant-size recurrent state)",
    }.get(config.get("model_type", ""), config.get("model_type", "?"))
    rows: list[tuple[str, Any]] = [
        ("architecture", f"`{(config.get('architectures') or ['?'])[0]}`: {kind}"),
        ("parameters", f"{count_parameters(model_dir):,}"),
    ]
    if config.get("window"):
        rows.append(("window", f"{config['window']} tokens (chunks of at most {config['window'] // 2})"))
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "vocab_size"):
        if key in config:
            rows.append((key.replace("_", " "), config[key]))
    return rows


def count_parameters(model_dir: Path) -> int:
    """Parameters stored in the folder's safetensors files, read from their headers (no tensors are loaded)."""
    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with path.open("rb") as f:
            (header_size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_size))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for dim in entry["shape"]:
                    count *= dim
                total += count
    return total


def _demote_headings(markdown: str) -> str:
    """Nest a whole card under one section: every heading one level deeper (code blocks untouched)."""
    out, in_code = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        out.append("#" + line if not in_code and re.match(r"#{1,5} ", line) else line)
    return "\n".join(out)
