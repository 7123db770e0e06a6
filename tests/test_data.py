"""Corpus loading: layouts, normalisation, deterministic leak-free splits, and one clear error per bad input."""

import gzip
import json
import logging
from collections import defaultdict

import datasets
import pytest

from hf_rnn_seq2seq.data import (
    DataError,
    load_parallel_dir,
    load_parallel_files,
    normalize,
    source_split,
    to_translation_dataset,
)


def write(path, text, compress=False):
    data = text.encode("utf-8") if isinstance(text, str) else text
    if compress:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def small_dir(tmp_path, de="Ein Hund.\nZwei Katzen.\n", en="A dog.\nTwo cats.\n", stems=("train", "val", "test_2016_flickr")):
    for stem in stems:
        write(tmp_path / f"{stem}.de", de)
        write(tmp_path / f"{stem}.en", en)
    return tmp_path


# --------------------------------------------------------------------------- normalisation


def test_normalize_nfc_whitespace_and_strip():
    decomposed = "Cafe\u0301"  # e + combining acute accent
    assert normalize(decomposed) == "Caf\u00e9"
    assert normalize("  Va\u00a0!\t") == "Va !"
    assert normalize("Quoi\u202f?") == "Quoi ?"
    assert normalize(" \u00a0 ") == ""
    # Tabs, thin, ideographic and line-separator spaces would be unknown to the tokenizer and glue words together.
    assert normalize("ein\tHund\u2009und\u3000eine\u2028Katze") == "ein Hund und eine Katze"


def test_normalisation_applies_to_loaded_text(tmp_path):
    write(tmp_path / "train.fr", "  Va\u202f!\nCafe\u0301\n")
    write(tmp_path / "train.en", "Go!  \nCoffee\n")
    ds = load_parallel_dir(tmp_path, "fr", "en", splits=["train"])
    assert ds["train"]["translation"] == [{"fr": "Va !", "en": "Go!"}, {"fr": "Caf\u00e9", "en": "Coffee"}]


def test_empty_pairs_are_dropped_and_counted(tmp_path, caplog):
    write(tmp_path / "train.de", "Ein Hund.\n\nDrei.\n  \n")
    write(tmp_path / "train.en", "A dog.\nTwo cats.\n\nFour.\n")
    with caplog.at_level(logging.INFO, logger="hf_rnn_seq2seq.data"):
        ds = load_parallel_dir(tmp_path, "de", "en", splits=["train"])
    assert ds["train"]["translation"] == [{"de": "Ein Hund.", "en": "A dog."}]
    assert "dropped 3 pair(s) with an empty side, kept 1" in caplog.text


# --------------------------------------------------------------------------- layouts


def test_real_multi30k_directory_both_directions(multi30k_dir):
    de_en = load_parallel_dir(multi30k_dir, "de", "en")
    assert {split: len(ds) for split, ds in de_en.items()} == {"train": 29000, "validation": 1014, "test": 1000}
    first = de_en["train"][0]["translation"]
    assert first == {
        "de": "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.",
        "en": "Two young, White males are outside near many bushes.",
    }
    en_fr = load_parallel_dir(multi30k_dir, "en", "fr", splits=["test"])
    assert list(en_fr) == ["test"]
    assert en_fr["test"][0]["translation"]["en"] == de_en["test"][0]["translation"]["en"]


def test_plain_and_gzip_files_and_split_stem_override(tmp_path):
    write(tmp_path / "train.de", "Ein Hund.\n", compress=False)
    write(tmp_path / "train.en.gz", "A dog.\n", compress=True)
    write(tmp_path / "dev.de.gz", "Eine Katze.\n", compress=True)
    write(tmp_path / "dev.en", "A cat.\n")
    ds = load_parallel_dir(tmp_path, "de", "en", split_stems={"validation": "dev"}, splits=["train", "validation"])
    assert ds["train"][0]["translation"] == {"de": "Ein Hund.", "en": "A dog."}
    assert ds["validation"][0]["translation"] == {"de": "Eine Katze.", "en": "A cat."}


def test_json_lines_files_per_split(tmp_path):
    train = write(
        tmp_path / "train.jsonl",
        json.dumps({"translation": {"en": "Hi.", "fr": "Salut."}}) + "\n" + json.dumps({"en": "Go.", "fr": "Va."}) + "\n",
    )
    test = write(tmp_path / "test.json", json.dumps({"translation": {"en": "Run!", "fr": "Cours\u00a0!"}}) + "\n")
    ds = load_parallel_files({"train": train, "test": test}, "fr", "en")
    assert ds["train"]["translation"] == [{"fr": "Salut.", "en": "Hi."}, {"fr": "Va.", "en": "Go."}]
    assert ds["test"]["translation"] == [{"fr": "Cours !", "en": "Run!"}]


