"""Reading parallel text files: plain or gzip, line-aligned pairs of files, TSV and JSON lines.

Every reader refuses malformed input with a `DataError` naming the file, and the line where one is at fault
(a byte that is not UTF-8, a line without its tab, mismatched line counts), instead of failing later inside
tokenisation or training. Text comes back as it is in the file; `normalize` is what every loader applies to it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from itertools import zip_longest
from pathlib import Path
from typing import BinaryIO

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


def decode_lines(handle: BinaryIO, name: str | Path) -> Iterator[str]:
    """The lines of a binary stream without their line ends (a UTF-8 byte-order mark dropped), read one at a time;
    a byte that is not UTF-8 is refused with its line and column. Lines end at "\\n" only, as files count them."""
    try:
        for number, chunk in enumerate(handle, start=1):
            chunk = chunk.removesuffix(b"\n")
            try:
                line = chunk.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{name}: line {number} is not valid UTF-8 (byte {chunk[e.start]:#04x} at column {e.start + 1})"
                ) from None
            if number == 1:
                line = line.removeprefix("\ufeff")  # a UTF-8 byte-order mark is not text
            yield line.rstrip("\r")
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError; a truncated gzip file raises EOFError
        raise DataError(f"{name}: cannot be read ({e})") from e


def iter_lines(path: str | Path, allow_empty: bool = False) -> Iterator[str]:
    """The lines of a (possibly gzip-compressed) UTF-8 text file (`decode_lines`), so that memory does not grow with
    the file. A file without text is refused unless `allow_empty` (a file to translate keeps its empty lines)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        handle = opener(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e})") from e
    has_text = False
    with handle:
        for line in decode_lines(handle, path):
            has_text = has_text or bool(line.strip())
            yield line
    if not has_text and not allow_empty:
        raise DataError(f"{path}: file is empty")


def iter_parallel_lines(source_path: str | Path, target_path: str | Path) -> Iterator[tuple[str, str]]:
    """Line i of each of two line-aligned files (plain or gzip), refused when their line counts differ."""
    sources, targets = iter_lines(source_path), iter_lines(target_path)
    for number, (source, target) in enumerate(zip_longest(sources, targets), start=1):
        if source is None or target is None:  # one file ended: count the rest of the other for the message
            source_count = number - 1 + (source is not None) + sum(1 for _ in sources)
            target_count = number - 1 + (target is not None) + sum(1 for _ in targets)
            raise DataError(
                f"{source_path} has {source_count} lines but {target_path} has {target_count}: parallel files must "
                "have one line per sentence pair"
            )
        yield source, target


def read_parallel_lines(source_path: str | Path, target_path: str | Path) -> tuple[list[str], list[str]]:
    """`iter_parallel_lines` as two lists, for files small enough to hold (hypotheses and references)."""
    pairs = list(iter_parallel_lines(source_path, target_path))
    return [source for source, _ in pairs], [target for _, target in pairs]


def check_languages(source_lang: str, target_lang: str) -> None:
    if source_lang == target_lang:
        raise DataError(f"source and target language are both '{source_lang}'")



def _is_json_lines(path: Path) -> bool:
    name = path.name.removesuffix(".gz")
    return name.endswith(_JSON_SUFFIXES)


def iter_parallel_file(
    path: str | Path, source_lang: str, target_lang: str, columns: Sequence[str] | None = None
) -> Iterator[tuple[str, str]]:
    """The (source, target) pairs of one parallel file, not yet normalised, read one line at a time.

    * JSON lines (``.json``/``.jsonl``, optionally ``.gz``): each line is
      ``{"translation": {"en": ..., "fr": ...}}`` or ``{"en": ..., "fr": ...}``.
    * Anything else is TSV: ``columns`` names the language of each tab-separated field
      (e.g. ``["en", "fr"]`` for Tatoeba's ``fra.txt``); extra trailing fields (such as an
      attribution column) are ignored.

    A blank line is an empty pair (dropped and counted by the loaders).
    """
    check_languages(source_lang, target_lang)
    path = Path(path)
    if _is_json_lines(path):
        yield from _json_lines_pairs(path, source_lang, target_lang)
        return
    if not columns:
        raise DataError(f"{path}: a TSV file needs the language of each column (e.g. --file_languages en,fr)")
    columns = list(columns)
    for role, lang in (("source", source_lang), ("target", target_lang)):
        if lang not in columns:
            raise DataError(f"{path}: unknown {role} language '{lang}'; the file's columns are {', '.join(columns)}")
    source_index, target_index = columns.index(source_lang), columns.index(target_lang)
    for number, line in enumerate(iter_lines(path), start=1):
        if not line.strip():
            yield "", ""
            continue
        fields = line.split("\t")
        if len(fields) < len(columns):
            problem = "has no tab separator" if len(fields) == 1 else f"has {len(fields)} fields"
            raise DataError(f"{path}: line {number} {problem}; expected {len(columns)} tab-separated fields")
        yield fields[source_index], fields[target_index]


def _json_lines_pairs(path: Path, source_lang: str, target_lang: str) -> Iterator[tuple[str, str]]:
    for number, line in enumerate(iter_lines(path), start=1):
        if not line.strip():
            yield "", ""
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
        yield str(record[source_lang]), str(record[target_lang])


def file_fingerprint(*paths: str | Path) -> str:
    """A hash of the files' contents: what cached datasets built from them are keyed by, so that a changed file is
    read again, never served stale from the cache."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(Path(path).name).encode() + b"\0")
        try:
            with open(path, "rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
        except FileNotFoundError:
            raise DataError(f"{path}: file not found") from None
    return digest.hexdigest()
