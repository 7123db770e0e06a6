"""Parallel corpora as a `datasets.DatasetDict` with one `translation` column.

Every loader returns splits named ``train`` / ``validation`` / ``test`` whose rows are
``{"translation": {source_lang: str, target_lang: str}}`` (the layout of
`run_translation.py`). Text is normalised the same way whatever the source (see `normalize`),
and pairs with an empty side are dropped and counted in the log.

Three sources are supported:

* a local directory in the Multi30k layout (`load_parallel_dir`),
* one TSV or JSON-lines file, or one file per split (`load_parallel_files`),
* a Hub dataset (`load_hub_dataset`, online only; its training split optionally streamed), mapped by
  `to_translation_dataset`.

`corpus.load_data` picks among them as train.py's arguments say. Local files are read a line at a time into an Arrow file
in the `datasets` cache and memory-mapped from there, so memory does not grow with the corpus; the file is keyed by
the files' contents and the settings, and a second read is that file (`_file_datasets`).

The files are read by `text_files.py`; malformed input raises its `DataError` (a `ValueError`) naming the file,
and the line where one is at fault, instead of failing later inside tokenisation or training.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from itertools import islice
from pathlib import Path

import datasets
import pyarrow as pa
from datasets.fingerprint import Hasher
from datasets.table import MemoryMappedTable

from .text_files import DataError, check_languages, file_fingerprint, iter_parallel_file, iter_parallel_lines, normalize

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
WRITE_BATCH = 10_000  # pairs normalised and written to the Arrow file at a time
PAIRS_FORMAT = 1  # of the cached pair files: change it when `_write_pairs` writes something else

# Multi30k names its splits train / val / test_2016_flickr; other corpora can override the stems.
MULTI30K_SPLIT_STEMS = {"train": "train", "validation": "val", "test": "test_2016_flickr"}

# Split names some Hub datasets use for what we call "validation".
_SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}

def _features(source_lang: str, target_lang: str) -> datasets.Features:
    return datasets.Features(
        {"translation": {source_lang: datasets.Value("string"), target_lang: datasets.Value("string")}}
    )


def _write_pairs(outputs: dict, kind, paths, source_lang, target_lang, columns, splitting) -> dict:
    """Normalise the pairs of the files and write them, WRITE_BATCH at a time, to the Arrow files `outputs`
    ({split: path}), in one pass: with `splitting` (seed, validation fraction, test fraction) each pair to the file
    of the split `source_split` assigns it (a lone file), else all to the one file (split None). Pairs with an empty
    side are dropped; returns how many, by split."""
    if kind == "lines":
        pairs = iter_parallel_lines(*paths)
    else:
        pairs = iter_parallel_file(paths[0], source_lang, target_lang, columns)
    schema = _features(source_lang, target_lang).arrow_schema
    dropped = dict.fromkeys(outputs, 0)
    with ExitStack() as stack:
        writers = {
            split: stack.enter_context(pa.ipc.new_stream(stack.enter_context(pa.OSFile(str(path), "wb")), schema))
            for split, path in outputs.items()
        }
        while chunk := list(islice(pairs, WRITE_BATCH)):
            columns_of = {split: ([], []) for split in outputs}  # sources, targets
            for source, target in chunk:
                split = None if splitting is None else source_split(source, *splitting)
                source, target = normalize(source), normalize(target)
                if source and target:
                    columns_of[split][0].append(source)
                    columns_of[split][1].append(target)
                else:
                    dropped[split] += 1
            for split, (sources, targets) in columns_of.items():
                column = pa.StructArray.from_arrays([pa.array(sources, pa.string()), pa.array(targets, pa.string())],
                                                    names=[source_lang, target_lang])  # fmt: skip
                writers[split].write_batch(pa.record_batch([column], schema=schema))
    return dropped


def _file_datasets(kind, paths, source_lang, target_lang, what, cache_dir=None, columns=None, splitting=None,
                   splits=(None,)) -> dict:  # fmt: skip
    """{split: pairs} read from files a line at a time into Arrow files in the `datasets` cache (memory-mapped, so
    memory does not grow with the corpus); `splits` are those `splitting` makes of a lone file (see `_write_pairs`),
    else (None,). The files are keyed by the files' contents and the settings: a second read of unchanged files with
    the same settings is those files, and a changed file is read anew."""
    settings = [PAIRS_FORMAT, file_fingerprint(*paths), kind, [str(path) for path in paths], source_lang,
                target_lang, columns, splitting]  # fmt: skip
    keys = {split: Hasher.hash([*settings, split]) for split in splits}
    folder = Path(cache_dir or datasets.config.HF_DATASETS_CACHE) / "hf_rnn_seq2seq"
    outputs = {split: folder / f"pairs-{key}.arrow" for split, key in keys.items()}
    dropped = {}
    if not all(path.is_file() for path in outputs.values()):
        folder.mkdir(parents=True, exist_ok=True)
        partial = {split: path.with_name(f"{path.name}.{os.getpid()}.incomplete") for split, path in outputs.items()}
        try:
            dropped = _write_pairs(partial, kind, paths, source_lang, target_lang, columns, splitting)
        except BaseException:
            for path in partial.values():
                path.unlink(missing_ok=True)
            raise
        for split, path in partial.items():
            path.replace(outputs[split])  # whole or not at all, even if the run is killed while writing
    result = {}
    for split, key in keys.items():
        dataset = datasets.Dataset(MemoryMappedTable.from_file(str(outputs[split])), fingerprint=key)
        label = what if split is None else f"{what} [{split}]"
        if len(dataset) == 0:
            raise DataError(f"{label}: no non-empty sentence pairs")
        if dropped.get(split):
            logger.warning("%s: dropped %d pair(s) with an empty side, kept %d", label, dropped[split], len(dataset))
        else:
            logger.info("%s: %d pairs", label, len(dataset))
        result[split] = dataset
    return result


# --------------------------------------------------------------------------- local directory


def load_parallel_dir(
    data_dir: str | Path,
    source_lang: str,
    target_lang: str,
    split_stems: Mapping[str, str] | None = None,
    splits: Sequence[str] = SPLITS,
    cache_dir: str | None = None,
) -> datasets.DatasetDict:
    """Load ``{stem}.{lang}`` or ``{stem}.{lang}.gz`` files (line i of each is one pair).

    `split_stems` maps our split names to file stems (default: Multi30k's
    train / val / test_2016_flickr); only the splits named in `splits` are loaded.
    """
    check_languages(source_lang, target_lang)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found")
    stems = {**MULTI30K_SPLIT_STEMS, **(split_stems or {})}
    unknown = set(splits) - set(stems)
    if unknown:
        raise DataError(f"unknown split name(s) {sorted(unknown)}; expected some of {list(stems)}")

    # files[(stem, lang)] = path; languages are only counted on files whose stem is a split stem,
    # so that README.md does not make "md" look like a language.
    files: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(data_dir.iterdir()):
        stem, _, lang = path.name.removesuffix(".gz").rpartition(".")
        if path.is_file() and stem in stems.values():
            files.setdefault((stem, lang), []).append(path)
    languages = sorted({lang for _, lang in files})
    for role, lang in (("source", source_lang), ("target", target_lang)):
        if lang not in languages:
            raise DataError(
                f"{data_dir}: unknown {role} language '{lang}': no file named <split>.{lang}[.gz] "
                f"for the splits {sorted(set(stems.values()))}; languages found: {', '.join(languages) or 'none'}"
            )

    result = {}
    for split in splits:
        stem = stems[split]
        paths = {}
        for lang in (source_lang, target_lang):
            candidates = files.get((stem, lang), [])
            if not candidates:
                found = sorted({s for s, _ in files})
                raise DataError(
                    f"{data_dir}: missing split '{split}': no file {stem}.{lang} or {stem}.{lang}.gz "
                    f"(split stems found: {', '.join(found)}; choose another stem with --{split}_split_stem)"
                )
            if len(candidates) > 1:
                raise DataError(f"{data_dir}: both {' and '.join(p.name for p in candidates)} exist; keep one")
            paths[lang] = candidates[0]
        what = f"{data_dir}/{stem}.{source_lang}-{target_lang}"
        result[split] = _file_datasets(
            "lines", [paths[source_lang], paths[target_lang]], source_lang, target_lang, what, cache_dir
        )[None]
    return datasets.DatasetDict(result)


def source_split(source: str, seed: int, validation_fraction: float, test_fraction: float) -> str:
    """The split ("train", "validation" or "test") of a pair, by a seeded hash of its normalised source.

    Hashing (instead of shuffling) keeps every copy of a source sentence in the same split,
    so a test sentence never has a twin in training, and the split does not depend on file
    order or on Python's per-process `hash` randomisation.
    """
    digest = hashlib.sha256(f"{seed}\x00{normalize(source)}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if position < test_fraction:
        return "test"
    return "validation" if position < test_fraction + validation_fraction else "train"


def load_parallel_files(
    files: Mapping[str, str | Path],
    source_lang: str,
    target_lang: str,
    columns: Sequence[str] | None = None,
    seed: int = 42,
    validation_fraction: float = 0.05,
    test_fraction: float = 0.05,
    cache_dir: str | None = None,
) -> datasets.DatasetDict:
    """Load `files` ({split: path}). With only a train file, carve validation/test out of it.

    The carving is `source_split` (deterministic for a given seed, sources never shared
    between splits). When several files are given, each is used as its split unchanged.
    """
    unknown = set(files) - set(SPLITS)
    if unknown:
        raise DataError(f"unknown split name(s) {sorted(unknown)}; expected some of {list(SPLITS)}")
    if set(files) != {"train"}:
        return datasets.DatasetDict({
            split: _file_datasets("file", [path], source_lang, target_lang, f"{path} [{split}]", cache_dir,
                                  columns)[None]
            for split, path in files.items()
        })  # fmt: skip
    if not (0 <= validation_fraction and 0 <= test_fraction and validation_fraction + test_fraction < 1):
        raise DataError(
            f"split fractions must be >= 0 and leave room for training, got validation={validation_fraction}, "
            f"test={test_fraction}"
        )
    splits = [split for split, fraction in (("train", 1.0), ("validation", validation_fraction),
                                            ("test", test_fraction)) if fraction]  # fmt: skip
    path = files["train"]
    return datasets.DatasetDict(
        _file_datasets("file", [path], source_lang, target_lang, str(path), cache_dir, columns,
                       (seed, validation_fraction, test_fraction), splits)
    )  # fmt: skip


# --------------------------------------------------------------------------- Hub datasets


def to_translation_dataset(dataset, source_lang: str, target_lang: str, what: str = "dataset"):
    """Map a dataset (or a streamed `IterableDataset`) with a `translation` column or one column per language to our
    layout, normalised, pairs with an empty side dropped (and counted, where the dataset has a length).

    `bentrevett/multi30k` has columns ``en`` and ``de``; WMT-style datasets have
    ``translation: {"de": ..., "en": ...}``. Both become the normalised `translation` column.
    """
    check_languages(source_lang, target_lang)
    nested = "translation" in dataset.column_names
    if nested:
        feature = dataset.features["translation"]
        languages = list(feature.languages if isinstance(feature, datasets.Translation) else feature)
    else:
        languages = [c for c in dataset.column_names if isinstance(dataset.features[c], datasets.Value)]
    for role, lang in (("source", source_lang), ("target", target_lang)):
        if lang not in languages:
            kind = "translation languages" if nested else "columns"
            raise DataError(f"{what}: unknown {role} language '{lang}'; the dataset has {kind} {', '.join(languages)}")

    def normalized(batch):
        if nested:
            sources, targets = ([row[lang] for row in batch["translation"]] for lang in (source_lang, target_lang))
        else:
            sources, targets = batch[source_lang], batch[target_lang]
        pairs = ((normalize(source), normalize(target)) for source, target in zip(sources, targets))
        return {"translation": [{source_lang: s, target_lang: t} for s, t in pairs if s and t]}

    mapped = dataset.map(
        normalized, batched=True, remove_columns=dataset.column_names, features=_features(source_lang, target_lang)
    )
    if isinstance(dataset, datasets.Dataset):
        if len(mapped) < len(dataset):
            logger.warning("%s: dropped %d pair(s) with an empty side", what, len(dataset) - len(mapped))
        if len(mapped) == 0:
            raise DataError(f"{what}: no non-empty sentence pairs")
    return mapped


def load_hub_dataset(
    name: str,
    source_lang: str,
    target_lang: str,
    config_name: str | None = None,
    cache_dir: str | None = None,
    streaming: bool = False,
) -> dict:
    """`datasets.load_dataset(name)` mapped to train/validation/test with a `translation` column. `streaming`: the
    training split is read as a stream (an `IterableDataset`, never downloaded whole); validation and test, which
    are translated and scored whole, are read into tables. Returns {split: dataset}."""
    raw = datasets.load_dataset(name, config_name, cache_dir=cache_dir, streaming=streaming)
    result = {}
    for split, dataset in raw.items():
        ours = _SPLIT_ALIASES.get(split, split)
        if ours not in SPLITS:
            continue
        if streaming:
            dataset = dataset._resolve_features() if dataset.features is None else dataset  # column names
        result[ours] = to_translation_dataset(dataset, source_lang, target_lang, f"{name} [{split}]")
        if streaming and ours != "train":
            result[ours] = datasets.Dataset.from_list(list(result[ours]), features=_features(source_lang, target_lang))
    if "train" not in result:
        raise DataError(f"{name}: missing split 'train' (the dataset has {', '.join(raw)})")
    return result


def first(dataset, limit: int | None):
    """The first `limit` rows (all when None) of a table or a stream."""
    if limit is None:
        return dataset
    if not isinstance(dataset, datasets.Dataset):
        return dataset.take(limit)
    return dataset.select(range(min(limit, len(dataset))))
