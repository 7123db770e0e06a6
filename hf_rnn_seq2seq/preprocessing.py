"""From pairs of sentences to model inputs, for corpora of any size: the tokenizer (trained on a sample, cached),
tokenization cached on disk, and the cleaning of the training split.

Everything works on `datasets` tables held on disk and memory-mapped (or streamed), batch by batch, so memory does
not grow with the corpus. Tokenized splits are cached in the `datasets` cache under a fingerprint of the pairs
(itself a hash of the files' contents), the tokenizer and the settings: a second run on the same data reuses them,
and a changed file or tokenizer is tokenized anew.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator

from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
from datasets.fingerprint import Hasher
from datasets.table import list_table_cache_files
from transformers import AutoTokenizer

from .tokenization import train_bpe_tokenizer

logger = logging.getLogger(__name__)

# Changing what `tokenize_pairs` computes must change this, so that no cache written before is reused.
TOKENIZATION_VERSION = 3
LENGTH_COLUMNS = ("source_length", "target_length")  # tokens per side, EOS included
# 32-bit ids and lengths: half the cache, half the memory of the length columns read whole at millions of pairs.
TOKENIZED_FEATURES = datasets.Features(
    {
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "labels": datasets.Sequence(datasets.Value("int32")),
        **{column: datasets.Value("int32") for column in LENGTH_COLUMNS},
    }
)
SAMPLE_RUN = 1000
PARALLEL_FROM = 10_000  # pairs; fewer are tokenized sooner in this process than worker processes start
# Rows per Arrow record batch of the tokenized cache. Opening the cache touches each batch's message, and the kernel
# maps 64 KB around every touch: with datasets' default of 1,000 rows that was 63% of a 1M-pair cache's pages,
# resident in every run that read it (0.7 GB at 10M pairs); 10,000 rows map a tenth of that.
CACHE_RECORD_BATCH = 10_000


def tokenizer_training_texts(
    train, source_lang: str, target_lang: str, samples: int, seed: int
) -> Iterator[str]:
    """Both sides of `samples` training pairs drawn with `seed` (all pairs, in order, when there are no more; the
    first `samples` of a stream), read batch by batch. The sample is made of runs of SAMPLE_RUN consecutive pairs
    (the corpora are shuffled or at worst sorted by document), so that it reads a fraction of the table's pages
    rather than nearly all of them."""
    if isinstance(train, datasets.Dataset) and len(train) > samples:
        runs = np.random.default_rng(seed).choice(math.ceil(len(train) / SAMPLE_RUN), math.ceil(samples / SAMPLE_RUN),
                                                  replace=False)  # fmt: skip
        starts = np.sort(runs) * SAMPLE_RUN
        indices = np.concatenate([np.arange(start, min(start + SAMPLE_RUN, len(train))) for start in starts])
        train = train.select(indices[:samples])
    elif not isinstance(train, datasets.Dataset):
        train = train.take(samples)
    for batch in train.iter(batch_size=1000):
        for pair in batch["translation"]:
            yield pair[source_lang]
            yield pair[target_lang]


def cached_tokenizer(train, source_lang: str, target_lang: str, vocab_size: int, min_frequency: int, samples: int,
                     seed: int):  # fmt: skip
    """A joint BPE tokenizer trained on `tokenizer_training_texts`, kept in the `datasets` cache beside the training
    pairs it was trained on (keyed by them and the settings): a second run on the same data loads it."""
    folder = None
    if isinstance(train, datasets.Dataset) and train.cache_files:
        key = Hasher.hash([train._fingerprint, source_lang, target_lang, vocab_size, min_frequency, samples, seed])
        folder = Path(train.cache_files[0]["filename"]).parent / f"hf_rnn_seq2seq-tokenizer-{key}"
        if (folder / "tokenizer.json").is_file():
            logger.info("the tokenizer trained on these pairs before: %s", folder)
            return AutoTokenizer.from_pretrained(folder)
    texts = tokenizer_training_texts(train, source_lang, target_lang, samples, seed)
    tokenizer = train_bpe_tokenizer(texts, vocab_size, min_frequency)
    if folder is not None:
        tokenizer.save_pretrained(folder)
    return tokenizer


def tokenize_pairs(batch, tokenizer, source_lang, target_lang, limits) -> dict:
    """Source ids and label ids (EOS appended) and both lengths, cut to `limits` (max source, max target length)
    where given (None: whole). The Rust tokenizer's own batch encoding, which is what the tokenizer's call runs,
    without the Python work of its outputs; no attention mask (all ones: the collator makes it when it pads)."""
    backend = tokenizer.backend_tokenizer
    pairs = batch["translation"]
    columns = {}
    for column, lang, limit in zip(("input_ids", "labels"), (source_lang, target_lang), limits or (None, None)):
        if limit is None:
            backend.no_truncation()
        else:
            backend.enable_truncation(limit)  # as the tokenizer's call with truncation=True, max_length=limit
        columns[column] = [encoding.ids for encoding in backend.encode_batch([pair[lang] for pair in pairs])]
    backend.no_truncation()  # (the tokenizer's call sets what it needs; leave no state behind)
    columns["source_length"] = [len(ids) for ids in columns["input_ids"]]
    columns["target_length"] = [len(ids) for ids in columns["labels"]]
    return columns


def tokenize_split(dataset, tokenizer, source_lang: str, target_lang: str, limits: tuple[int, int] | None,
                   num_workers: int | None, description: str):  # fmt: skip
    """`tokenize_pairs` over a split, with `num_workers` processes, cached under a fingerprint of the pairs, the
    tokenizer and the settings. `limits` (max source, max target length) cut the sentences; None keeps them whole
    (the training split, cleaned afterwards)."""
    settings = dict(tokenizer=tokenizer, source_lang=source_lang, target_lang=target_lang, limits=limits)
    if not isinstance(dataset, datasets.Dataset):  # a stream: tokenized as it is read
        return dataset.map(tokenize_pairs, batched=True, fn_kwargs=settings, remove_columns=["translation"])
    fingerprint = Hasher.hash(
        [dataset._fingerprint, _tokenizer_identity(tokenizer), source_lang, target_lang, limits, TOKENIZATION_VERSION]
    )
    return dataset.map(
        tokenize_pairs,
        batched=True,
        fn_kwargs=settings,
        features=TOKENIZED_FEATURES,
        remove_columns=dataset.column_names,
        num_proc=num_workers if num_workers and num_workers > 1 and len(dataset) >= PARALLEL_FROM else None,
        batch_size=CACHE_RECORD_BATCH,  # a batched map writes each batch it returns as one record batch
        writer_batch_size=CACHE_RECORD_BATCH,
        new_fingerprint=fingerprint,
        desc=description,
    )


def _tokenizer_identity(tokenizer) -> str:
    """What the tokenizer computes (vocabulary, merges, normalisation, post-processing), without the truncation and
    padding state a call leaves behind."""
    saved = json.loads(tokenizer.backend_tokenizer.to_str())
    saved.pop("truncation", None)
    saved.pop("padding", None)
    return json.dumps(saved, sort_keys=True)


def clean_training_pairs(train, max_source_length: int, max_target_length: int, max_length_ratio: float):
    """Drop training pairs a translation model should not learn from: a side over its length limit (cutting it
    would leave a source and a target that no longer translate each other), or sides whose lengths differ by more
    than `max_length_ratio` times (0: no ratio limit). Returns the kept pairs and how many were dropped, and why."""
    limits = (max_source_length, max_target_length)
    keep = dict(function=_keep, batched=True, input_columns=list(LENGTH_COLUMNS), batch_size=CACHE_RECORD_BATCH,
                fn_kwargs=dict(limits=limits, max_ratio=max_length_ratio))  # fmt: skip
    if not isinstance(train, datasets.Dataset):  # a stream: filtered as it is read, not counted
        return train.filter(**keep), {}
    too_long, uneven = _drop_reasons(*pair_lengths(train), limits, max_length_ratio)
    dropped = {"train_dropped_too_long": int(too_long.sum()), "train_dropped_length_ratio": int(uneven.sum())}
    logger.info(
        "cleaning: dropped %d training pair(s) over the length limits (%d source / %d target tokens) and %d whose "
        "sides differ in length more than %g times; %d kept",
        dropped["train_dropped_too_long"], max_source_length, max_target_length, dropped["train_dropped_length_ratio"],
        max_length_ratio, len(train) - sum(dropped.values()),
    )  # fmt: skip
    if not any(dropped.values()):
        return train, dropped
    # A filter writes the kept rows' numbers to a cached file, batch by batch. `select` would make a list of Python
    # integers of them (0.8 GB at 10M pairs, for a moment) and keep their table in memory for the whole run.
    kept = train.filter(**keep, desc="cleaning")
    if len(kept) == 0:
        raise ValueError("cleaning dropped every training pair: raise --max_source_length / --max_target_length")
    return kept, dropped


def pair_lengths(dataset: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Source and target lengths in tokens (the columns tokenization wrote), in the dataset's row order, read without
    the sentences.

    Read from the Arrow files through a memory map of their own, closed after: read through the dataset's map, the
    kernel would map the cached pages around each page of the two columns as well (64 KB windows, about three times
    the columns' size: 0.13 GB at 10M pairs) and they would stay resident in the process. A table that is not the
    files as tokenization wrote them (in memory, other columns) is read through `datasets`."""
    files = list_table_cache_files(dataset.data)
    lengths = _read_length_columns(files, dataset.data.num_rows) if files else None
    if lengths is None:
        columns = dataset.with_format("numpy", columns=list(LENGTH_COLUMNS))[:]
        return columns["source_length"], columns["target_length"]
    if dataset._indices is None:
        return lengths
    selected = tuple(np.empty(len(dataset), dtype=np.int32) for _ in LENGTH_COLUMNS)
    start = 0
    for rows in dataset._indices.column(0).chunks:  # a selection of the files' rows (the cleaning's), piece by piece
        rows = rows.to_numpy()
        for all_rows, out in zip(lengths, selected):
            np.take(all_rows, rows, out=out[start : start + len(rows)])
        start += len(rows)
    return selected


