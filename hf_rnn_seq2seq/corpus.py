"""Which corpus a run reads: the one its arguments name (a Hub dataset, files, a folder), else Multi30k from a local
copy, else Multi30k from the Hub; where none can be had, an error that says what to pass."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .data import MULTI30K_SPLIT_STEMS, load_hub_dataset, load_parallel_dir, load_parallel_files
from .text_files import DataError

if TYPE_CHECKING:
    from .arguments import DataTrainingArguments

logger = logging.getLogger(__name__)

# Where Multi30k is looked for when no corpus is named (`local_multi30k_candidates`): $HF_RNN_SEQ2SEQ_DATA/multi30k,
# then, in a source checkout (train.py beside the package; None when the package is installed), the read-only data
# next to it on the development machines, ../shared/data/multi30k.
DATA_ENV_VARIABLE = "HF_RNN_SEQ2SEQ_DATA"
_PACKAGE_PARENT = Path(__file__).resolve().parents[1]
SOURCE_CHECKOUT = _PACKAGE_PARENT if (_PACKAGE_PARENT / "train.py").is_file() else None
# The same Multi30k splits on the Hub (columns "en", "de"), used when there is no local copy.
DEFAULT_HUB_DATASET = "bentrevett/multi30k"


def local_multi30k_candidates() -> list[Path]:
    """The folders where a local Multi30k is looked for when no corpus is named, in order (see DATA_ENV_VARIABLE)."""
    candidates = []
    if os.environ.get(DATA_ENV_VARIABLE):
        candidates.append(Path(os.environ[DATA_ENV_VARIABLE]) / "multi30k")
    if SOURCE_CHECKOUT is not None:
        candidates.append(SOURCE_CHECKOUT.parent / "shared" / "data" / "multi30k")
    return candidates


def default_data_dir() -> Path | None:
    """The first local Multi30k folder of `local_multi30k_candidates` that exists; None when there is none."""
    return next((folder for folder in local_multi30k_candidates() if folder.is_dir()), None)


def _hub_multi30k(src: str, tgt: str, cache_dir: str | None) -> dict:
    """Multi30k from the Hub (or the Hub cache), where no corpus is named and there is no local copy. Where it cannot
    be loaded (offline, say), the error says what to pass instead."""
    looked = ", ".join(map(str, local_multi30k_candidates())) or (
        f"no folder: ${DATA_ENV_VARIABLE} is not set and the package is not in a source checkout"
    )
    logger.info("no local Multi30k (looked in: %s): loading Multi30k from the Hub (%s)", looked, DEFAULT_HUB_DATASET)
    try:
        return load_hub_dataset(DEFAULT_HUB_DATASET, src, tgt, cache_dir=cache_dir)
    except Exception as e:  # offline, no network, Hub down: all end the same way for the user
        files = ", ".join(f"{stem}.{lang}.gz" for lang in (src, tgt) for stem in MULTI30K_SPLIT_STEMS.values())
        raise DataError(
            "no corpus given: pass --data_dir (a folder of {split}.{lang} files, plain or .gz, in the Multi30k "
            f"layout: {files}), --dataset_name (a Hub dataset) or --train_file (a TSV or JSON-lines file, alone "
            f"or with --validation_file and --test_file). Without them Multi30k is read from "
            f"${DATA_ENV_VARIABLE}/multi30k or, in a source checkout, ../shared/data/multi30k beside it (looked in: "
            f"{looked}), else from the Hub dataset {DEFAULT_HUB_DATASET}, which could not be loaded: {e}"
        ) from e


def load_data(data_args: DataTrainingArguments, splits: list[str], cache_dir: str | None) -> dict:
    """The requested splits of the corpus the arguments name (see DataTrainingArguments): {split: dataset}, the
    training split a stream with --streaming."""
    src, tgt = data_args.source_lang, data_args.target_lang
    if data_args.dataset_name:
        raw = load_hub_dataset(
            data_args.dataset_name, src, tgt, data_args.dataset_config_name, cache_dir, data_args.streaming
        )
        where = data_args.dataset_name
    elif data_args.train_file or data_args.validation_file or data_args.test_file:
        files = {
            split: path
            for split, path in (
                ("train", data_args.train_file),
                ("validation", data_args.validation_file),
                ("test", data_args.test_file),
            )
            if path
        }
        columns = data_args.file_languages.split(",") if data_args.file_languages else None
        raw = load_parallel_files(
            files,
            src,
            tgt,
            columns=[c.strip() for c in columns] if columns else None,
            seed=data_args.split_seed,
            validation_fraction=data_args.validation_split_percentage / 100,
            test_fraction=data_args.test_split_percentage / 100,
            cache_dir=cache_dir,
        )
        where = ", ".join(str(p) for p in files.values())
    elif data_dir := data_args.data_dir or default_data_dir():
        stems = {
            "train": data_args.train_split_stem,
            "validation": data_args.validation_split_stem,
            "test": data_args.test_split_stem,
        }
        return load_parallel_dir(data_dir, src, tgt, split_stems=stems, splits=splits, cache_dir=cache_dir)
    else:
        raw, where = _hub_multi30k(src, tgt, cache_dir), DEFAULT_HUB_DATASET
    missing = [split for split in splits if split not in raw]
    if missing:
        raise DataError(f"{where}: missing split(s) {', '.join(missing)} (available: {', '.join(raw)})")
    return {split: raw[split] for split in splits}
