"""Marian's `s2s` tensors as this model's state dict (names: src/models/s2s.h, src/rnn/cells.h, src/rnn/attention.h;
Marian's `nematus` models through the name map of src/models/nematus.h).

Marian stores a matrix `[in, out]` (y = x W + b), torch `[out, in]`: every matrix is transposed, but the output
layer's `decoder_ff_logit_l2_Wt`, which Marian stores `[vocabulary, dim-emb]` as torch does.

GRU cells: W packs the reset and update gates' input weights `[r | z]`, Wx the candidate's, U and Ux the same for the
state, b `[b_r | b_z]` and bx the candidate's bias, and h' = (1 - z) h~ + z h, torch's gate order and update. The
candidate's bias bx meets the reset gate in one of two ways:
    h~ = tanh(x Wx + r * (h Ux) + bx)     every cell but the conditional GRU's second (torch: bx in bias_ih)
    h~ = tanh(x Wx + r * (h Ux + bx))     the conditional GRU's second cell, Marian's `final` cell (bias_hh)
Every tensor of the file is used exactly once, and every tensor of the model is filled.
"""

from __future__ import annotations

import torch

from .settings import MarianImportError

# Marian's `--type nematus` names -> its `s2s` names (src/models/nematus.h, createNameMap), without layer norm.
_NEMATUS_NAMES = {
    "Wemb": "encoder_Wemb", "Wemb_dec": "decoder_Wemb",
    "ff_state_W": "decoder_ff_state_W", "ff_state_b": "decoder_ff_state_b",
    "ff_logit_prev_W": "decoder_ff_logit_l1_W0", "ff_logit_lstm_W": "decoder_ff_logit_l1_W1",
    "ff_logit_ctx_W": "decoder_ff_logit_l1_W2", "ff_logit_prev_b": "decoder_ff_logit_l1_b0",
    "ff_logit_lstm_b": "decoder_ff_logit_l1_b1", "ff_logit_ctx_b": "decoder_ff_logit_l1_b2",
    "ff_logit_W": "decoder_ff_logit_l2_W", "ff_logit_b": "decoder_ff_logit_l2_b",
    **{f"encoder{suffix}": f"encoder_bi{suffix}" for suffix in ("_W", "_Wx", "_U", "_Ux", "_b", "_bx")},
    **{f"encoder_r{suffix}": f"encoder_bi_r{suffix}" for suffix in ("_W", "_Wx", "_U", "_Ux", "_b", "_bx")},
    **{f"decoder{suffix}": f"decoder_cell1{suffix}" for suffix in ("_W", "_Wx", "_U", "_Ux", "_b", "_bx")},
    "decoder_Wc": "decoder_cell2_W", "decoder_Wcx": "decoder_cell2_Wx", "decoder_U_nl": "decoder_cell2_U",
    "decoder_Ux_nl": "decoder_cell2_Ux", "decoder_b_nl": "decoder_cell2_b", "decoder_bx_nl": "decoder_cell2_bx",
}  # fmt: skip
_NEMATUS_UNUSED = ("decoder_c_tt",)  # an energy bias Nematus never trained: a softmax ignores it


def marian_names(tensors: dict[str, torch.Tensor], model_type: str) -> dict[str, torch.Tensor]:
    """The tensors under Marian's `s2s` names."""
    if model_type != "nematus":
        return dict(tensors)
    return {_NEMATUS_NAMES.get(name, name): tensor for name, tensor in tensors.items() if name not in _NEMATUS_UNUSED}


def convert_state(theirs: dict[str, torch.Tensor], config, source_ids: list[int], tied_output: bool):
    """Marian's tensors (s2s names) -> RNNSeq2SeqForConditionalGeneration's state dict (before tying).

    source_ids: for each of our token ids, Marian's source id whose embedding row it takes."""
    theirs, state = dict(theirs), {}

    def take(name: str) -> torch.Tensor:
        if name not in theirs:
            raise MarianImportError(f"the model lacks {name}, which its options call for")
        return theirs.pop(name)

    shared = "Wemb" in theirs
    source_table = take("Wemb") if shared else take("encoder_Wemb")
    state["model.encoder.embed_tokens.weight"] = source_table[torch.tensor(source_ids)]
    target_table = source_table if shared else take("decoder_Wemb")
    if config.source_vocab_size is not None:
        state["model.decoder.embed_tokens.weight"] = target_table
    for layer in range(config.num_encoder_layers):
        suffix = "" if layer == 0 else f"_l{layer + 1}_cell1"
        _gru(state, take, config, f"model.encoder.forward_layers.{layer}", f"encoder_bi{suffix}")
        _gru(state, take, config, f"model.encoder.backward_layers.{layer}", f"encoder_bi_r{suffix}")
    _bridge(state, take, config)
    _gru(state, take, config, "model.decoder.layers.0", "decoder_cell1")
    _gru(state, take, config, "model.decoder.conditional_cell", "decoder_cell2", bias_in_reset=True)
    for layer in range(1, config.num_decoder_layers):
        _gru(state, take, config, f"model.decoder.layers.{layer}", f"decoder_l{layer + 1}_cell1")
    _attention(state, take, config)
    _deep_output(state, take, config)
    if tied_output:
        state["lm_head.weight"] = target_table
    elif "decoder_ff_logit_l2_Wt" in theirs:
        state["lm_head.weight"] = take("decoder_ff_logit_l2_Wt")
    else:  # older Marian and Nematus files: [dim-emb, vocabulary]
        state["lm_head.weight"] = take("decoder_ff_logit_l2_W").T
    if config.output_bias:
        state["lm_head.bias"] = take("decoder_ff_logit_l2_b")
    if theirs:
        raise MarianImportError(f"the model holds tensors this conversion has no place for: {sorted(theirs)}")
    return {name: tensor.contiguous() for name, tensor in state.items()}


