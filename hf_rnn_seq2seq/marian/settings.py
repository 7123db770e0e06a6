"""Marian's options (`special:model.yml`, and `MODEL.npz.decoder.yml` for decoding) as this model's settings.

An option this model does not represent is refused, naming it: a model is converted exactly or not at all.
Defaults are Marian 1.12's (src/common/config_parser.cpp) for an option a model file leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass


class MarianImportError(ValueError):
    """A Marian model (or vocabulary) that cannot be converted, and why."""


# marian-decoder's defaults for what MODEL.npz.decoder.yml leaves out.
DECODER_DEFAULTS = {"beam-size": 12, "normalize": 0.0, "word-penalty": 0.0, "max-length-factor": 3.0}
TRAINING_MAX_LENGTH = 50  # Marian's --max-length default: the longest sentence it trains on, where not saved

# option: (its value in the architecture this model represents, why another is refused)
_REQUIRED = {
    "enc-type": ("bidirectional", "only the bidirectional encoder (two stacks joined at the top) is represented"),
    "enc-cell-depth": (1, "transition cells inside an encoder layer are not represented"),
    "dec-cell-base-depth": (2, "only the conditional GRU's two cells (no transition cells) are represented"),
    "dec-cell-high-depth": (1, "transition cells in the decoder's upper layers are not represented"),
    "skip": (False, "residual connections between RNN layers are not represented"),
    "right-left": (False, "right-to-left decoding is not represented"),
    "tied-embeddings-src": (False, "a source table shared with an untied output layer is not represented"),
}
_CELLS = ("gru", "gru-nematus")  # the same cell without layer normalisation (Marian's cells.h)


@dataclass
class MarianSettings:
    model: dict  # RNNSeq2SeqConfig arguments, vocabulary sizes and ties aside
    shared_table: bool  # one embedding table (`Wemb`) for source and target
    tied_output: bool  # the output layer is the target embedding table
    generation: dict  # GenerationConfig arguments
    notes: list[str]


def read_settings(options: dict, decoder_options: dict) -> MarianSettings:
    model_type = options.get("type")
    if model_type not in ("s2s", "nematus"):
        raise MarianImportError(
            f"Marian model type {model_type!r} is not supported: only recurrent `s2s` models (and Marian's `nematus` "
            "ones) are; transformers' own MarianMTModel converts Marian Transformers"
        )
    for name in ("enc-cell", "dec-cell"):
        if options.get(name, "gru") not in _CELLS:
            raise MarianImportError(f"--{name} {options[name]} is not supported: only GRU cells ({_CELLS}) are")
    for name, (value, why) in _REQUIRED.items():
        if options.get(name, value) != value:
            raise MarianImportError(f"--{name} {options[name]} is not supported: {why}")
    if options.get("lemma-dim-emb", 0) or options.get("factors-dim-emb", 0):
        raise MarianImportError("factored vocabularies are not supported")
    if options.get("ulr", False):
        raise MarianImportError("--ulr (universal lexical representations) is not supported")
    layer_norm = bool(options.get("layer-normalization", False))
    if layer_norm and model_type == "nematus":
        raise MarianImportError(
            "--layer-normalization in a `nematus` model (Nematus's own formula: a gain and bias for every product, "
            "epsilon 1e-5) is not represented; `s2s` models' layer normalisation is"
        )
    embedding, hidden = options["dim-emb"], options["dim-rnn"]
    tied_all = bool(options.get("tied-embeddings-all", False))
    model = dict(
        embedding_dim=embedding,
        hidden_size=hidden,
        encoder_hidden_size=hidden,
        num_encoder_layers=options.get("enc-depth", 1),
        num_decoder_layers=options.get("dec-depth", 1),
        encoder_stacking="per_direction",
        rnn_type="gru",
        attention_type="bahdanau",
        attention_hidden_size=2 * hidden,
        attention_query_bias=not layer_norm,  # with layer normalisation, b_att is the keys' normalisation's bias
        layer_norm=layer_norm,
        decoder_type="cgru",
        deep_output=True,
        decoder_init="mean_bridge",
        shared_bridge=True,
        zero_start_embedding=True,
        attentional_size=embedding,
        output_bias=not options.get("output-omit-bias", False),
        dropout=0.0,
        label_smoothing=float(options.get("label-smoothing", 0.0)),
    )
    notes = [
        "Marian's dropout (variational, on RNN states and whole words) is not this model's: the config's dropout is "
        "0; set one for fine-tuning",
    ]
    return MarianSettings(model, tied_all, tied_all or bool(options.get("tied-embeddings", False)),
                          _generation(decoder_options, options.get("max-length", TRAINING_MAX_LENGTH), notes),
                          notes)  # fmt: skip


def _generation(decoder_options: dict, training_max_length: int, notes: list[str]) -> dict:
    """marian-decoder's search as generate() arguments: its beam size, its length normalisation (0: none), no early
    end to the search. Marian caps a translation at max-length-factor × the source length; generate() has no such
    cap, so the longest a sentence Marian trained on gives a fixed one."""
    decoding = {**DECODER_DEFAULTS, **{k: v for k, v in decoder_options.items() if k in DECODER_DEFAULTS}}
    if decoding["word-penalty"]:
        notes.append(f"marian-decoder's word penalty ({decoding['word-penalty']}) has no generate() equivalent and is "
                     "not applied")  # fmt: skip
    cap = int(decoding["max-length-factor"] * (training_max_length + 1))
    notes.append(
        f"Marian stops a translation at {decoding['max-length-factor']:g} × its source's length; the generation "
        f"config stops every one at {cap} tokens (that factor times the {training_max_length}-token sentences Marian "
        "trained on)"
    )
    return dict(num_beams=int(decoding["beam-size"]), length_penalty=float(decoding["normalize"]), early_stopping=True,
                max_new_tokens=cap)  # fmt: skip
