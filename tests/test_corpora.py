"""Corpora of any size: files read in a stream into the on-disk cache, cached tokenization, cleaning of the training
split, and token-based batches. (Peak memory and speed at millions of pairs: benchmarks/scale.py.)"""

import gzip
import json
import subprocess
import sys

import datasets
import numpy as np
import pytest
import torch
from accelerate.data_loader import BatchSamplerShard
from datasets.table import list_table_cache_files

from hf_rnn_seq2seq import data
from hf_rnn_seq2seq.data import DataError, load_parallel_dir, load_parallel_files
from hf_rnn_seq2seq.preprocessing import clean_training_pairs, pair_lengths, tokenize_split, tokenizer_training_texts
from hf_rnn_seq2seq.text_files import normalize
from hf_rnn_seq2seq.token_batches import TokenBatchSampler, token_batches
from hf_rnn_seq2seq.trainer import length_grouped_order, padded_lengths
from hf_rnn_seq2seq.tokenization import train_bpe_tokenizer
from helpers import TINY, TRAIN_PY, read_json, train

PAIRS = 3000
SMALL_WRITE_BATCH = 1000  # data.WRITE_BATCH in the tests that must cross the writer's batches: PAIRS is three of them


def whole_file_pairs(source_path, target_path):
    """The reference: both files read whole and split into lines, normalised, pairs with an empty side dropped."""

    def lines(path):
        text = gzip.decompress(path.read_bytes()).decode("utf-8") if path.suffix == ".gz" else path.read_text("utf-8")
        return text.removesuffix("\n").split("\n")

    pairs = zip(map(normalize, lines(source_path)), map(normalize, lines(target_path)), strict=True)
    return [{"de": source, "en": target} for source, target in pairs if source and target]


@pytest.fixture
def corpus(multi30k_dir, tmp_path):
    """The first PAIRS real Multi30k training pairs as gzip files, with a blank line in each side's middle."""
    for lang in ("de", "en"):
        with gzip.open(multi30k_dir / f"train.{lang}.gz", "rt", encoding="utf-8") as handle:
            lines = [next(handle) for _ in range(PAIRS)]
        lines[1500] = "\n" if lang == "de" else lines[1500]  # an empty source: dropped
        (tmp_path / f"train.{lang}.gz").write_bytes(gzip.compress("".join(lines).encode("utf-8")))
    return tmp_path


@pytest.fixture
def small_write_batches(monkeypatch):
    """The writer's batch (data.WRITE_BATCH, 10,000 pairs) cut to SMALL_WRITE_BATCH, so that PAIRS cross batches."""
    assert data.WRITE_BATCH > SMALL_WRITE_BATCH and PAIRS > 2 * SMALL_WRITE_BATCH
    monkeypatch.setattr(data, "WRITE_BATCH", SMALL_WRITE_BATCH)
    return SMALL_WRITE_BATCH


def load(folder, cache_dir):
    return load_parallel_dir(folder, "de", "en", split_stems={"train": "train"}, splits=["train"], cache_dir=cache_dir)


def test_reading_in_a_stream_gives_the_pairs_of_a_whole_file_read(corpus, small_write_batches, tmp_path):
    dataset = load(corpus, tmp_path / "cache")["train"]
    expected = whole_file_pairs(corpus / "train.de.gz", corpus / "train.en.gz")
    assert len(expected) == PAIRS - 1
    assert dataset["translation"] == expected
    assert all(file["filename"].startswith(str(tmp_path / "cache")) for file in dataset.cache_files)  # on disk


def test_errors_past_the_first_batch_name_the_file_and_line(corpus, small_write_batches, tmp_path):
    source = corpus / "train.de.gz"
    lines = gzip.decompress(source.read_bytes()).split(b"\n")
    bad = 2 * small_write_batches + 500  # 1-based: a line of the third batch
    lines[bad - 1] = b"Ein \xff Hund"
    source.write_bytes(gzip.compress(b"\n".join(lines)))
    with pytest.raises(DataError, match=rf"train\.de\.gz: line {bad} is not valid UTF-8 \(byte 0xff at column 5\)"):
        load(corpus, tmp_path / "cache")
    assert not list((tmp_path / "cache").rglob("pairs-*"))  # the two batches written before it were removed
    source.write_bytes(gzip.compress(b"\n".join(lines[: bad - 1] + lines[bad:])))  # one line fewer than the target
    with pytest.raises(DataError, match=rf"train\.de\.gz has {PAIRS - 1} lines but .*train\.en\.gz has {PAIRS}"):
        load(corpus, tmp_path / "cache")


