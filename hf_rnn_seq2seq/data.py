"""Parallel corpora as a `datasets.DatasetDict` with one `translation` column.

Every loader returns splits named ``train`` / ``validation`` / ``test`` whose rows are
``{"translation": {source_lang: str, target_lang: str}}`` (the layout of
`run_translation.py`). Text is normalised the same way whatever the source (see `normalize`),
and pairs with an empty side are dropped and counted in the log.

Three sources are supported:

* a local directory in the Multi30k layout (`load_parallel_dir`),
* one TSV or JSON-lines file, or one file per split (`load_parallel_files`),
* a Hub dataset (`load_hub_dataset`, online only), mapped by `to_translation_dataset`.

`load_data` picks among them as train.py's arguments say.

Malformed input raises `DataError` (a `ValueError`) naming the file, and the line where
one is at fault, instead of failing later inside tokenisation or training.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import datasets

if TYPE_CHECKING:
    from .arguments import DataTrainingArguments

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")

# The read-only data next to the repository on the development machines (../shared/data/multi30k).
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"
# The same Multi30k splits on the Hub (columns "en", "de"), used when DEFAULT_DATA_DIR is absent.
DEFAULT_HUB_DATASET = "bentrevett/multi30k"

# Multi30k names its splits train / val / test_2016_flickr; other corpora can override the stems.
MULTI30K_SPLIT_STEMS = {"train": "train", "validation": "val", "test": "test_2016_flickr"}

# Split names some Hub datasets use for what we call "validation".
_SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}

# Every whitespace character becomes a plain space: no-break spaces (French typography puts U+00A0 / U+202F before
# "!?:;") would otherwise make "Va !" and "Va\u202f!" different strings for the tokenizer and for BLEU, and a tab or
# thin space, unknown to the tokenizer, would glue its neighbours together when decoded.
_WHITESPACE = re.compile(r"\s")

_JSON_SUFFIXES = (".json", ".jsonl")


class DataError(ValueError):
    """A parallel corpus is missing, malformed or does not contain the requested languages."""


def normalize(text: str) -> str:
    """Unicode NFC, every whitespace character (tabs, no-break and thin spaces, ...) to a space, ends stripped."""
    return unicodedata.normalize("NFC", _WHITESPACE.sub(" ", text)).strip()


def _read_lines(path: Path) -> list[str]:
    """Decode a (possibly gzip-compressed) UTF-8 text file into lines without line ends.

    Decoding line by line lets a bad byte be reported with its line number.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; truncated gzip is EOFError
        raise DataError(f"{path}: cannot be read ({e})") from e
    if not raw.strip():
        raise DataError(f"{path}: file is empty")
    chunks = raw.split(b"\n")
    if chunks[-1] == b"":  # final newline, not an extra empty line
        chunks.pop()
    lines = []
    for number, chunk in enumerate(chunks, start=1):
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path}: line {number} is not valid UTF-8 (byte {chunk[e.start]:#04x} at column {e.start + 1})"
            ) from None
        lines.append(line.rstrip("\r"))
    lines[0] = lines[0].removeprefix("\ufeff")  # a UTF-8 byte-order mark is not text
    return lines


def read_parallel_lines(source_path: str | Path, target_path: str | Path) -> tuple[list[str], list[str]]:
    """The lines of two line-aligned files (plain or gzip), refused when their line counts differ."""
    source_lines, target_lines = _read_lines(Path(source_path)), _read_lines(Path(target_path))
    if len(source_lines) != len(target_lines):
        raise DataError(
            f"{source_path} has {len(source_lines)} lines but {target_path} has "
            f"{len(target_lines)}: parallel files must have one line per sentence pair"
        )
    return source_lines, target_lines


def _pairs_to_dataset(
    sources: Iterable[str], targets: Iterable[str], source_lang: str, target_lang: str, what: str
) -> datasets.Dataset:
    """Normalise, drop pairs with an empty side (logging how many), build the `translation` column."""
    rows = []
    dropped = 0
    for source, target in zip(sources, targets, strict=True):
        source, target = normalize(source), normalize(target)
        if source and target:
            rows.append({source_lang: source, target_lang: target})
        else:
            dropped += 1
    if dropped:
        logger.warning("%s: dropped %d pair(s) with an empty side, kept %d", what, dropped, len(rows))
    else:
        logger.info("%s: %d pairs", what, len(rows))
    if not rows:
        raise DataError(f"{what}: no non-empty sentence pairs")
    features = datasets.Features(
        {"translation": {source_lang: datasets.Value("string"), target_lang: datasets.Value("string")}}
    )
    return datasets.Dataset.from_dict({"translation": rows}, features=features)


def _check_languages(source_lang: str, target_lang: str) -> None:
    if source_lang == target_lang:
        raise DataError(f"source and target language are both '{source_lang}'")


# --------------------------------------------------------------------------- local directory


def load_parallel_dir(
    data_dir: str | Path,
    source_lang: str,
    target_lang: str,
    split_stems: Mapping[str, str] | None = None,
    splits: Sequence[str] = SPLITS,
) -> datasets.DatasetDict:
    """Load ``{stem}.{lang}`` or ``{stem}.{lang}.gz`` files (line i of each is one pair).

    `split_stems` maps our split names to file stems (default: Multi30k's
    train / val / test_2016_flickr); only the splits named in `splits` are loaded.
    """
    _check_languages(source_lang, target_lang)
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
        source_lines, target_lines = read_parallel_lines(paths[source_lang], paths[target_lang])
        result[split] = _pairs_to_dataset(
            source_lines, target_lines, source_lang, target_lang, f"{data_dir}/{stem}.{source_lang}-{target_lang}"
        )
    return datasets.DatasetDict(result)


# --------------------------------------------------------------------------- TSV / JSON lines


def _is_json_lines(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    return name.endswith(_JSON_SUFFIXES)


def read_parallel_file(
    path: str | Path, source_lang: str, target_lang: str, columns: Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """Read one parallel file into (sources, targets), not yet normalised.

    * JSON lines (``.json``/``.jsonl``, optionally ``.gz``): each line is
      ``{"translation": {"en": ..., "fr": ...}}`` or ``{"en": ..., "fr": ...}``.
    * Anything else is TSV: ``columns`` names the language of each tab-separated field
      (e.g. ``["en", "fr"]`` for Tatoeba's ``fra.txt``); extra trailing fields (such as an
      attribution column) are ignored.
    """
    _check_languages(source_lang, target_lang)
    path = Path(path)
    lines = _read_lines(path)
    sources, targets = [], []
    if _is_json_lines(path):
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                sources.append("")
                targets.append("")
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {number} is not valid JSON ({e.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}: line {number} is not a JSON object")
            record = record.get("translation", record)
            for role, lang in (("source", source_lang), ("target", target_lang)):
                if lang not in record:
                    raise DataError(
                        f"{path}: line {number}: unknown {role} language '{lang}'; "
                        f"languages on this line: {', '.join(sorted(record)) or 'none'}"
                    )
            sources.append(str(record[source_lang]))
            targets.append(str(record[target_lang]))
        return sources, targets

    if not columns:
        raise DataError(f"{path}: a TSV file needs the language of each column (e.g. --file_languages en,fr)")
    columns = list(columns)
    for role, lang in (("source", source_lang), ("target", target_lang)):
        if lang not in columns:
            raise DataError(f"{path}: unknown {role} language '{lang}'; the file's columns are {', '.join(columns)}")
    source_index, target_index = columns.index(source_lang), columns.index(target_lang)
    for number, line in enumerate(lines, start=1):
        if not line.strip():  # a blank line is an empty pair: dropped and counted later
            sources.append("")
            targets.append("")
            continue
        fields = line.split("\t")
        if len(fields) < len(columns):
            problem = "has no tab separator" if len(fields) == 1 else f"has {len(fields)} fields"
            raise DataError(f"{path}: line {number} {problem}; expected {len(columns)} tab-separated fields")
        sources.append(fields[source_index])
        targets.append(fields[target_index])
    return sources, targets


def split_by_source(
    sources: Sequence[str], seed: int, validation_fraction: float, test_fraction: float
) -> list[str]:
    """Assign each pair to train/validation/test by a seeded hash of its normalised source.

    Hashing (instead of shuffling) keeps every copy of a source sentence in the same split,
    so a test sentence never has a twin in training, and the split does not depend on file
    order or on Python's per-process `hash` randomisation.
    """
    if not (0 <= validation_fraction and 0 <= test_fraction and validation_fraction + test_fraction < 1):
        raise DataError(
            f"split fractions must be >= 0 and leave room for training, got validation={validation_fraction}, "
            f"test={test_fraction}"
        )
    assignment = []
    for source in sources:
        digest = hashlib.sha256(f"{seed}\x00{normalize(source)}".encode()).digest()
        position = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
        if position < test_fraction:
            assignment.append("test")
        elif position < test_fraction + validation_fraction:
            assignment.append("validation")
        else:
            assignment.append("train")
    return assignment


def load_parallel_files(
    files: Mapping[str, str | Path],
    source_lang: str,
    target_lang: str,
    columns: Sequence[str] | None = None,
    seed: int = 42,
    validation_fraction: float = 0.05,
    test_fraction: float = 0.05,
) -> datasets.DatasetDict:
    """Load `files` ({split: path}). With only a train file, carve validation/test out of it.

    The carving is `split_by_source` (deterministic for a given seed, sources never shared
    between splits). When several files are given, each is used as its split unchanged.
    """
    unknown = set(files) - set(SPLITS)
    if unknown:
        raise DataError(f"unknown split name(s) {sorted(unknown)}; expected some of {list(SPLITS)}")
    if set(files) == {"train"}:
        path = files["train"]
        sources, targets = read_parallel_file(path, source_lang, target_lang, columns)
        assignment = split_by_source(sources, seed, validation_fraction, test_fraction)
        result = {}
        for split in SPLITS:
            if split != "train" and not (validation_fraction if split == "validation" else test_fraction):
                continue
            chosen = [i for i, s in enumerate(assignment) if s == split]
            result[split] = _pairs_to_dataset(
                (sources[i] for i in chosen), (targets[i] for i in chosen), source_lang, target_lang, f"{path} [{split}]"
            )
        return datasets.DatasetDict(result)
    result = {}
    for split, path in files.items():
        sources, targets = read_parallel_file(path, source_lang, target_lang, columns)
        result[split] = _pairs_to_dataset(sources, targets, source_lang, target_lang, f"{path} [{split}]")
    return datasets.DatasetDict(result)


# --------------------------------------------------------------------------- Hub datasets


def to_translation_dataset(
    dataset: datasets.Dataset, source_lang: str, target_lang: str, what: str = "dataset"
) -> datasets.Dataset:
    """Map a dataset with a `translation` column or one column per language to our layout.

    `bentrevett/multi30k` has columns ``en`` and ``de``; WMT-style datasets have
    ``translation: {"de": ..., "en": ...}``. Both become the normalised `translation` column.
    """
    _check_languages(source_lang, target_lang)
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
    if nested:
        rows = dataset["translation"]
        sources, targets = [r[source_lang] for r in rows], [r[target_lang] for r in rows]
    else:
        sources, targets = dataset[source_lang], dataset[target_lang]
    return _pairs_to_dataset(sources, targets, source_lang, target_lang, what)


def load_hub_dataset(
    name: str,
    source_lang: str,
    target_lang: str,
    config_name: str | None = None,
    cache_dir: str | None = None,
) -> datasets.DatasetDict:
    """`datasets.load_dataset(name)` mapped to train/validation/test with a `translation` column."""
    raw = datasets.load_dataset(name, config_name, cache_dir=cache_dir)
    result = {}
    for split, dataset in raw.items():
        ours = _SPLIT_ALIASES.get(split, split)
        if ours in SPLITS:
            result[ours] = to_translation_dataset(dataset, source_lang, target_lang, f"{name} [{split}]")
    if "train" not in result:
        raise DataError(f"{name}: missing split 'train' (the dataset has {', '.join(raw)})")
    return datasets.DatasetDict(result)


def load_data(data_args: DataTrainingArguments, splits: list[str], cache_dir: str | None) -> datasets.DatasetDict:
    """The requested splits of the corpus the arguments name (see DataTrainingArguments)."""
    src, tgt = data_args.source_lang, data_args.target_lang
    if data_args.dataset_name:
        raw = load_hub_dataset(data_args.dataset_name, src, tgt, data_args.dataset_config_name, cache_dir)
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
        )
        where = ", ".join(str(p) for p in files.values())
    elif data_args.data_dir is None and not DEFAULT_DATA_DIR.is_dir():
        logger.info("%s not found: loading Multi30k from the Hub (%s)", DEFAULT_DATA_DIR, DEFAULT_HUB_DATASET)
        try:
            raw = load_hub_dataset(DEFAULT_HUB_DATASET, src, tgt, cache_dir=cache_dir)
        except Exception as e:  # offline, no network, Hub down: all end the same way for the user
            raise DataError(
                f"no local Multi30k at {DEFAULT_DATA_DIR} and the Hub dataset {DEFAULT_HUB_DATASET} could not be "
                f"loaded ({e}). Point --data_dir at a local copy of Multi30k (files train.{src}.gz, val.{src}.gz, "
                f"test_2016_flickr.{src}.gz and the same for {tgt}; plain or .gz), or go online."
            ) from e
        where = DEFAULT_HUB_DATASET
    else:
        data_dir = data_args.data_dir or DEFAULT_DATA_DIR
        stems = {
            "train": data_args.train_split_stem,
            "validation": data_args.validation_split_stem,
            "test": data_args.test_split_stem,
        }
        return load_parallel_dir(data_dir, src, tgt, split_stems=stems, splits=splits)
    missing = [split for split in splits if split not in raw]
    if missing:
        raise DataError(f"{where}: missing split(s) {', '.join(missing)} (available: {', '.join(raw)})")
    return datasets.DatasetDict({split: raw[split] for split in splits})


def first(dataset: datasets.Dataset, limit: int | None) -> datasets.Dataset:
    """The first `limit` rows (all when None)."""
    return dataset if limit is None else dataset.select(range(min(limit, len(dataset))))
