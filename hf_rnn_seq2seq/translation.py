"""Translate text with a trained model: length-sorted batches, truncation with a warning, EOS-cut decoding."""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .text_files import normalize

logger = logging.getLogger(__name__)

MAX_SOURCE_LENGTH = 128  # tokens, EOS included: the training recipe's --max_source_length
NUM_BEAMS = 5  # the training recipe's --num_beams (its generation_config.json's) and the demo's default
BATCH_SIZE = 64  # sentences translated by one generate() call


def load_model(model_name_or_path: str, dtype: torch.dtype | None = None, device: torch.device | str | None = None):
    """(model in eval mode, tokenizer) from a folder written by train.py or a Hub id, with a clear error for a
    folder or id that is not an RNNSeq2Seq model (before its weights are read). `dtype`: the type to compute in
    (default: the saved weights', float32); `device`: where (default: the CPU)."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    from .configuration_rnn_seq2seq import RNNSeq2SeqConfig
    from .tokenization import check_vocabulary

    config = AutoConfig.from_pretrained(model_name_or_path)
    if config.model_type != RNNSeq2SeqConfig.model_type:
        raise ValueError(
            f"{model_name_or_path} is a {config.model_type!r} model; these tools run RNNSeq2Seq models "
            f"(model_type {RNNSeq2SeqConfig.model_type!r})"
        )
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
    loading = {} if dtype is None else {"dtype": dtype}
    model = AutoModelForSeq2SeqLM.from_pretrained(model_name_or_path, config=config, **loading).eval()
    check_vocabulary(tokenizer, model.config, model_name_or_path)
    return (model if device is None else model.to(device)), tokenizer


def model_fingerprint(model) -> str:
    """sha256 of the model's tensors (names, dtypes, values): what a resumed translation checks it continues with."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cut_at_eos(ids: list[int], eos_token_id: int) -> list[int]:
    """A generated row up to and including its first EOS: generate() fills the rest of a finished row (with padding,
    or with EOS after beam search), and none of it counts."""
    return ids[: ids.index(eos_token_id) + 1] if eos_token_id in ids else ids


def decode(tokenizer, ids: np.ndarray, generated: bool = False) -> list[str]:
    """Token ids (labels padded with -100, or rows without their start token) to text, cut at the first EOS;
    `generated`: rows as generate() returns them, whose first token, the decoder start, is not read (a model imported
    from Marian starts from its EOS id)."""
    ids = ids[:, 1:] if generated else ids
    ids = np.where(ids < 0, tokenizer.pad_token_id, ids)
    # EOS itself is a special token: the decoded text ends before it.
    rows = [cut_at_eos(row, tokenizer.eos_token_id) for row in ids.tolist()]
    return [tokenizer.decode(row, skip_special_tokens=True) for row in rows]


def translate(
    model,
    tokenizer,
    sentences: Sequence[str],
    batch_size: int = BATCH_SIZE,
    max_source_length: int = MAX_SOURCE_LENGTH,
    progress: bool = False,
    **generate_kwargs,
) -> list[str]:
    """Translate `sentences` (returned in input order); `generate_kwargs` go to `model.generate`.

    Text is normalised as the training data was; an empty (or whitespace-only) sentence translates to an empty
    string instead of whatever the model would invent. Sentences are batched longest first, so a batch holds
    similar lengths and wastes little time on padding; a batch's translations equal those of its sentences one by
    one. Sources longer than `max_source_length` tokens (EOS included) are cut, with a warning.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    texts = [normalize(sentence) for sentence in sentences]
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]] if texts else []
    too_long = sum(length > max_source_length for length in lengths)
    if too_long:
        logger.warning(
            "%d of %d sentences are longer than max_source_length=%d tokens and were truncated",
            too_long, len(texts), max_source_length,
        )
    order = sorted((i for i in range(len(texts)) if texts[i]), key=lambda i: -lengths[i])
    translations: list[str] = [""] * len(texts)
    model.eval()
    for start in tqdm(range(0, len(order), batch_size), disable=not progress, file=sys.stderr, unit="batch"):
        indices = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in indices],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_source_length,
        ).to(model.device)
        with torch.no_grad():
            generated = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **generate_kwargs)
        for index, text in zip(indices, decode(tokenizer, generated.cpu().numpy(), generated=True)):
            translations[index] = text
    return translations
