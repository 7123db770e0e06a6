"""A JoeyNMT 2.x configuration file read as this model's settings: what `RNNSeq2SeqConfig`, `GenerationConfig` and
the tokenizer need, and a refusal naming every option that cannot be represented exactly.

JoeyNMT's recurrent model (joeynmt/encoders.py, decoders.py, attention.py) in this model's terms:
- encoder: embeddings, then a (bi)GRU/LSTM of `num_layers`; its final state is the top layer's last forward and first
  backward state;
- bridge: s_0 = tanh(W_b final + b_b), one `hidden_size` state for every decoder layer, and an LSTM's h and c alike
  (`shared_bridge`);
- decoder step: s_t = RNN([y_{t-1}; h~_{t-1}?], s_{t-1}), then attention with the new state s_t, for "luong"
  (score s_t^T W_k h_j: our "luong_general") and for "bahdanau" (v^T tanh(W_q s_t + W_k h_j), no biases: our
  "luong_concat" with `attention_query_bias=False`, whose order this is);
- h~_t = tanh(W_a [s_t; c_t] + b_a), `hidden_size` wide (`attentional_size`), and logits = W_out h~_t.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

# JoeyNMT's attention types as this model's (see above); the model card names both.
ATTENTION_TYPES = {"bahdanau": "luong_concat", "luong": "luong_general"}


class JoeyNMTImportError(ValueError):
    """A JoeyNMT model or file that cannot be imported exactly; the message names the option or file."""


# Options that only steer training (initialisation, dropout, freezing): they do not change what a trained model
# computes, so they are read and left behind.
_TRAINING_ONLY = {"freeze", "dropout", "emb_dropout", "hidden_dropout"}
_INITIALISATION = {
    "initializer", "init_weight", "init_gain", "bias_initializer", "bias_init_weight", "bias_init_gain",
    "embed_initializer", "embed_init_weight", "embed_init_gain", "init_rnn_orthogonal", "lstm_forget_gate",
}  # fmt: skip
_MODEL_KEYS = {"encoder", "decoder", "tied_embeddings", "tied_softmax", *_INITIALISATION}
_ENCODER_KEYS = {"type", "rnn_type", "embeddings", "hidden_size", "bidirectional", "num_layers", *_TRAINING_ONLY}
_DECODER_KEYS = _ENCODER_KEYS - {"bidirectional"} | {"attention", "input_feeding", "init_hidden", "activation"}
_EMBEDDING_KEYS = {"embedding_dim", "scale", "freeze", "dropout", "load_pretrained"}
_SIDE_KEYS = {
    "lang", "level", "lowercase", "normalize", "max_length", "min_length", "voc_file", "voc_limit", "voc_min_freq",
    "tokenizer_type", "bpe_type", "tokenizer_cfg",
}  # fmt: skip
_TOKENIZER_CFG_KEYS = {"codes", "separator", "model_file", "dropout", "alpha", "nbest_size", "pretokenizer"}
_SPECIAL_DEFAULTS = {
    "unk_token": "<unk>", "pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>",
    "unk_id": 0, "pad_id": 1, "bos_id": 2, "eos_id": 3,
}  # fmt: skip
# testing: options of decoding that generate() has an equal of (the rest only steer JoeyNMT's own output files).
_TESTING_KEYS = {
    "beam_size", "beam_alpha", "max_output_length", "min_output_length", "generate_unk", "n_best", "batch_size",
    "batch_type", "eval_metrics", "sacrebleu_cfg", "return_prob", "return_attention", "load_model", "postprocess",
    "bpe_type", "use_cuda", "eval_metric", "sacrebleu", "repetition_penalty", "no_repeat_ngram_size",
}  # fmt: skip


@dataclass
class SpecialTokens:
    unk: str
    pad: str
    bos: str
    eos: str
    ids: dict[str, int]  # token -> id, JoeyNMT's `special_symbols`

    @property
    def tokens(self) -> list[str]:
        """In id order, as JoeyNMT's Vocabulary puts them first."""
        return sorted(self.ids, key=self.ids.get)


@dataclass
class Segmentation:
    level: str  # "word" or "bpe"
    lowercase: bool
    tokenizer_type: str | None = None  # "subword-nmt" or "sentencepiece" for level "bpe"
    codes: Path | None = None
    separator: str = "@@"
    model_file: Path | None = None


@dataclass
class JoeyNMTSettings:
    source_lang: str
    target_lang: str
    model: dict  # RNNSeq2SeqConfig arguments (without the vocabulary sizes, which the vocabularies decide)
    tied_embeddings: bool
    tied_softmax: bool
    generation: dict  # GenerationConfig arguments
    segmentation: Segmentation
    specials: SpecialTokens
    voc_files: dict[str, Path | None]  # "src"/"trg" -> the configured vocabulary file, if any
    notes: list[str] = field(default_factory=list)  # differences a user should know of (model card, log)


