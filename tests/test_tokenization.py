"""The joint BPE tokenizer: special ids, EOS, padding, save/load through AutoTokenizer, exact round trips."""

import pytest
from transformers import AutoTokenizer

from hf_rnn_seq2seq.data import load_parallel_dir
from hf_rnn_seq2seq.tokenization import train_bpe_tokenizer


@pytest.fixture(scope="module")
def corpus(multi30k_dir):
    return load_parallel_dir(multi30k_dir, "de", "en", splits=["train", "validation"])


@pytest.fixture(scope="module")
def tokenizer(corpus):
    """Trained on the whole Multi30k training split, both languages (about a second)."""
    texts = (text for pair in corpus["train"]["translation"] for text in pair.values())
    return train_bpe_tokenizer(texts, vocab_size=8000)


def test_special_tokens_ids_and_vocab_size(tokenizer):
    assert [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id] == [0, 1, 2, 3]
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == ["<pad>", "<s>", "</s>", "<unk>"]
    assert len(tokenizer) == 8000
    assert tokenizer.padding_side == "right"


def test_eos_appended_to_sources_and_labels_and_right_padding(tokenizer):
    batch = tokenizer(["Ein Hund.", "Zwei große Hunde rennen."], text_target=["A dog.", "Two big dogs run."], padding=True)
    for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
        length = sum(mask)
        assert ids[length - 1] == tokenizer.eos_token_id
        assert ids[length:] == [tokenizer.pad_token_id] * (len(ids) - length)
        assert mask == [1] * length + [0] * (len(ids) - length)
    labels = tokenizer(text_target=["A dog.", "Two big dogs run."])["input_ids"]
    assert all(ids[-1] == tokenizer.eos_token_id and ids.count(tokenizer.eos_token_id) == 1 for ids in labels)
    assert tokenizer.bos_token_id not in batch["input_ids"][0]  # the model prepends BOS to decoder inputs


def test_round_trip_on_real_validation_sentences(tokenizer, corpus):
    # Spacing and punctuation must come back exactly, or BLEU on detokenised output would be wrong.
    sentences = [text for pair in corpus["validation"]["translation"] for text in pair.values()]
    assert len(sentences) == 2028
    mismatches = [s for s in sentences if tokenizer.decode(tokenizer(s)["input_ids"], skip_special_tokens=True) != s]
    assert mismatches == []


def test_punctuation_split_from_words(tokenizer):
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("Ein Mann, der lacht.")["input_ids"])
    assert tokens[-3:] == ["▁lacht", ".", "</s>"]
    assert "," in tokens


def test_nfc_normalisation(tokenizer):
    assert tokenizer("Cafe\u0301 Mu\u0308ller")["input_ids"] == tokenizer("Caf\u00e9 M\u00fcller")["input_ids"]


def test_save_and_load_with_auto_tokenizer(tokenizer, corpus, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert [loaded.pad_token_id, loaded.bos_token_id, loaded.eos_token_id, loaded.unk_token_id] == [0, 1, 2, 3]
    assert loaded.padding_side == "right"
    sentences = [pair["de"] for pair in corpus["validation"]["translation"][:50]]
    assert loaded(sentences)["input_ids"] == tokenizer(sentences)["input_ids"]
    assert loaded.batch_decode(loaded(sentences)["input_ids"], skip_special_tokens=True) == sentences


def test_small_vocabulary_and_unseen_characters():
    tokenizer = train_bpe_tokenizer(["ein hund", "a dog"] * 5, vocab_size=120)
    assert len(tokenizer) <= 120
    # Printable ASCII is always in the alphabet, even when the corpus lacks it.
    assert tokenizer.decode(tokenizer("Zebra 42!")["input_ids"], skip_special_tokens=True) == "Zebra 42!"
    assert tokenizer.unk_token_id in tokenizer("ß")["input_ids"]


def test_vocab_size_must_exceed_special_tokens():
    with pytest.raises(ValueError, match="vocab_size must exceed the 4 special tokens"):
        train_bpe_tokenizer(["a"], vocab_size=4)