def test_a_second_read_comes_from_the_cache_and_a_changed_file_is_read_again(corpus, tmp_path):
    first = load(corpus, tmp_path / "cache")["train"]
    again = load(corpus, tmp_path / "cache")["train"]
    assert again.cache_files == first.cache_files
    target = corpus / "train.en.gz"
    lines = gzip.decompress(target.read_bytes()).decode("utf-8").split("\n")
    lines[7] = "A changed line."
    target.write_bytes(gzip.compress("\n".join(lines).encode("utf-8")))
    changed = load(corpus, tmp_path / "cache")["train"]
    assert changed.cache_files != first.cache_files
    assert changed[7]["translation"]["en"] == "A changed line." != first[7]["translation"]["en"]


def test_tokenization_is_cached_per_pairs_tokenizer_and_settings(corpus, tmp_path):
    pairs = load(corpus, tmp_path / "cache")["train"]
    tokenizer = train_bpe_tokenizer(tokenizer_training_texts(pairs, "de", "en", 500, seed=0), vocab_size=300)
    other = train_bpe_tokenizer(tokenizer_training_texts(pairs, "de", "en", 500, seed=1), vocab_size=300)
    first = tokenize_split(pairs, tokenizer, "de", "en", None, 2, "tokenizing")
    # Cut to other limits, another tokenizer: tokenized anew. The same again (after those calls changed the
    # tokenizer's truncation state): read from the cache.
    cut = tokenize_split(pairs, tokenizer, "de", "en", (16, 16), 2, "tokenizing")
    retrained = tokenize_split(pairs, other, "de", "en", None, 2, "tokenizing")
    again = tokenize_split(pairs, tokenizer, "de", "en", None, 2, "tokenizing")
    assert again.cache_files == first.cache_files
    assert len({str(d.cache_files) for d in (first, cut, retrained)}) == 3
    assert max(cut["source_length"]) == 16 < max(first["source_length"])
    expected = tokenizer([pair["de"] for pair in pairs["translation"]])["input_ids"]
    assert first["input_ids"] == expected and first["source_length"] == [len(ids) for ids in expected]


def test_the_tokenizer_sample_is_deterministic_and_all_of_a_small_corpus(corpus, tmp_path):
    pairs = load(corpus, tmp_path / "cache")["train"]
    everything = list(tokenizer_training_texts(pairs, "de", "en", 10**6, seed=0))
    assert everything == [row[lang] for row in pairs["translation"] for lang in ("de", "en")]
    samples = [list(tokenizer_training_texts(pairs, "de", "en", 1500, seed=seed)) for seed in range(4)]
    assert all(len(sample) == 3000 for sample in samples) and len({tuple(sample) for sample in samples}) > 1
    assert samples[0] == list(tokenizer_training_texts(pairs, "de", "en", 1500, seed=0))
    texts = set(everything)
    assert all(text in texts for text in samples[0])


def test_cleaning_drops_and_counts_pairs_over_the_limits_or_too_uneven(corpus, tmp_path):
    pairs = load(corpus, tmp_path / "cache")["train"]
    tokenizer = train_bpe_tokenizer(tokenizer_training_texts(pairs, "de", "en", 10**6, seed=0), vocab_size=300)
    tokenized = tokenize_split(pairs, tokenizer, "de", "en", None, 1, "tokenizing")
    sources, targets = np.array(tokenized["source_length"]), np.array(tokenized["target_length"])
    kept, dropped = clean_training_pairs(tokenized, 40, 40, 1.5)
    too_long = (sources > 40) | (targets > 40)
    uneven = ~too_long & (np.maximum(sources, targets) > 1.5 * np.minimum(sources, targets))
    assert dropped == {"train_dropped_too_long": too_long.sum(), "train_dropped_length_ratio": uneven.sum()}
    assert too_long.sum() > 0 and uneven.sum() > 0
    assert kept["input_ids"] == [ids for ids, drop in zip(tokenized["input_ids"], too_long | uneven) if not drop]
    assert list_table_cache_files(kept._indices), "the kept rows' numbers belong on disk, not in memory"
    assert pair_lengths(kept)[0].tolist() == sources[~(too_long | uneven)].tolist()
    assert clean_training_pairs(tokenized, 10**4, 10**4, 0)[1] == {
        "train_dropped_too_long": 0, "train_dropped_length_ratio": 0
    }  # fmt: skip