def test_column_per_language_dataset_is_mapped():
    # The layout of bentrevett/multi30k: one string column per language.
    hub_like = datasets.Dataset.from_dict({"en": ["A dog.", " Two\u00a0cats. ", "x"], "de": ["Ein Hund.", "Zwei Katzen.", ""]})
    ds = to_translation_dataset(hub_like, "de", "en")
    assert ds.column_names == ["translation"]
    assert ds["translation"] == [{"de": "Ein Hund.", "en": "A dog."}, {"de": "Zwei Katzen.", "en": "Two cats."}]


def test_translation_column_dataset_is_mapped():
    features = datasets.Features({"translation": datasets.Translation(languages=["de", "en"])})
    wmt_like = datasets.Dataset.from_dict({"translation": [{"de": "Ein Hund.", "en": "A dog."}]}, features=features)
    assert to_translation_dataset(wmt_like, "en", "de")["translation"] == [{"en": "A dog.", "de": "Ein Hund."}]


# --------------------------------------------------------------------------- seeded split of one file


@pytest.fixture(scope="module")
def tatoeba_head(multi30k_dir, tmp_path_factory):
    """The first 4000 Tatoeba pairs (short sentences, many English duplicates) as a plain TSV."""
    path = multi30k_dir.parent / "tatoeba-fra-eng" / "fra.txt.gz"
    if not path.exists():
        pytest.fail(f"the Tatoeba data is expected at {path}")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [next(f) for _ in range(4000)]
    return write(tmp_path_factory.mktemp("tatoeba") / "fra.txt", "".join(lines))


def test_file_split_is_deterministic_and_keeps_sources_together(tatoeba_head):
    load = lambda seed: load_parallel_files(  # noqa: E731
        {"train": tatoeba_head}, "en", "fr", columns=["en", "fr"], seed=seed, validation_fraction=0.1, test_fraction=0.1
    )
    first, again, other = load(42), load(42), load(7)
    for split in ("train", "validation", "test"):
        assert first[split]["translation"] == again[split]["translation"]
    assert first["test"]["translation"] != other["test"]["translation"]

    splits_of = defaultdict(set)
    for split, ds in first.items():
        for pair in ds["translation"]:
            splits_of[pair["en"]].add(split)
    assert all(len(s) == 1 for s in splits_of.values()), "a source sentence is in two splits"
    run_splits = [split for split, ds in first.items() for pair in ds["translation"] if pair["en"] == "Run!"]
    assert len(run_splits) == 2 and len(set(run_splits)) == 1  # "Run!" has two French translations
    total = sum(len(ds) for ds in first.values())
    assert total == 4000
    assert 0.05 < len(first["test"]) / total < 0.15
    assert 0.05 < len(first["validation"]) / total < 0.15


def test_source_split_groups_identical_sources():
    sources = ["a", "b", "a", "c", " a "] * 10
    assignment = [source_split(source, seed=3, validation_fraction=0.3, test_fraction=0.3) for source in sources]
    assert len({assignment[i] for i, s in enumerate(sources) if s.strip() == "a"}) == 1
    assert len(set(assignment)) > 1


# --------------------------------------------------------------------------- one clear error per bad input


def test_error_parallel_files_with_different_line_counts(tmp_path):
    small_dir(tmp_path)
    write(tmp_path / "val.en", "A dog.\nTwo cats.\nThree birds.\n")
    with pytest.raises(DataError, match=r"val\.de has 2 lines but .*val\.en has 3"):
        load_parallel_dir(tmp_path, "de", "en")


def test_error_empty_file(tmp_path):
    small_dir(tmp_path)
    write(tmp_path / "test_2016_flickr.de", "")
    with pytest.raises(DataError, match=r"test_2016_flickr\.de: file is empty"):
        load_parallel_dir(tmp_path, "de", "en")


def test_error_empty_gzip_file(tmp_path):
    small_dir(tmp_path, stems=("train",))
    (tmp_path / "train.en").unlink()
    write(tmp_path / "train.en.gz", "", compress=True)
    with pytest.raises(DataError, match=r"train\.en\.gz: file is empty"):
        load_parallel_dir(tmp_path, "de", "en", splits=["train"])


