"""JoeyNMT's recurrent model tensors as this model's state dict (names and shapes: ../../shared/notes/joeynmt.md and
joeynmt/encoders.py, decoders.py, attention.py).

Every tensor of the checkpoint is used exactly once and every tensor of the model is filled: a name left over on
either side is an error, never a silently random or ignored weight.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .settings import JoeyNMTImportError


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """`model_state` of a JoeyNMT checkpoint, read without running pickled code (`weights_only=True`)."""
    if not path.is_file():
        raise JoeyNMTImportError(f"JoeyNMT checkpoint {path} not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or others for unsafe or broken files
        raise JoeyNMTImportError(
            f"{path} cannot be read as tensors only (torch.load(weights_only=True)): {error}. The importer never runs "
            "a checkpoint's pickled code."
        ) from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model_state"), dict):
        raise JoeyNMTImportError(f"{path} is not a JoeyNMT checkpoint (no 'model_state')")
    return checkpoint["model_state"]


def embeddings_and_encoder(source_table, target_table, encoder_rnn: dict[str, torch.Tensor], config,
                           source_ids: list[int], error: type[ValueError]) -> dict[str, torch.Tensor]:
    """Our embedding tables and encoder RNNs from a toolkit's (JoeyNMT's and OpenNMT's alike): the source table's rows
    in our id order (`source_ids`), the target table where the vocabularies are separate (else it must equal the
    source's), and a bidirectional nn.LSTM/GRU's tensors ("encoder.rnn.weight_ih_l0", "..._l0_reverse", ...) as our
    per-direction layers."""
    state = {"model.encoder.embed_tokens.weight": source_table[torch.tensor(source_ids)]}
    if config.source_vocab_size is not None:
        state["model.decoder.embed_tokens.weight"] = target_table
    elif not torch.equal(source_table, target_table):
        raise error("source and target embeddings differ, but the model was converted to share one table")
    for name, tensor in encoder_rnn.items():
        weight, layer, reverse = re.fullmatch(r"encoder\.rnn\.(\w+)_l(\d+)(_reverse)?", name).groups()
        direction = "backward_layers" if reverse else "forward_layers"
        state[f"model.encoder.{direction}.{layer}.{weight}_l0"] = tensor
    return state


def convert_state(joey: dict[str, torch.Tensor], config, source_ids: list[int]) -> dict[str, torch.Tensor]:
    """JoeyNMT's `model_state` -> RNNSeq2SeqForConditionalGeneration's state dict (before tying).

    source_ids: for each of our token ids, the JoeyNMT source id whose embedding row it takes (see segmentation.py).
    """
    joey = dict(joey)

    def take(name: str) -> torch.Tensor:
        if name not in joey:
            raise JoeyNMTImportError(f"the checkpoint lacks {name}, which this model needs")
        return joey.pop(name)

    encoder_rnn = {name: take(name) for name in [n for n in joey if n.startswith("encoder.rnn.")]}
    state = embeddings_and_encoder(take("src_embed.lut.weight"), take("trg_embed.lut.weight"), encoder_rnn, config,
                                   source_ids, JoeyNMTImportError)  # fmt: skip
    for name in [n for n in joey if n.startswith("decoder.rnn.")]:
        weight, layer = re.fullmatch(r"decoder\.rnn\.(\w+)_l(\d+)", name).groups()
        state[f"model.decoder.layers.{layer}.{weight}_l0"] = take(name)

    # JoeyNMT's attentional layer reads [s_t; c_t], ours [c_t; s_t]: the same matrix with its column blocks swapped.
    attentional = take("decoder.att_vector_layer.weight")
    hidden_size = config.hidden_size
    state["model.decoder.attentional_layer.weight"] = torch.cat(
        [attentional[:, hidden_size:], attentional[:, :hidden_size]], dim=1
    )
    state["model.decoder.attentional_layer.bias"] = take("decoder.att_vector_layer.bias")
    state["model.decoder.bridge.weight"] = take("decoder.bridge_layer.weight")
    state["model.decoder.bridge.bias"] = take("decoder.bridge_layer.bias")
    state["model.decoder.attention.key_projection.weight"] = take("decoder.attention.key_layer.weight")
    if config.attention_type == "luong_concat":
        state["model.decoder.attention.query_projection.weight"] = take("decoder.attention.query_layer.weight")
        state["model.decoder.attention.energy.weight"] = take("decoder.attention.energy_layer.weight")
    state["lm_head.weight"] = take("decoder.output_layer.weight")
    if joey:
        raise JoeyNMTImportError(f"the checkpoint holds tensors this model has no place for: {sorted(joey)}")
    return state


def load_converted(model, state: dict[str, torch.Tensor], error: type[ValueError] = JoeyNMTImportError) -> None:
    """Fill `model` with `state`; every parameter must come from the checkpoint, with the expected shape (or
    `error` is raised: the importer's own)."""
    expected = model.state_dict()
    if model.config.tie_word_embeddings:
        state = {key: value for key, value in state.items() if key != "lm_head.weight"} | {
            "lm_head.weight": state["model.encoder.embed_tokens.weight"]
        }
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}" for k in sorted(set(state) & set(expected))
             if state[k].shape != expected[k].shape]  # fmt: skip
    if missing or unexpected or wrong:
        raise error(
            f"the converted checkpoint does not fit the model: missing {missing}, unexpected {unexpected}, "
            f"wrong shape {wrong}"
        )
    model.load_state_dict(state, strict=True)
