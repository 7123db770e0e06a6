"""OpenNMT-py's recurrent model tensors as this model's state dict (names: onmt/encoders/rnn_encoder.py,
onmt/decoders/decoder.py, onmt/modules/global_attention.py, onmt/modules/stacked_rnn.py, onmt/model_builder.py).

Every tensor of the checkpoint is used exactly once (a tensor OpenNMT shares between modules appears under each of
their names, and each name is read) and every tensor of the model is filled: a name left over on either side is an
error, never a silently random or ignored weight.
"""

from __future__ import annotations

import re

import torch

from ..joeynmt.weights import embeddings_and_encoder
from .settings import OpenNMTImportError

_EMBEDDINGS = "{side}.embeddings.make_embedding.emb_luts.0.weight"


def convert_state(theirs: dict[str, torch.Tensor], config, source_ids: list[int]) -> dict[str, torch.Tensor]:
    """OpenNMT's tensors (the generator's as "generator.*") -> RNNSeq2SeqForConditionalGeneration's state dict.

    source_ids: for each of our token ids, OpenNMT's source id whose embedding row it takes."""
    theirs = dict(theirs)

    def take(name: str) -> torch.Tensor:
        if name not in theirs:
            raise OpenNMTImportError(f"the checkpoint lacks {name}, which this model needs")
        return theirs.pop(name)

    encoder_rnn = {name: take(name) for name in [n for n in theirs if n.startswith("encoder.rnn.")]}
    state = embeddings_and_encoder(take(_EMBEDDINGS.format(side="encoder")), take(_EMBEDDINGS.format(side="decoder")),
                                   encoder_rnn, config, source_ids, OpenNMTImportError)  # fmt: skip
    for name in [n for n in theirs if n.startswith("decoder.rnn.")]:
        # InputFeedRNNDecoder: stacked cells, decoder.rnn.layers.N.weight_ih; StdRNNDecoder: one nn.LSTM/GRU.
        cell = re.fullmatch(r"decoder\.rnn\.layers\.(\d+)\.(\w+)", name)
        layer, weight = cell.groups() if cell else reversed(re.fullmatch(r"decoder\.rnn\.(\w+)_l(\d+)", name).groups())
        state[f"model.decoder.layers.{layer}.{weight}_l0"] = take(name)
    for ours, index in (("bridge", 0), ("cell_bridge", 1)):
        if f"encoder.bridge.{index}.weight" in theirs:
            state[f"model.decoder.{ours}.weight"] = take(f"encoder.bridge.{index}.weight")
            state[f"model.decoder.{ours}.bias"] = take(f"encoder.bridge.{index}.bias")

    attention = "model.decoder.attention"
    if config.attention_type == "luong_general":
        # score = (W_in q) . h = q . (W_in^T h): our key projection is W_in transposed.
        state[f"{attention}.key_projection.weight"] = take("decoder.attn.linear_in.weight").T.contiguous()
    elif config.attention_type == "luong_concat":  # mlp: v^T tanh(W_q q + b_q + U h)
        state[f"{attention}.query_projection.weight"] = take("decoder.attn.linear_query.weight")
        state[f"{attention}.query_projection.bias"] = take("decoder.attn.linear_query.bias")
        state[f"{attention}.key_projection.weight"] = take("decoder.attn.linear_context.weight")
        state[f"{attention}.energy.weight"] = take("decoder.attn.v.weight")
    # linear_out reads [c; q], as our attentional layer reads [c_t; s_t]; it has a bias for mlp only.
    linear_out = take("decoder.attn.linear_out.weight")
    state["model.decoder.attentional_layer.weight"] = linear_out
    state["model.decoder.attentional_layer.bias"] = (
        take("decoder.attn.linear_out.bias") if "decoder.attn.linear_out.bias" in theirs
        else linear_out.new_zeros(linear_out.shape[0])
    )  # fmt: skip
    state["lm_head.weight"] = take("generator.weight")
    if config.output_bias:
        state["lm_head.bias"] = take("generator.bias")
    if theirs:
        raise OpenNMTImportError(f"the checkpoint holds tensors this model has no place for: {sorted(theirs)}")
    return state