def test_error_missing_split(tmp_path):
    small_dir(tmp_path, stems=("train", "val"))
    with pytest.raises(DataError, match=r"missing split 'test': no file test_2016_flickr\.de"):
        load_parallel_dir(tmp_path, "de", "en")


def test_error_unknown_language_in_directory(tmp_path):
    small_dir(tmp_path)
    with pytest.raises(DataError, match=r"unknown target language 'fr'.*languages found: de, en"):
        load_parallel_dir(tmp_path, "de", "fr")


def test_error_unknown_language_in_tsv(tmp_path):
    path = write(tmp_path / "pairs.tsv", "Go.\tVa !\n")
    with pytest.raises(DataError, match=r"pairs\.tsv: unknown source language 'de'; the file's columns are en, fr"):
        load_parallel_files({"train": path}, "de", "en", columns=["en", "fr"])


def test_error_unknown_language_in_json_lines(tmp_path):
    path = write(tmp_path / "pairs.jsonl", json.dumps({"translation": {"en": "Go.", "fr": "Va !"}}) + "\n")
    with pytest.raises(DataError, match=r"pairs\.jsonl: line 1: unknown target language 'de'"):
        load_parallel_files({"train": path}, "en", "de")


def test_error_unknown_language_in_dataset_columns():
    hub_like = datasets.Dataset.from_dict({"en": ["A dog."], "de": ["Ein Hund."]})
    with pytest.raises(DataError, match=r"unknown source language 'fr'; the dataset has columns en, de"):
        to_translation_dataset(hub_like, "fr", "en")


def test_error_non_utf8_file_names_file_and_line(tmp_path):
    small_dir(tmp_path)
    write(tmp_path / "train.de", "Ein Hund.\nZwei K\xe4tzchen.\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"train\.de: line 2 is not valid UTF-8"):
        load_parallel_dir(tmp_path, "de", "en")


def test_error_tsv_line_without_separator(tmp_path):
    path = write(tmp_path / "fra.txt.gz", "Go.\tVa !\nHi. Salut !\n", compress=True)
    with pytest.raises(DataError, match=r"fra\.txt\.gz: line 2 has no tab separator"):
        load_parallel_files({"train": path}, "en", "fr", columns=["en", "fr"])


def test_error_invalid_json_line(tmp_path):
    path = write(tmp_path / "pairs.jsonl", '{"en": "Go.", "fr": "Va !"}\n{"en": "Hi.", \n')
    with pytest.raises(DataError, match=r"pairs\.jsonl: line 2 is not valid JSON"):
        load_parallel_files({"train": path}, "en", "fr")


def test_error_tsv_without_column_languages(tmp_path):
    path = write(tmp_path / "pairs.tsv", "Go.\tVa !\n")
    with pytest.raises(DataError, match=r"needs the language of each column"):
        load_parallel_files({"train": path}, "en", "fr")


def test_error_missing_data_directory(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: data directory not found"):
        load_parallel_dir(tmp_path / "nowhere", "de", "en")


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_error_missing_split_of_parallel_files(tmp_path):
    """A train file alone, with no share held out for validation: train.py's split list names what is missing."""
    from hf_rnn_seq2seq.arguments import DataTrainingArguments
    from hf_rnn_seq2seq.corpus import load_data

    train = write(tmp_path / "pairs.tsv", "Go.\tVa !\nHi.\tSalut.\n")
    data_args = DataTrainingArguments(
        source_lang="fr", target_lang="en", train_file=str(train), file_languages="en,fr",
        validation_split_percentage=0, test_split_percentage=0,
    )  # fmt: skip
    with pytest.raises(DataError, match=r"pairs\.tsv: missing split\(s\) validation, test \(available: train\)"):
        load_data(data_args, ["train", "validation", "test"], cache_dir=None)


def test_error_missing_split_of_a_dataset_by_name(tmp_path):
    """--dataset_name takes what `datasets.load_dataset` reads: here a local folder holding a train split only."""
    from hf_rnn_seq2seq.arguments import DataTrainingArguments
    from hf_rnn_seq2seq.corpus import load_data

    folder = tmp_path / "pairs"
    folder.mkdir()
    write(folder / "train.jsonl", json.dumps({"translation": {"en": "Hi.", "fr": "Salut."}}) + "\n")
    data_args = DataTrainingArguments(source_lang="fr", target_lang="en", dataset_name=str(folder))
    with pytest.raises(DataError, match=r"pairs: missing split\(s\) test \(available: train\)"):
        load_data(data_args, ["train", "test"], cache_dir=str(tmp_path / "cache"))
