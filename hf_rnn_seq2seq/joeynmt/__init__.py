"""Import a JoeyNMT 2.x recurrent model as a transformers model folder:

    hf-rnn-seq2seq-import-joeynmt CONFIG.yaml CHECKPOINT.ckpt OUTPUT_DIR

The folder (config, safetensors weights, generation config, tokenizer, model card) loads with
`AutoModelForSeq2SeqLM` / `AutoTokenizer` and computes what JoeyNMT computes: settings.py maps the options,
segmentation.py the vocabularies and segmentation, weights.py the tensors.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..cli import user_errors
from .settings import JoeyNMTImportError, read_settings

logger = logging.getLogger(__name__)

__all__ = ["JoeyNMTImportError", "import_joeynmt", "main"]


def import_joeynmt(config_path, checkpoint_path, output_dir) -> Path:
    """Convert JoeyNMT's `config_path` + `checkpoint_path` (and the vocabularies beside the checkpoint, or the
    configuration's `voc_file`s) into a model folder at `output_dir`; returns it."""
    from transformers import GenerationConfig

    from ..configuration_rnn_seq2seq import RNNSeq2SeqConfig
    from ..modeling_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration
    from ..publishing import untied_output_note
    from .segmentation import build_tokenizer, read_vocabulary
    from .weights import convert_state, load_converted, read_checkpoint

    config_path, checkpoint_path, output_dir = Path(config_path), Path(checkpoint_path), Path(output_dir)
    settings = read_settings(config_path)
    vocabularies = {
        side: read_vocabulary(settings.voc_files[side] or checkpoint_path.parent / f"{side}_vocab.txt",
                              settings.specials)
        for side in ("src", "trg")
    }  # fmt: skip
    converted = build_tokenizer(settings.segmentation, vocabularies["src"], vocabularies["trg"], settings.specials)
    joey_state = read_checkpoint(checkpoint_path)

    # One embedding table serves both sides where JoeyNMT ties them and our ids are exactly its vocabulary.
    shared = settings.tied_embeddings and len(converted.tokenizer) == converted.target_size
    ids = settings.specials.ids
    config = RNNSeq2SeqConfig(
        vocab_size=converted.target_size,
        source_vocab_size=None if shared else len(converted.tokenizer),
        tie_word_embeddings=shared and settings.tied_softmax,
        pad_token_id=ids[settings.specials.pad],
        bos_token_id=ids[settings.specials.bos],
        eos_token_id=ids[settings.specials.eos],
        **settings.model,
    )
    model = RNNSeq2SeqForConditionalGeneration(config)
    load_converted(model, convert_state(joey_state, config, converted.source_ids))
    model.tie_weights()
    model.generation_config = GenerationConfig(**settings.generation)

    notes = list(settings.notes)
    if settings.tied_softmax and not config.tie_word_embeddings:
        notes.append(untied_output_note("JoeyNMT"))
    if converted.pieces_outside_vocabulary and settings.segmentation.tokenizer_type == "subword-nmt":
        notes.append(
            f"{converted.pieces_outside_vocabulary} pieces of the BPE codes are in neither vocabulary: subword-nmt "
            "splits such a piece back into smaller ones that are, this tokenizer reads it as <unk>"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    converted.tokenizer.save_pretrained(output_dir)
    _write_model_card(output_dir, settings, config_path, checkpoint_path, model, notes)
    for note in notes:
        logger.warning("%s", note)
    return output_dir


def _write_model_card(output_dir: Path, settings, config_path: Path, checkpoint_path: Path, model, notes) -> None:
    from huggingface_hub import ModelCardData

    from ..publishing import architecture_in_words, model_tags, save_imported_model_card
    from .settings import ATTENTION_TYPES

    joeynmt_attention = next(theirs for theirs, ours in ATTENTION_TYPES.items() if ours == model.config.attention_type)

    data = ModelCardData(
        language=[settings.source_lang, settings.target_lang],
        library_name="transformers",
        pipeline_tag="translation",
        tags=model_tags(model.config, "rnn_seq2seq", "joeynmt", "custom_code"),
    )
    segmentation = settings.segmentation
    kind = segmentation.level if segmentation.level == "word" else f"bpe ({segmentation.tokenizer_type})"
    summary = (
        f"Converted by `hf-rnn-seq2seq-import-joeynmt` from the JoeyNMT 2.x model `{config_path.name}` + "
        f"`{checkpoint_path.name}`: {architecture_in_words(model.config)} (the attention JoeyNMT calls "
        f"\"{joeynmt_attention}\"), {model.num_parameters():,} parameters, segmentation {kind}. "
        "It computes JoeyNMT's logits for the same input, and greedy search gives JoeyNMT's translations."
    )
    title = f"JoeyNMT {settings.source_lang}→{settings.target_lang} recurrent model, imported"
    save_imported_model_card(output_dir, data, title, summary, "JoeyNMT", notes)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="hf-rnn-seq2seq-import-joeynmt",
        description="Convert a JoeyNMT 2.x recurrent model (configuration + checkpoint + vocabularies) into a "
        "transformers model folder.",
    )
    parser.add_argument("config", help="the JoeyNMT configuration file (YAML) the model was trained with")
    parser.add_argument("checkpoint", help="a JoeyNMT checkpoint, e.g. best.ckpt (src_vocab.txt/trg_vocab.txt beside it)")
    parser.add_argument("output_dir", help="where to write the model folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with user_errors(parser):  # JoeyNMTImportError is a ValueError
        folder = import_joeynmt(args.config, args.checkpoint, args.output_dir)
    print(f"wrote {folder}", file=sys.stderr)