def test_pair_lengths_are_the_length_columns_in_the_dataset_s_row_order(corpus, tmp_path):
    """Read from the files themselves, for two files one after the other, a selection, a slice, columns removed, and
    a table in memory: what `datasets` reads."""
    pairs = load(corpus, tmp_path / "cache")["train"]
    tokenizer = train_bpe_tokenizer(tokenizer_training_texts(pairs, "de", "en", 10**6, seed=0), vocab_size=300)
    whole = tokenize_split(pairs, tokenizer, "de", "en", None, 1, "tokenizing")
    cut = tokenize_split(pairs, tokenizer, "de", "en", (8, 8), 1, "tokenizing")
    two_files = datasets.concatenate_datasets([whole, cut])
    order = np.random.default_rng(0).permutation(len(two_files))[:500]
    variants = [
        whole, two_files, two_files.select(order), two_files.select(order, writer_batch_size=64),  # 1 and 8 pieces
        two_files.select(range(100, 2500)),
        two_files.remove_columns(["input_ids"]), datasets.Dataset.from_dict(whole[:50]),
    ]  # fmt: skip
    for dataset in variants:
        sources, targets = pair_lengths(dataset)
        assert sources.tolist() == dataset["source_length"] and targets.tolist() == dataset["target_length"]
    assert len(pair_lengths(two_files)[0]) == 2 * len(whole)


def test_train_py_drops_training_pairs_but_translates_every_test_sentence(multi30k_slice, tmp_path):
    data_dir = multi30k_slice(train=200, validation=24, test=24)
    out = tmp_path / "run"
    result = train(
        ["--data_dir", str(data_dir), "--output_dir", str(out), *TINY, "--do_train", "--do_predict",
         "--eval_strategy", "no", "--save_strategy", "no", "--max_steps", "2", "--max_source_length", "30",
         "--max_target_length", "30", "--val_max_target_length", "30"],
        cwd=tmp_path,
    )  # fmt: skip
    results = read_json(out / "train_results.json")
    assert results["train_dropped_too_long"] > 0
    assert results["train_samples"] == 200 - results["train_dropped_too_long"] - results["train_dropped_length_ratio"]
    assert f"cleaning: dropped {results['train_dropped_too_long']} training pair(s)" in result.stdout + result.stderr
    assert read_json(out / "test_results.json")["num_samples"] == 24


@pytest.fixture(scope="module")
def lengths(multi30k_dir):
    """Token lengths of 2,000 real pairs (a tokenizer of 400 pieces makes them long and varied)."""
    with gzip.open(multi30k_dir / "train.de.gz", "rt") as de, gzip.open(multi30k_dir / "train.en.gz", "rt") as en:
        pairs = [(next(de).strip(), next(en).strip()) for _ in range(2000)]
    tokenizer = train_bpe_tokenizer([s for pair in pairs for s in pair], vocab_size=400)
    encoded = [tokenizer([side for side in sides])["input_ids"] for sides in zip(*pairs)]
    return np.array([len(ids) for ids in encoded[0]]), np.array([len(ids) for ids in encoded[1]])


@pytest.mark.parametrize("budget", [1, 4, 20])
def test_token_batches_stay_within_the_budget_and_cover_every_pair_once(lengths, budget):
    sources, targets = lengths
    max_tokens = budget * max(sources.max(), targets.max())  # the smallest budget fits one longest pair
    batches = token_batches(sources, targets, max_tokens, seed=0)
    for batch in batches:
        assert len(batch) * max(sources[batch].max(), targets[batch].max()) <= max_tokens
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(sources)))
    # Similar lengths together: the padded batches are mostly real tokens.
    padded = sum(len(batch) * sources[batch].max() for batch in batches)
    assert sources.sum() / padded > (0.8 if budget > 1 else 0.5)