def _read_length_columns(files: list[str], rows: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The length columns of Arrow stream files, one after the other, written into arrays of `rows` each (no
    concatenation: the arrays are the only copy); None unless the files have such columns and `rows` rows in all."""
    columns = tuple(np.empty(rows, dtype=np.int32) for _ in LENGTH_COLUMNS)
    filled = 0
    for path in files:
        with pa.memory_map(path) as source:  # the map is gone once this file is read: nothing holds its pages
            reader = pa.ipc.open_stream(source)
            if not set(LENGTH_COLUMNS) <= set(reader.schema.names):
                return None
            for batch in reader:
                if filled + batch.num_rows > rows:
                    return None
                for array, column in zip(columns, LENGTH_COLUMNS):
                    array[filled : filled + batch.num_rows] = batch.column(column).to_numpy()
                filled += batch.num_rows
    return columns if filled == rows else None


def _drop_reasons(sources, targets, limits: tuple[int, int], max_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """The cleaning's one rule, as masks of the pairs it drops: a side over its limit (max source, max target length);
    else sides whose lengths differ more than `max_ratio` times (0: no ratio limit)."""
    sources, targets = np.asarray(sources), np.asarray(targets)
    too_long = (sources > limits[0]) | (targets > limits[1])
    if not max_ratio:
        return too_long, np.zeros_like(too_long)
    return too_long, ~too_long & (np.maximum(sources, targets) > max_ratio * np.minimum(sources, targets))


def _keep(sources, targets, limits, max_ratio) -> list[bool]:
    """The pairs of a batch the cleaning keeps (the filter's function)."""
    too_long, uneven = _drop_reasons(sources, targets, limits, max_ratio)
    return (~(too_long | uneven)).tolist()
