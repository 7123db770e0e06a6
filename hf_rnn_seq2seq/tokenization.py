"""A joint BPE tokenizer for both languages, trained with `tokenizers` and wrapped for transformers.

Design choices:

* One vocabulary for source and target, so the model can tie encoder, decoder and output
  embeddings, and names, numbers and cognates share pieces.
* Metaspace pre-tokenizer and decoder: spaces become the visible "▁" marker inside tokens,
  so decoding restores the original spacing exactly (BLEU is computed on detokenised text).
  Punctuation is split off words first, so "Mann," does not become its own vocabulary entry.
* NFC normaliser, matching what `data.normalize` already did to the corpus, so text given at
  inference time is treated like training text.
* EOS is appended by a `TemplateProcessing` post-processor, for sources and for labels
  (``text_target=``); the decoder starts from BOS, which the model prepends when it shifts labels.
* Special tokens at fixed ids: ``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3, the model's
  defaults. Right padding, as the encoder reads a row as its first `attention_mask.sum()` tokens.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .configuration_rnn_seq2seq import VOCAB_SIZE

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK]  # list position = token id
METASPACE = "▁"


def train_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int = VOCAB_SIZE, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a joint BPE tokenizer on `texts` (training sentences of both languages).

    Characters never seen in `texts` map to ``<unk>``; printable ASCII is always in the
    alphabet so that digits and punctuation absent from a small corpus still round-trip.
    """
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always"), pre_tokenizers.Punctuation()]
    )
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=sorted(set(string.printable) - set(string.whitespace)) + [METASPACE],
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    for token_id, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == token_id, (token, tokenizer.token_to_id(token))
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, SPECIAL_TOKENS.index(EOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="right",
        # Text is text: "<s>" or "</s>" typed in a sentence is spelled out, not read as a BOS/EOS control token.
        split_special_tokens=True,
    )


def check_vocabulary(tokenizer, config, model_name: str) -> None:
    """Refuse a tokenizer whose vocabulary is not the model's: ids would index the wrong embeddings. (With a separate
    source vocabulary the tokenizer covers both: the target's ids, then those found in sources only.)"""
    name, size = "vocab_size", config.vocab_size
    if getattr(config, "source_vocab_size", None) is not None:
        name, size = "source_vocab_size", config.source_vocab_size
    if len(tokenizer) != size:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but {model_name} has {name}={size}: "
            "they do not belong together; use the tokenizer saved with the model"
        )


def reader_tokens(tokenizer, tokens: list[str]) -> list[str]:
    """Tokens as a reader sees them: the text each adds to the decoded sentence, without the tokenizer's own
    word-boundary marks ("▁Mann" is "Mann"), and a piece that continues the previous token's word marked "##"
    ("Männ", "##er"), whatever the tokenizer's convention (Metaspace, a "</w>" suffix, ...). Special tokens stay."""
    labels, pieces, text = [], [], ""
    for token in tokens:
        if token in tokenizer.all_special_tokens:
            labels.append(token)
            continue
        pieces.append(token)
        decoded = tokenizer.convert_tokens_to_string(pieces)
        if not decoded.startswith(text):  # a decoder that rewrites earlier text: show the token itself
            labels.append(token)
        else:
            added = decoded[len(text) :]
            starts_word = not text or added[:1].isspace() or not added
            labels.append(added.strip() if starts_word else f"##{added.strip()}")
        text = decoded
    return labels