def _check_keys(section: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise JoeyNMTImportError(f"{where}: option(s) {', '.join(unknown)} not supported by the importer")


def _require(value, allowed, where: str, why: str):
    if value not in allowed:
        raise JoeyNMTImportError(f"{where}: {value!r} is not supported ({why})")
    return value


def read_settings(config_path: Path) -> JoeyNMTSettings:
    """Read and check a JoeyNMT configuration file; relative file paths in it are read from the working directory,
    as JoeyNMT reads them, or else from the configuration file's folder."""
    if not config_path.is_file():
        raise JoeyNMTImportError(f"JoeyNMT configuration {config_path} not found")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    model, data, testing = config.get("model") or {}, config.get("data") or {}, config.get("testing") or {}
    model_settings = _model_settings(model)
    specials = _special_tokens(data)
    sides = {side: data.get(side) or {} for side in ("src", "trg")}
    segmentation = _shared_segmentation(sides, config_path)
    generation, notes = _generation(testing, specials, data)
    return JoeyNMTSettings(
        source_lang=sides["src"].get("lang", "src"),
        target_lang=sides["trg"].get("lang", "trg"),
        model=model_settings,
        tied_embeddings=bool(model.get("tied_embeddings", False)),
        tied_softmax=bool(model.get("tied_softmax", False)),
        generation=generation,
        segmentation=segmentation,
        specials=specials,
        voc_files={side: _path(section["voc_file"], config_path) if section.get("voc_file") else None
                   for side, section in sides.items()},  # fmt: skip
        notes=notes,
    )


def _model_settings(model: dict) -> dict:
    """RNNSeq2SeqConfig's arguments for JoeyNMT's `model` section, which must describe a recurrent model this one
    computes exactly."""
    _check_keys(model, _MODEL_KEYS, "model")
    encoder, decoder = model.get("encoder") or {}, model.get("decoder") or {}
    for name, section, allowed in (("encoder", encoder, _ENCODER_KEYS), ("decoder", decoder, _DECODER_KEYS)):
        _check_keys(section, allowed, f"model.{name}")
        _require(section.get("type", "recurrent"), {"recurrent"}, f"model.{name}.type", "only recurrent models")
        _check_keys(section.get("embeddings") or {}, _EMBEDDING_KEYS, f"model.{name}.embeddings")
        if (section.get("embeddings") or {}).get("scale", False):
            raise JoeyNMTImportError(f"model.{name}.embeddings.scale: true is not supported (unscaled embeddings)")
    rnn_type = _require(encoder.get("rnn_type", "gru"), {"gru", "lstm"}, "model.encoder.rnn_type", "gru or lstm")
    _require(decoder.get("rnn_type", "gru"), {rnn_type}, "model.decoder.rnn_type", "the same cell as the encoder's")
    embedding_dim = (encoder.get("embeddings") or {}).get("embedding_dim", 64)
    _require((decoder.get("embeddings") or {}).get("embedding_dim", 64), {embedding_dim},
             "model.decoder.embeddings.embedding_dim", "the same width as the source embeddings")  # fmt: skip
    _require(decoder.get("init_hidden", "bridge"), {"bridge"}, "model.decoder.init_hidden", "only 'bridge'")
    _require(decoder.get("activation", "tanh"), {"tanh"}, "model.decoder.activation", "only 'tanh'")
    attention = _require(decoder.get("attention", "bahdanau"), set(ATTENTION_TYPES), "model.decoder.attention",
                         " or ".join(ATTENTION_TYPES))  # fmt: skip
    hidden_size = decoder.get("hidden_size", 1)
    return {
        "embedding_dim": embedding_dim,
        "attentional_size": hidden_size,
        "hidden_size": hidden_size,
        "encoder_hidden_size": encoder.get("hidden_size", 1),
        "num_encoder_layers": encoder.get("num_layers", 1),
        "num_decoder_layers": decoder.get("num_layers", 1),
        "bidirectional_encoder": encoder.get("bidirectional", True),
        "rnn_type": rnn_type,
        "attention_type": ATTENTION_TYPES[attention],
        "attention_hidden_size": hidden_size,
        "attention_query_bias": False,
        "shared_bridge": True,
        "input_feeding": decoder.get("input_feeding", True),
        "dropout": decoder.get("hidden_dropout", 0.0),
    }


def _special_tokens(data: dict) -> SpecialTokens:
    """`data.special_symbols` over JoeyNMT's defaults; language tags and a separator have no equal here."""
    specials_config = data.get("special_symbols") or {}
    for option in ("sep_token", "sep_id", "lang_tags"):
        if specials_config.get(option):
            raise JoeyNMTImportError(f"data.special_symbols.{option} is not supported (no language tags or separator)")
    symbols = {**_SPECIAL_DEFAULTS, **specials_config}
    return SpecialTokens(
        unk=symbols["unk_token"], pad=symbols["pad_token"], bos=symbols["bos_token"], eos=symbols["eos_token"],
        ids={symbols[f"{name}_token"]: symbols[f"{name}_id"] for name in ("unk", "pad", "bos", "eos")},
    )  # fmt: skip


def _shared_segmentation(sides: dict[str, dict], config_path: Path) -> Segmentation:
    """The one segmentation of `data.src` and `data.trg`: one tokenizer serves both sides here."""
    segmentations = {side: _segmentation(section, f"data.{side}", config_path) for side, section in sides.items()}
    if segmentations["src"] != segmentations["trg"]:
        raise JoeyNMTImportError(
            f"data.src and data.trg segment differently ({segmentations['src']} / {segmentations['trg']}): "
            "one tokenizer serves both sides here, so both must use the same level, lowercasing and codes or model"
        )
    return segmentations["src"]


def _path(value: str, config_path: Path) -> Path:
    path = Path(value)
    return path if path.is_absolute() or path.exists() else config_path.parent / path


def _segmentation(section: dict, where: str, config_path: Path) -> Segmentation:
    _check_keys(section, _SIDE_KEYS, where)
    if section.get("normalize", False):
        raise JoeyNMTImportError(f"{where}.normalize: true is not supported (its clean-up of the output text)")
    level = _require(section.get("level", "word"), {"word", "bpe"}, f"{where}.level", "word or bpe")
    cfg = section.get("tokenizer_cfg") or {}
    _check_keys(cfg, _TOKENIZER_CFG_KEYS, f"{where}.tokenizer_cfg")
    _require(cfg.get("pretokenizer", "none"), {"none"}, f"{where}.tokenizer_cfg.pretokenizer",
             "the Moses pre-tokenizer is not reproduced")  # fmt: skip
    segmentation = Segmentation(level=level, lowercase=bool(section.get("lowercase", False)))
    if level == "bpe":
        kind = section.get("tokenizer_type", section.get("bpe_type", "sentencepiece"))
        segmentation.tokenizer_type = _require(kind, {"subword-nmt", "sentencepiece"}, f"{where}.tokenizer_type",
                                               "subword-nmt or sentencepiece")  # fmt: skip
        option = "codes" if kind == "subword-nmt" else "model_file"
        if not cfg.get(option):
            raise JoeyNMTImportError(f"{where}.tokenizer_cfg.{option} is required for tokenizer_type {kind}")
        setattr(segmentation, option, _path(cfg[option], config_path))
        segmentation.separator = cfg.get("separator", "@@")
    return segmentation


def _generation(testing: dict, specials: SpecialTokens, data: dict) -> tuple[dict, list[str]]:
    """generate()'s settings for JoeyNMT's decoding: the same beam, length limits and forbidden tokens."""
    _check_keys(testing, _TESTING_KEYS, "testing")
    for option in ("repetition_penalty", "no_repeat_ngram_size"):
        if testing.get(option, -1) > 0:
            raise JoeyNMTImportError(f"testing.{option} is not supported (JoeyNMT applies it to Transformers only)")
    ids = specials.ids
    beam_size = testing.get("beam_size", 1)
    alpha = testing.get("beam_alpha", -1)
    notes = []
    # JoeyNMT never generates <s> or <pad>, nor (with generate_unk: false) <unk>; nor </s> in the first
    # min_output_length steps.
    suppressed = [ids[specials.bos], ids[specials.pad]]
    if not testing.get("generate_unk", True):
        suppressed.append(ids[specials.unk])
    generation = {
        "decoder_start_token_id": ids[specials.bos],
        "bos_token_id": ids[specials.bos],
        "eos_token_id": ids[specials.eos],
        "pad_token_id": ids[specials.pad],
        "num_beams": beam_size,
        "suppress_tokens": suppressed,
    }
    min_output_length = testing.get("min_output_length", 1)
    if min_output_length == 1:
        generation["begin_suppress_tokens"] = [ids[specials.eos]]  # the same, at no cost after the first step
    elif min_output_length > 1:
        generation["min_new_tokens"] = min_output_length
    if beam_size > 1:
        # JoeyNMT scores a finished hypothesis log p / ((5 + length) / 6) ** alpha (no penalty for alpha <= 0);
        # generate() divides by length ** length_penalty: equal for alpha 0, the nearest setting otherwise.
        generation["length_penalty"] = max(alpha, 0.0)
        if alpha > 0:
            notes.append(
                f"beam_alpha {alpha}: JoeyNMT divides a hypothesis' log-probability by ((5 + length) / 6) ** alpha, "
                f"generate() by length ** length_penalty ({alpha} here); beam search can rank hypotheses of "
                "different lengths differently"
            )
    max_output_length = testing.get("max_output_length", -1)
    if max_output_length and max_output_length > 0:
        generation["max_new_tokens"] = max_output_length
    else:
        # JoeyNMT decodes up to 1.5 times the longest source of each batch; generate() has one fixed limit.
        longest = max((data.get(side) or {}).get("max_length", -1) for side in ("src", "trg"))
        generation["max_new_tokens"] = int(1.5 * longest) if longest > 0 else 100
        notes.append(
            "testing.max_output_length is not set: JoeyNMT stops at 1.5 times the longest source of each batch, "
            f"generate() here at {generation['max_new_tokens']} tokens"
        )
    return generation, notes
