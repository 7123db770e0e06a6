"""OpenNMT-py 3.x's model options as this model's configuration, the segmentation its transforms apply and the
decoding settings of `onmt_translate`; anything the model cannot compute exactly is refused, naming the option.

The options are those of OpenNMT-py's `onmt/opts.py` as its checkpoint stores them (`opt`), read as its
`ArgumentParser.update_model_opts` reads them: `layers`, `hidden_size` and `word_vec_size`, where positive, set both
sides. What each architecture option computes: onmt/encoders/rnn_encoder.py, onmt/decoders/decoder.py,
onmt/modules/global_attention.py, onmt/model_builder.py (and ../../../shared/notes/opennmt.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..joeynmt.settings import Segmentation

ATTENTION_TYPES = {"dot": "luong_dot", "general": "luong_general", "mlp": "luong_concat"}  # OpenNMT's -> ours
RNN_TYPES = {"LSTM": "lstm", "GRU": "gru"}
# Transforms that change nothing a trained model computes at translation time (they filter training examples).
_TRAINING_ONLY_TRANSFORMS = {"filtertoolong", "filterfeats"}
_SUBWORD_TRANSFORMS = {"sentencepiece": "sentencepiece", "bpe": "subword-nmt"}  # OpenNMT's -> ours
# onmt_translate's defaults (onmt/opts.py, _add_decoding_opts), which the checkpoint does not record.
TRANSLATE_DEFAULTS = {"beam_size": 5, "max_length": 250, "length_penalty": "avg", "alpha": 1.0}
# Options that must keep their default: (option, default, why it is refused otherwise).
_REFUSED = (
    ("copy_attn", False, "copy attention (a pointer over source words) is not represented"),
    ("coverage_attn", False, "coverage attention is not represented"),
    ("context_gate", None, "context gates are not represented"),
    ("global_attention_function", "softmax", "only softmax attention is represented"),
    ("generator_function", "softmax", "only a softmax output layer is represented"),
    ("n_src_feats", 0, "source word features (src_feats) are not represented"),
    ("lora_layers", [], "LoRA layers are not represented: merge them into the model first"),
    ("quant_layers", [], "quantised layers are not represented"),
)


class OpenNMTImportError(ValueError):
    """An OpenNMT model or file that cannot be imported exactly; the message names the option or file."""


@dataclass
class OpenNMTSettings:
    model: dict  # RNNSeq2SeqConfig arguments (without the vocabularies' sizes and ids)
    shared_embeddings: bool  # share_embeddings: one table for source and target
    tied_output: bool  # share_decoder_embeddings: the output layer is the target table
    segmentation: Segmentation
    generation: dict  # GenerationConfig arguments (without the token ids)
    notes: list[str] = field(default_factory=list)  # differences a user should know of (model card, log)


def _option(options: dict, name: str, default=None):
    value = options.get(name, default)
    return default if value is None else value


def _sizes(options: dict) -> dict:
    """update_model_opts' reading of the size options."""
    sized = dict(options)
    for shared, sides in (("word_vec_size", ("src_word_vec_size", "tgt_word_vec_size")),
                          ("layers", ("enc_layers", "dec_layers")),
                          ("hidden_size", ("enc_hid_size", "dec_hid_size"))):  # fmt: skip
        if _option(options, shared, -1) > 0:
            sized.update(dict.fromkeys(sides, options[shared]))
    return sized


def _require(options: dict, name: str, allowed, why: str):
    value = options.get(name)
    if value not in allowed:
        raise OpenNMTImportError(f"option {name}={value!r} is not supported: {why}")
    return value


