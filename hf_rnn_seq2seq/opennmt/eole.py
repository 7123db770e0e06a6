"""Reading an eole model folder (`config.json`, `vocab.json`, `model.*.safetensors`) as OpenNMT-py's options and
tensors, so that one converter serves both.

eole, OpenNMT-py's successor, keeps its recurrent modules (eole/encoders/rnn_encoder.py, eole/decoders/rnn_decoder.py,
eole/modules/global_attention.py) with their tensor names under `encoder.`, `decoder.` and `generator.`; it renames
the embeddings (`src_emb.embeddings`, `tgt_emb.embeddings`), stores a tensor shared by two modules once, adds the
sinusoidal position encoding to RNN embeddings by default (`position_encoding_type`), may leave out the generator's
bias (`generator_bias`), and writes in `config.json` only the options that were set, nested by module. The rest are
eole 0.6.4's defaults (eole/config/models.py), below.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .checkpoint import OpenNMTCheckpoint
from .settings import OpenNMTImportError

# eole 0.6.4's defaults for what config.json leaves out (RnnConfig, EncoderConfig, DecoderConfig, EmbeddingsConfig,
# BaseModelConfig); model-level values, where given, stand for both sides.
DEFAULTS = {
    "rnn_type": "LSTM", "layers": 2, "hidden_size": 512, "word_vec_size": 512, "bridge": False, "input_feed": 1,
    "global_attention": "general", "global_attention_function": "softmax", "coverage_attn": False,
    "context_gate": None, "position_encoding_type": "SinusoidalInterleaved", "generator_bias": True,
}  # fmt: skip
_EMBEDDINGS = {"src_emb.embeddings.": "encoder.embeddings.make_embedding.emb_luts.0.",
               "tgt_emb.embeddings.": "decoder.embeddings.make_embedding.emb_luts.0."}  # fmt: skip
_POSITION_TABLES = ("src_emb.pe.pe", "tgt_emb.pe.pe")
_REFUSED_EMBEDDINGS = (("normalize", False), ("embedding_layer_norm", False), ("freeze_word_vecs_enc", False))


def read_eole(folder: Path) -> OpenNMTCheckpoint:
    missing = [name for name in ("config.json", "vocab.json") if not (folder / name).is_file()]
    shards = sorted(folder.glob("model.*.safetensors"))
    if missing or not shards:
        raise OpenNMTImportError(
            f"{folder} is not an eole model folder: it lacks {missing + ([] if shards else ['model.*.safetensors'])}"
        )
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    from safetensors.torch import load_file

    state = {}
    for shard in shards:
        state.update(load_file(shard))
    options = _options(config, folder)
    return OpenNMTCheckpoint(options, vocab, _tensors(state, options), toolkit="eole")


def _options(config: dict, folder: Path) -> dict:
    """config.json as OpenNMT-py's options (the names settings.read_settings reads)."""
    model = config.get("model") or {}
    encoder, decoder, embeddings = (model.get(key) or {} for key in ("encoder", "decoder", "embeddings"))
    architecture = model.get("architecture")
    if architecture not in ("rnn", "custom"):
        raise OpenNMTImportError(
            f"option model.architecture={architecture!r} is not supported: only recurrent models ('rnn', or 'custom' "
            "with an rnn/brnn encoder and an rnn decoder) are represented"
        )

    def setting(section: dict, name: str, default_name: str | None = None):
        return section.get(name, model.get(name, DEFAULTS[default_name or name]))

    rnn_types = {setting(encoder, "rnn_type"), setting(decoder, "rnn_type")}
    if len(rnn_types) > 1:
        raise OpenNMTImportError(f"encoder and decoder of different rnn_type {sorted(rnn_types)} are not represented")
    for name, default in _REFUSED_EMBEDDINGS:
        if embeddings.get(name, default) != default:
            raise OpenNMTImportError(f"option model.embeddings.{name}={embeddings[name]!r} is not supported")
    positions = embeddings.get("position_encoding_type", DEFAULTS["position_encoding_type"])
    if positions not in ("SinusoidalInterleaved", None):
        raise OpenNMTImportError(
            f"option model.embeddings.position_encoding_type={positions!r} is not supported: only "
            "SinusoidalInterleaved (eole's default) or none"
        )
    subword = (config.get("transforms_configs") or {}).get("sentencepiece") or {}
    return {
        "encoder_type": "rnn" if architecture == "rnn" else encoder.get("encoder_type"),  # eole forces "rnn" there
        "decoder_type": decoder.get("decoder_type", "rnn"),
        "rnn_type": rnn_types.pop(),
        "enc_layers": setting(encoder, "layers"),
        "dec_layers": setting(decoder, "layers"),
        "enc_hid_size": setting(encoder, "hidden_size"),
        "dec_hid_size": setting(decoder, "hidden_size"),
        "src_word_vec_size": embeddings.get("src_word_vec_size", embeddings.get("word_vec_size", 512)),
        "tgt_word_vec_size": embeddings.get("tgt_word_vec_size", embeddings.get("word_vec_size", 512)),
        "bridge": setting(encoder, "bridge"),
        "input_feed": model.get("input_feed", DEFAULTS["input_feed"]),
        **{name: decoder.get(name, DEFAULTS[name]) for name in (
            "global_attention", "global_attention_function", "coverage_attn", "context_gate")},  # fmt: skip
        "position_encoding": positions is not None,
        "generator_bias": model.get("generator_bias", DEFAULTS["generator_bias"]),
        "share_embeddings": model.get("share_embeddings", False),
        "share_decoder_embeddings": model.get("share_decoder_embeddings", False),
        "transforms": config.get("transforms") or [],
        # eole copies subword models into the model folder and names them ${MODEL_PATH}/...
        **{f"{side}_subword_model": subword[f"{side}_subword_model"].replace("${MODEL_PATH}", str(folder))
           for side in ("src", "tgt") if subword.get(f"{side}_subword_model")},  # fmt: skip
    }


def _tensors(state: dict[str, torch.Tensor], options: dict) -> dict[str, torch.Tensor]:
    """eole's tensors under OpenNMT-py's names, a shared tensor under each name that reads it."""
    renamed = {}
    for name, tensor in state.items():
        if name in _POSITION_TABLES:
            _check_position_table(name, tensor)
            continue
        prefix = next((prefix for prefix in _EMBEDDINGS if name.startswith(prefix)), None)
        renamed[_EMBEDDINGS[prefix] + name[len(prefix) :] if prefix else name] = tensor
    source, target = (f"{side}.embeddings.make_embedding.emb_luts.0.weight" for side in ("encoder", "decoder"))
    if options["share_embeddings"]:
        renamed.setdefault(target, renamed.get(source))
    if options["share_decoder_embeddings"]:
        renamed.setdefault("generator.weight", renamed.get(target))
    return {name: tensor for name, tensor in renamed.items() if tensor is not None}


def _check_position_table(name: str, table: torch.Tensor) -> None:
    """The saved (max_len, 1, E) table must be the sinusoids the model computes (it is not a learned weight)."""
    from ..modeling_rnn_seq2seq import add_positions

    expected = add_positions(torch.zeros(1, table.shape[0], table.shape[-1]))[0]
    if not torch.allclose(table[:, 0], expected, atol=1e-6, rtol=0):
        raise OpenNMTImportError(f"{name} is not the sinusoidal position encoding table eole computes")
