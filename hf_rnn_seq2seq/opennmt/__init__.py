"""Import an OpenNMT-py 3.x or eole recurrent model as a transformers model folder:

    hf-rnn-seq2seq-import-opennmt CHECKPOINT.pt|EOLE_MODEL_DIR OUTPUT_DIR

The folder (config, safetensors weights, generation config, tokenizer, model card) loads with
`AutoModelForSeq2SeqLM` / `AutoTokenizer` and computes what OpenNMT computes: checkpoint.py reads an OpenNMT-py
checkpoint without running pickled code, eole.py an eole folder as OpenNMT-py's options and tensors, settings.py maps
the options, weights.py the tensors; the vocabularies and the segmentation become one tokenizer as for JoeyNMT models
(../joeynmt/segmentation.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..cli import user_errors
from .settings import OpenNMTImportError

logger = logging.getLogger(__name__)

__all__ = ["OpenNMTImportError", "import_opennmt", "main"]

# OpenNMT's special tokens (onmt/constants.py DefaultTokens); the decoder starts from the vocabulary's
# decoder_start_token.
UNK, PAD, EOS = "<unk>", "<blank>", "</s>"


def import_opennmt(checkpoint_path, output_dir) -> Path:
    """Convert an OpenNMT-py 3.x checkpoint or an eole model folder (and the subword model its options name) into a
    model folder at `output_dir`; returns it."""
    from transformers import GenerationConfig

    from ..configuration_rnn_seq2seq import RNNSeq2SeqConfig
    from ..joeynmt.segmentation import build_tokenizer
    from ..joeynmt.weights import load_converted
    from ..modeling_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration
    from ..publishing import untied_output_note
    from .checkpoint import read_checkpoint
    from .eole import read_eole
    from .settings import read_settings
    from .weights import convert_state

    checkpoint_path, output_dir = Path(checkpoint_path), Path(output_dir)
    checkpoint = read_eole(checkpoint_path) if checkpoint_path.is_dir() else read_checkpoint(checkpoint_path)
    settings = read_settings(checkpoint.options, checkpoint_path.parent, checkpoint.toolkit)
    source_itos, target_itos = checkpoint.vocab["src"], checkpoint.vocab["tgt"]
    specials = _special_tokens(source_itos, target_itos, checkpoint.vocab.get("decoder_start_token", "<s>"))
    converted = build_tokenizer(settings.segmentation, source_itos, target_itos, specials, append_eos=False)

    shared = settings.shared_embeddings and len(converted.tokenizer) == converted.target_size
    ids = specials.ids
    config = RNNSeq2SeqConfig(
        vocab_size=converted.target_size,
        source_vocab_size=None if shared else len(converted.tokenizer),
        tie_word_embeddings=shared and settings.tied_output,
        pad_token_id=ids[specials.pad],
        bos_token_id=ids[specials.bos],
        eos_token_id=ids[specials.eos],
        **settings.model,
    )
    model = RNNSeq2SeqForConditionalGeneration(config)
    load_converted(model, convert_state(checkpoint.state, config, converted.source_ids), OpenNMTImportError)
    model.tie_weights()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids[specials.bos], bos_token_id=ids[specials.bos], eos_token_id=ids[specials.eos],
        pad_token_id=ids[specials.pad], **settings.generation,
    )  # fmt: skip

    notes = list(settings.notes)
    if settings.tied_output and not config.tie_word_embeddings:
        notes.append(untied_output_note("OpenNMT"))
    notes.append(
        "the tokenizer adds no </s> to a text, as OpenNMT adds none to a source; for fine-tuning, end each target "
        "(labels) with </s> yourself"
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    converted.tokenizer.save_pretrained(output_dir)
    _write_model_card(output_dir, checkpoint_path, checkpoint.toolkit, model, settings, notes)
    for note in notes:
        logger.warning("%s", note)
    return output_dir


def _special_tokens(source_itos: list[str], target_itos: list[str], decoder_start: str):
    from ..joeynmt.settings import SpecialTokens

    tokens = {"unk": UNK, "pad": PAD, "bos": decoder_start, "eos": EOS}
    for name, token in tokens.items():
        if token not in target_itos or token not in source_itos:
            raise OpenNMTImportError(f"the vocabularies lack OpenNMT's {name} token {token!r}")
        if source_itos.index(token) != target_itos.index(token):
            raise OpenNMTImportError(
                f"{token!r} has id {source_itos.index(token)} in the source vocabulary and "
                f"{target_itos.index(token)} in the target one; one tokenizer serves both here"
            )
    return SpecialTokens(**tokens, ids={token: target_itos.index(token) for token in tokens.values()})


def _write_model_card(output_dir: Path, checkpoint_path: Path, toolkit: str, model, settings, notes) -> None:
    from huggingface_hub import ModelCardData

    from ..publishing import architecture_in_words, model_tags, save_imported_model_card

    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="translation",
        tags=model_tags(model.config, "rnn_seq2seq", toolkit.lower(), "custom_code"),
    )
    segmentation = settings.segmentation
    kind = "words split at spaces" if segmentation.level == "word" else segmentation.tokenizer_type
    summary = (
        f"Converted by `hf-rnn-seq2seq-import-opennmt` from the {toolkit} model `{checkpoint_path.name}`: "
        f"{architecture_in_words(model.config)}, {model.num_parameters():,} parameters, segmentation: {kind}. "
        f"It computes {toolkit}'s logits for the same input, and greedy search gives its translations. "
        "The generation config holds its translation command's defaults (beam 5, up to 250 tokens, scores divided "
        "by the length)."
    )
    save_imported_model_card(output_dir, data, f"{toolkit} recurrent model, imported", summary, toolkit, notes)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="hf-rnn-seq2seq-import-opennmt",
        description="Convert an OpenNMT-py 3.x recurrent model (a .pt checkpoint) or an eole one (its model folder) "
        "into a transformers model folder.",
    )
    parser.add_argument("checkpoint", help="an OpenNMT-py 3.x checkpoint (model_step_10000.pt) or an eole model folder")
    parser.add_argument("output_dir", help="where to write the model folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with user_errors(parser):  # OpenNMTImportError is a ValueError
        folder = import_opennmt(args.checkpoint, args.output_dir)
    print(f"wrote {folder}", file=sys.stderr)