def _gru(state: dict, take, config, ours: str, prefix: str, bias_in_reset: bool = False) -> None:
    """One Marian GRU cell (`prefix`) as our GRU layer `ours` (see the module docstring for the two biases)."""
    hidden = config.hidden_size
    state[f"{ours}.weight_ih_l0"] = torch.cat([take(f"{prefix}_W"), take(f"{prefix}_Wx")], dim=1).T
    state[f"{ours}.weight_hh_l0"] = torch.cat([take(f"{prefix}_U"), take(f"{prefix}_Ux")], dim=1).T
    gates, candidate = take(f"{prefix}_b"), take(f"{prefix}_bx")
    zeros = candidate.new_zeros(hidden)
    state[f"{ours}.bias_ih_l0"] = torch.cat([gates, zeros if bias_in_reset else candidate])
    state[f"{ours}.bias_hh_l0"] = torch.cat([gates.new_zeros(2 * hidden), candidate if bias_in_reset else zeros])
    if config.layer_norm:  # one gain over the input product's 3H gates, one over the recurrent product's
        state[f"{ours}.norm_ih.weight"] = take(f"{prefix}_gamma1")
        state[f"{ours}.norm_hh.weight"] = take(f"{prefix}_gamma2")


def _bridge(state: dict, take, config) -> None:
    """The start state tanh(W mean + b), with layer normalisation tanh(LN(W mean; gamma, beta = b))."""
    state["model.decoder.bridge.weight"] = take("decoder_ff_state_W").T
    if config.layer_norm:
        state["model.decoder.bridge_norm.weight"] = take("decoder_ff_state_gamma")
        state["model.decoder.bridge_norm.bias"] = take("decoder_ff_state_b")
    else:
        state["model.decoder.bridge.bias"] = take("decoder_ff_state_b")


def _attention(state: dict, take, config) -> None:
    """e = U_att^T tanh(W_comb_att^T s' + Wc_att^T h + b_att): b_att sits on the query side here, the sum is the same;
    with layer normalisation, U_att^T tanh(LN(W_comb_att^T s'; gamma2) + LN(Wc_att^T h; gamma1, beta = b_att))."""
    attention = "model.decoder.attention"
    state[f"{attention}.key_projection.weight"] = take("decoder_Wc_att").T
    state[f"{attention}.query_projection.weight"] = take("decoder_W_comb_att").T
    if config.layer_norm:
        state[f"{attention}.key_norm.weight"] = take("decoder_att_gamma1")
        state[f"{attention}.key_norm.bias"] = take("decoder_b_att")
        state[f"{attention}.query_norm.weight"] = take("decoder_att_gamma2")
    else:
        state[f"{attention}.query_projection.bias"] = take("decoder_b_att")
    state[f"{attention}.energy.weight"] = take("decoder_U_att").T


def _deep_output(state: dict, take, config) -> None:
    """The deep output tanh(y W0 + b0 + s W1 + b1 + c W2 + b2) as one layer over [c; s; y]; with layer normalisation
    sum_i LN(x_i W_i; gamma_i, beta = b_i), the betas summed into the layer's bias."""
    decoder = "model.decoder"
    deep = [take(f"decoder_ff_logit_l1_W{i}").T for i in (2, 1, 0)]
    state[f"{decoder}.attentional_layer.weight"] = torch.cat(deep, dim=1)
    state[f"{decoder}.attentional_layer.bias"] = sum(take(f"decoder_ff_logit_l1_b{i}") for i in range(3))
    if config.layer_norm:
        for norm, marian_input in enumerate((2, 1, 0)):  # ours read [c; s; y], Marian's inputs are [y, s, c]
            state[f"{decoder}.attentional_norms.{norm}.weight"] = take(f"decoder_ff_logit_l1_gamma{marian_input}")