def read_settings(options: dict, base: Path, toolkit: str = "OpenNMT-py") -> OpenNMTSettings:
    """Check OpenNMT's training options (`opt` of the checkpoint, as a dict; eole's as eole.py maps them) and map
    them; relative file paths are read from the working directory, as OpenNMT reads them, or else from `base` (the
    checkpoint's folder)."""
    options = _sizes(options)
    _require(options, "model_task", {"seq2seq", None}, "only translation (seq2seq) models are imported")
    _require(options, "encoder_type", {"rnn", "brnn"}, "only recurrent encoders (rnn, brnn) are represented")
    _require(options, "decoder_type", {"rnn"}, "only the recurrent decoder (rnn) is represented")
    rnn_type = RNN_TYPES[_require(options, "rnn_type", RNN_TYPES, "only LSTM and GRU cells are represented")]
    attention = ATTENTION_TYPES[
        _require(options, "global_attention", ATTENTION_TYPES, "only dot, general and mlp attention are represented")
    ]
    for name, default, why in _REFUSED:
        if _option(options, name, default) != default:
            raise OpenNMTImportError(f"option {name}={options[name]!r} is not supported: {why}")
    if options.get("position_encoding") and toolkit == "OpenNMT-py":
        raise OpenNMTImportError(
            "option position_encoding=True is not supported for OpenNMT-py models: its recurrent decoders add the "
            "encoding of position 0 at every translation step (onmt/decoders/decoder.py calls its embeddings "
            "without the step), though training added positions 0, 1, 2, ... (eole's models pass the step)"
        )
    if options["src_word_vec_size"] != options["tgt_word_vec_size"]:
        raise OpenNMTImportError(
            f"src_word_vec_size {options['src_word_vec_size']} != tgt_word_vec_size {options['tgt_word_vec_size']}: "
            "source and target embeddings of different widths are not represented"
        )
    bidirectional = options["encoder_type"] == "brnn"
    hidden_size = options["dec_hid_size"]
    model = dict(
        embedding_dim=options["src_word_vec_size"],
        hidden_size=hidden_size,
        attentional_size=hidden_size,  # linear_out: [c; q] -> dec_hid_size
        encoder_hidden_size=options["enc_hid_size"] // (2 if bidirectional else 1),
        num_encoder_layers=options["enc_layers"],
        num_decoder_layers=options["dec_layers"],
        bidirectional_encoder=bidirectional,
        rnn_type=rnn_type,
        attention_type=attention,
        attention_hidden_size=hidden_size,  # mlp: linear_query, linear_context (dim, dim)
        attention_query_bias=True,  # mlp's linear_query has a bias
        decoder_init="encoder_final_relu" if options.get("bridge") else "encoder_final",
        attentional_activation="none" if attention == "luong_concat" else "tanh",  # tanh for dot and general only
        input_feeding=bool(_option(options, "input_feed", 1)),
        position_encoding="sinusoidal" if options.get("position_encoding") else "none",
        dropout=_first(_option(options, "dropout", 0.0)),
        output_bias=bool(_option(options, "generator_bias", True)),  # eole's option; OpenNMT-py's always has one
    )
    return OpenNMTSettings(
        model=model,
        shared_embeddings=bool(options.get("share_embeddings")),
        tied_output=bool(options.get("share_decoder_embeddings")),
        segmentation=_segmentation(options, base),
        generation=_generation(),
    )


def _first(value):
    return value[0] if isinstance(value, list) else value  # dropout is a list (one value per dropout_steps)


def _segmentation(options: dict, base: Path) -> Segmentation:
    """The one segmentation the transforms apply (one tokenizer serves both sides)."""
    transforms = list(_option(options, "transforms", []))
    unsupported = [name for name in transforms if name not in _TRAINING_ONLY_TRANSFORMS | set(_SUBWORD_TRANSFORMS)]
    if unsupported:
        why = {"onmt_tokenize": "OpenNMT Tokenizer's segmentation is not reproduced exactly by a transformers "
                                "tokenizer: segment with pyonmttok yourself and retrain, or use sentencepiece"}
        reasons = "; ".join(f"{name}: {why.get(name, 'not reproduced by the tokenizer')}" for name in unsupported)
        raise OpenNMTImportError(f"transforms {unsupported} are not supported ({reasons})")
    subword = [name for name in transforms if name in _SUBWORD_TRANSFORMS]
    if len(subword) > 1:
        raise OpenNMTImportError(f"transforms {subword}: more than one subword segmentation is not supported")
    if not subword:
        return Segmentation(level="word", lowercase=False)  # OpenNMT splits the text at spaces
    models = {side: options.get(f"{side}_subword_model") for side in ("src", "tgt")}
    if not models["src"] or models["src"] != models["tgt"]:
        raise OpenNMTImportError(
            f"src_subword_model {models['src']!r} and tgt_subword_model {models['tgt']!r}: one tokenizer serves both "
            "sides here, so both must name the same model"
        )
    for name in ("src_subword_vocab", "tgt_subword_vocab"):
        if options.get(name):
            raise OpenNMTImportError(f"option {name}: a vocabulary-restricted subword segmentation is not reproduced")
    path = Path(models["src"])
    path = path if path.is_absolute() or path.exists() else base / path
    if not path.is_file():
        raise OpenNMTImportError(
            f"src_subword_model {models['src']!r}: file not found (as given, or beside the checkpoint in {base})"
        )
    kind = _SUBWORD_TRANSFORMS[subword[0]]
    if kind == "sentencepiece":
        return Segmentation(level="bpe", lowercase=False, tokenizer_type=kind, model_file=path)
    return Segmentation(level="bpe", lowercase=False, tokenizer_type=kind, codes=path, separator="@@")


def _generation() -> dict:
    """onmt_translate's defaults: beam 5, up to 250 tokens, scores divided by the length ("avg", alpha 1)."""
    return {
        "num_beams": TRANSLATE_DEFAULTS["beam_size"],
        "max_new_tokens": TRANSLATE_DEFAULTS["max_length"],
        "length_penalty": TRANSLATE_DEFAULTS["alpha"],
    }
