"""Import a Marian `s2s` model (a bidirectional GRU encoder, the conditional-GRU decoder with the deep output: the
architecture of Nematus and the Edinburgh WMT systems) as a transformers model folder:

    hf-rnn-seq2seq-import-marian MODEL.npz OUTPUT_DIR [--vocabs SOURCE_VOCAB TARGET_VOCAB]

The folder (config, safetensors weights, generation config, tokenizer, model card) loads with
`AutoModelForSeq2SeqLM` / `AutoTokenizer` and computes what Marian computes: model_file.py reads the `.npz` without
pickles, settings.py maps its options, weights.py its tensors. The vocabularies (by default those that
MODEL.npz.decoder.yml names) become one tokenizer as for JoeyNMT models (../joeynmt/segmentation.py): words split at
spaces, or a SentencePiece model's segmentation, `</s>` appended to every source as Marian appends it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..cli import user_errors
from .settings import MarianImportError

logger = logging.getLogger(__name__)

__all__ = ["MarianImportError", "import_marian", "main"]

# Marian's special tokens (src/data/vocab_base.h: DEFAULT_EOS_STR, DEFAULT_UNK_STR). It has no padding or start
# token: its decoder's first input is a zero vector (`zero_start_embedding`), which any start id then gives; </s>
# serves as the start id, and <unk>, which Marian never generates, as padding.
EOS, UNK = "</s>", "<unk>"


def import_marian(model_path, output_dir, vocabularies=None) -> Path:
    """Convert a Marian `.npz` (and its source and target vocabularies: `vocabularies`, or those its decoder.yml
    names) into a model folder at `output_dir`; returns it."""
    from transformers import GenerationConfig

    from ..configuration_rnn_seq2seq import RNNSeq2SeqConfig
    from ..joeynmt.segmentation import build_tokenizer
    from ..joeynmt.weights import load_converted
    from ..modeling_rnn_seq2seq import RNNSeq2SeqForConditionalGeneration
    from ..publishing import untied_output_note
    from .model_file import read_model, read_vocabularies
    from .settings import read_settings
    from .weights import convert_state, marian_names

    model_path, output_dir = Path(model_path), Path(output_dir)
    marian = read_model(model_path)
    settings = read_settings(marian.options, marian.decoder_options)
    vocabulary_paths = [Path(path) for path in vocabularies] if vocabularies else marian.vocabularies
    if len(vocabulary_paths) != 2:
        raise MarianImportError(
            "give the source and target vocabularies (--vocabs SOURCE TARGET): "
            f"{model_path.name}.decoder.yml, which would name them, is absent or names {len(vocabulary_paths)}"
        )
    source_itos, target_itos, segmentation = read_vocabularies(*vocabulary_paths)
    specials = _special_tokens(source_itos, target_itos)
    _check_sizes(marian.options, source_itos, target_itos)
    converted = build_tokenizer(segmentation, source_itos, target_itos, specials)

    ids = specials.ids
    config = RNNSeq2SeqConfig(
        vocab_size=converted.target_size,
        source_vocab_size=None if settings.shared_table else len(converted.tokenizer),
        tie_word_embeddings=settings.shared_table and settings.tied_output,
        pad_token_id=ids[UNK],
        bos_token_id=ids[EOS],
        eos_token_id=ids[EOS],
        **settings.model,
    )
    model = RNNSeq2SeqForConditionalGeneration(config)
    state = convert_state(marian_names(marian.tensors, marian.options["type"]), config, converted.source_ids,
                          settings.tied_output)  # fmt: skip
    load_converted(model, state, MarianImportError)
    model.tie_weights()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids[EOS], bos_token_id=ids[EOS], eos_token_id=ids[EOS], pad_token_id=ids[UNK],
        suppress_tokens=[ids[UNK]], **settings.generation,
    )  # fmt: skip

    notes = list(settings.notes)
    if settings.tied_output and not config.tie_word_embeddings:
        notes.append(untied_output_note("Marian"))
    notes.append("padding is <unk> (Marian has no padding token), whose embedding rows therefore get no gradient "
                 "when fine-tuning")  # fmt: skip
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    converted.tokenizer.save_pretrained(output_dir)
    _write_model_card(output_dir, model_path, model, segmentation, notes)
    for note in notes:
        logger.warning("%s", note)
    return output_dir


def _special_tokens(source_itos: list[str], target_itos: list[str]):
    from ..joeynmt.settings import SpecialTokens

    for token in (EOS, UNK):
        for side, itos in (("source", source_itos), ("target", target_itos)):
            if token not in itos:
                raise MarianImportError(f"the {side} vocabulary lacks Marian's {token}")
        if source_itos.index(token) != target_itos.index(token):
            raise MarianImportError(f"{token} has id {source_itos.index(token)} in the source vocabulary and "
                                    f"{target_itos.index(token)} in the target one; one tokenizer serves both here")
    ids = {EOS: target_itos.index(EOS), UNK: target_itos.index(UNK)}
    return SpecialTokens(unk=UNK, pad=UNK, bos=EOS, eos=EOS, ids=ids)


def _check_sizes(options: dict, source_itos: list[str], target_itos: list[str]) -> None:
    sizes = options.get("dim-vocabs")
    if sizes and list(sizes) != [len(source_itos), len(target_itos)]:
        raise MarianImportError(
            f"the vocabularies hold {len(source_itos)} and {len(target_itos)} tokens, the model {sizes[0]} and "
            f"{sizes[1]}: not the vocabularies it was trained with"
        )


def _write_model_card(output_dir: Path, model_path: Path, model, segmentation, notes) -> None:
    from huggingface_hub import ModelCardData

    from ..publishing import model_tags, save_imported_model_card

    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="translation",
        tags=model_tags(model.config, "rnn_seq2seq", "marian", "cgru", "custom_code"),
    )
    generation = model.generation_config
    summary = (
        f"Converted by `hf-rnn-seq2seq-import-marian` from the Marian `s2s` model `{model_path.name}`: a bidirectional "
        f"GRU encoder and a conditional-GRU decoder with a deep output layer, {model.num_parameters():,} parameters, "
        f"segmentation: {segmentation.tokenizer_type or 'words split at spaces'}. It computes Marian's "
        "log-probabilities for the same input; greedy search gives its translations. The generation config holds "
        f"marian-decoder's settings (beam {generation.num_beams}, length normalisation {generation.length_penalty:g}, "
        "<unk> never generated)."
    )
    save_imported_model_card(output_dir, data, "Marian s2s model, imported", summary, "Marian", notes)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="hf-rnn-seq2seq-import-marian",
        description="Convert a Marian s2s (conditional-GRU) model into a transformers model folder.",
    )
    parser.add_argument("model", help="the Marian model file (model.npz)")
    parser.add_argument("output_dir", help="where to write the model folder")
    parser.add_argument("--vocabs", nargs=2, metavar=("SOURCE", "TARGET"),
                        help="the source and target vocabularies (YAML or JSON); default: those MODEL.npz.decoder.yml "
                        "names")  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with user_errors(parser):  # MarianImportError is a ValueError
        folder = import_marian(args.model, args.output_dir, args.vocabs)
    print(f"wrote {folder}", file=sys.stderr)