def test_token_batches_are_shuffled_per_epoch_and_drawn_from_the_seed_alone(lengths):
    epoch = [0]
    sampler = TokenBatchSampler(*lengths, max_tokens=300, seed=3, epoch=lambda: epoch[0])
    first = list(sampler)
    epoch[0] = 0.6  # resumed inside epoch 0
    assert list(sampler) == first
    epoch[0] = 1
    second = list(sampler)
    assert second != first and sorted(map(tuple, second)) == sorted(map(tuple, first)) and len(sampler) == len(first)
    assert list(TokenBatchSampler(*lengths, max_tokens=300, seed=3, epoch=lambda: 1)) == second


@pytest.mark.parametrize("max_tokens", [150, 301, 1000])
def test_two_processes_get_as_many_batches_and_never_the_same_pair(lengths, max_tokens):
    if max_tokens == 301:  # an odd number of batches for one process: one is split in two for two processes
        assert len(token_batches(*lengths, max_tokens, seed=0)) % 2 == 1
    sampler = TokenBatchSampler(*lengths, max_tokens=max_tokens, seed=0, epoch=lambda: 0, num_processes=2)
    shards = [list(BatchSamplerShard(sampler, num_processes=2, process_index=rank)) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(sampler) // 2
    pairs = [pair for shard in shards for batch in shard for pair in batch]
    assert sorted(pairs) == list(range(len(lengths[0])))


def test_a_pair_longer_than_the_budget_is_refused(lengths):
    with pytest.raises(ValueError, match="more tokens than --max_tokens_per_batch 20 allows"):
        token_batches(*lengths, 20, seed=0)


def test_load_parallel_files_splits_a_lone_file_in_a_stream(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "WRITE_BATCH", 128)  # four of the writer's batches, each split three ways
    lines = [f"Satz {i}.\tSentence {i}." for i in range(500)]
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    splits = load_parallel_files({"train": path}, "de", "en", columns=["de", "en"], cache_dir=str(tmp_path / "c"))
    seen = [row["de"] for split in splits.values() for row in split["translation"]]
    assert sorted(seen) == sorted(line.split("\t")[0] for line in lines)
    assert 0 < len(splits["test"]) < 50 and 0 < len(splits["validation"]) < 50


@pytest.mark.parametrize("batch_size", [7, 64])
def test_the_length_grouped_order_is_transformers_own_in_numpy(lengths, batch_size):
    """The default recipe's batches must not change with the memory-lean implementation."""
    from transformers.trainer_pt_utils import get_length_grouped_indices

    padded = padded_lengths(*lengths)
    for seed in range(3):
        expected = get_length_grouped_indices(padded.tolist(), batch_size, generator=torch.Generator().manual_seed(seed))
        ours = length_grouped_order(padded, batch_size, torch.Generator().manual_seed(seed))
        assert ours.tolist() == expected


def test_a_streamed_dataset_trains_for_max_steps_and_translates_the_whole_test_split(multi30k_slice, tmp_path):
    """--streaming reads the training split as it trains (validation and test whole); it needs --max_steps."""
    slice_dir = multi30k_slice(train=200, validation=24, test=24)
    folder = tmp_path / "dataset"  # a dataset folder as on the Hub: one JSON-lines file per split
    folder.mkdir()
    for split, stem in (("train", "train"), ("validation", "val"), ("test", "test_2016_flickr")):
        sides = [(slice_dir / f"{stem}.{lang}").read_text(encoding="utf-8").splitlines() for lang in ("de", "en")]
        rows = [json.dumps({"translation": {"de": de, "en": en}}) for de, en in zip(*sides)]
        (folder / f"{split}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    common = ["--dataset_name", str(folder), "--streaming", "--output_dir", str(out), *TINY, "--do_train",
              "--do_predict", "--eval_strategy", "no", "--save_strategy", "no"]  # fmt: skip
    refused = subprocess.run([sys.executable, str(TRAIN_PY), *common], cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode != 0 and "--streaming: a stream has no length, so pass --max_steps" in refused.stderr
    train([*common, "--max_steps", "3"], cwd=tmp_path)
    assert read_json(out / "trainer_state.json")["global_step"] == 3
    assert read_json(out / "test_results.json")["num_samples"] == 24
    with pytest.raises(subprocess.CalledProcessError) as error:
        subprocess.run([sys.executable, str(TRAIN_PY), *common, "--max_steps", "3", "--max_tokens_per_batch", "500"],
                       cwd=tmp_path, capture_output=True, text=True, check=True)  # fmt: skip
    assert "--max_tokens_per_batch needs every pair's length before training" in error.value.stderr
