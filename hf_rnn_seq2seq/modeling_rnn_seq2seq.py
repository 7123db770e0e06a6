"""RNN encoder–decoder with attention: GRU (Cho et al. 2014) or LSTM cells, Bahdanau et al. (2015) or Luong et al.
(2015) attention, or the fixed context of Cho et al. (2014).

Self-contained on purpose: this file is copied next to the weights for `trust_remote_code` loading, so it may
import only `torch`, `transformers` and the configuration file beside it, and it must run on every transformers
release in `TESTED_TRANSFORMERS` (the users' own installs, not ours).

Shapes: B batch, S source length, T target length, E `embedding_dim`, O `attentional_size` (E unless set),
H decoder `hidden_size`, K encoder output width (`config.encoder_output_size`), A attention width, L decoder layers,
V (target) vocabulary.
N decoder rows: B, or B * G when each source sentence is decoded G times side by side (G beams, or G returned
samples, as consecutive rows); the encoder's outputs are kept once per sentence, not copied G times.
"""

import torch
import transformers
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput

from .configuration_rnn_seq2seq import RNNSeq2SeqConfig

try:
    from transformers import initialization as init  # 5.x: its helpers leave tensors loaded from a checkpoint alone
except ImportError:  # 4.x initialises before it loads the checkpoint, so torch's own helpers do
    from torch.nn import init

# The oldest and newest transformers releases this file is tested with as remote code (compat-matrix.toml).
TESTED_TRANSFORMERS = ("4.46.3", "5.25.0")


# The output field that carries the decoder state: transformers 5.24 renamed `past_key_values` to `cache` (the old
# name still works there, with a deprecation warning on every call).
_STATE_OUTPUT = "cache" if "cache" in Seq2SeqModelOutput.__dataclass_fields__ else "past_key_values"


def _unsupported(problem: str) -> str:
    """An error message for a call this file does not recognise, naming the running and the tested transformers."""
    return (
        f"{problem}. This model's code is tested with transformers {TESTED_TRANSFORMERS[0]} to "
        f"{TESTED_TRANSFORMERS[1]}, and this is transformers {transformers.__version__}, whose generate() or "
        "training loop may pass the decoder state or other inputs in a way this code does not know: install a "
        "tested version rather than risk wrong results."
    )


def _refuse_unknown_arguments(kwargs: dict) -> None:
    # Silently ignoring an argument could drop the decoder state (transformers 5.24 renamed it) or a loss setting.
    # Known and not needed: where the passed decoder tokens sit (4.5x generate), which the state counts itself.
    kwargs.pop("cache_position", None)
    unknown = sorted(key for key, value in kwargs.items() if value is not None)
    if unknown:
        raise TypeError(_unsupported(f"RNNSeq2Seq forward() got arguments it does not understand: {unknown}"))


def _decoder_state(past_key_values, cache):
    """The recurrent state that generate() hands back: as `past_key_values` up to transformers 5.23, as `cache`
    from 5.24 on. None before the first step; anything but an `RNNDecoderState` is refused, not read as 'no state'."""
    if past_key_values is not None and cache is not None:
        raise ValueError("pass the decoder state as `cache` or as `past_key_values`, not both")
    state = cache if past_key_values is None else past_key_values
    if state is not None and not isinstance(state, RNNDecoderState):
        raise TypeError(_unsupported(f"the decoder state must be an RNNDecoderState, got a {type(state).__name__}"))
    return state


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Teacher-forcing decoder inputs: the start token followed by the labels, -100 read as padding. (B, T)"""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def _check_right_padded(mask: torch.Tensor, name: str) -> None:
    # The encoder (which reverses a row within its length) and the causal decoder read a row as its first
    # `mask.sum()` positions.
    if mask.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, length), got {tuple(mask.shape)}")
    if (mask[:, 1:] > mask[:, :-1]).any():
        raise ValueError(f"{name} must be right-padded (ones then zeros); set the tokenizer's padding_side='right'")


class RNNDecoderState:
    """The recurrent decoder state that `generate()` carries between steps as `past_key_values`.

    hidden: (L, N, H) GRU states, or (L, N, 2H) LSTM states [h; c]; attentional: (N, 1, O) previous attentional
    vector (input feeding) or None;
    keys: (B, S, A) encoder states projected once for the attention scorer, or None; values: (B, S, D) encoder states
    multiplied once by every weight matrix that reads the context vector (`PremultipliedContext`), or
    None; seen_tokens: how many decoder tokens it has consumed, so that a continued `generate()` feeds only the tokens
    after them.
    """

    is_compileable = False
    is_croppable = False
    # Like a linear-attention layer's, the state summarises the whole prefix: a continued generate() (5.24 on) then
    # passes the whole prefix, and forward feeds only the tokens after `seen_tokens`.
    is_linear = (True,)

    def __init__(self, hidden, attentional=None, keys=None, values=None, seen_tokens=0):
        self.hidden = hidden
        self.attentional = attentional
        self.keys = keys
        self.values = values
        self.seen_tokens = seen_tokens

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Follow beam search's choice of surviving hypotheses (called in place by `generate`).

        `keys` and `values` stay: one copy per source sentence (B rows, not N), and beam search picks each
        sentence's hypotheses among that sentence's own rows.
        """
        self.hidden = self.hidden.index_select(1, beam_idx.to(self.hidden.device))
        if self.attentional is not None:
            self.attentional = self.attentional.index_select(0, beam_idx.to(self.attentional.device))


# Marian's layer normalisation epsilon (its layerNorm's default), for `config.layer_norm`.
_LAYER_NORM_EPS = 1e-9


def _per_sentence(queries: torch.Tensor, sentences: int) -> torch.Tensor:
    """(N, T, D) -> (B, G*T, D): the G consecutive decoder rows of each sentence side by side, so that every query
    of a sentence meets its keys in one batched product and the keys are never copied G times."""
    return queries.reshape(sentences, -1, queries.shape[-1])


def _mix(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """sum_s weights_s values_s: weights (N, T, S), values (B, S, D) -> (N, T, D); a sentence's rows share values."""
    rows, steps, _ = weights.shape
    return torch.bmm(_per_sentence(weights, values.shape[0]), values).view(rows, steps, -1)


def _masked_softmax(scores: torch.Tensor, encoder_mask: torch.Tensor) -> torch.Tensor:
    """scores (B, T, S), encoder_mask (B, S) -> weights (B, T, S) with zero weight on padding."""
    scores = scores.masked_fill(~encoder_mask[:, None, :].bool(), torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1)


class MultiplicativeAttention(nn.Module):
    """Luong et al. (2015) eq. 8, `dot`: score = s_t^T h_s; `general`: score = s_t^T W_a h_s."""

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__()
        general = config.attention_type == "luong_general"
        self.key_projection = nn.Linear(config.encoder_output_size, config.hidden_size, bias=False) if general else None

    def project_keys(self, encoder_states: torch.Tensor) -> torch.Tensor:
        """(B, S, K) -> (B, S, H), computed once per source sentence."""
        return encoder_states if self.key_projection is None else self.key_projection(encoder_states)

    def forward(self, queries, keys, encoder_mask):
        """queries (N, T, H), keys (B, S, H), encoder_mask (B, S) -> attention weights (N, T, S)."""
        rows, steps = queries.shape[:2]
        weights = _masked_softmax(torch.bmm(_per_sentence(queries, keys.shape[0]), keys.transpose(1, 2)), encoder_mask)
        return weights.view(rows, steps, -1)


class AdditiveAttention(nn.Module):
    """Bahdanau et al. (2015) eq. 6 / Luong et al. (2015) eq. 8 `concat`: score = v_a^T tanh(W_q q + W_k h_s);
    with `config.layer_norm` (Marian's), v_a^T tanh(LN(W_q q) + LN(W_k h_s)), the keys' normalisation with a bias."""

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__()
        self.key_projection = nn.Linear(config.encoder_output_size, config.attention_hidden_size, bias=False)
        self.query_projection = nn.Linear(config.hidden_size, config.attention_hidden_size, config.attention_query_bias)
        self.energy = nn.Linear(config.attention_hidden_size, 1, bias=False)
        self.key_norm = self.query_norm = None
        if config.layer_norm:
            self.key_norm = nn.LayerNorm(config.attention_hidden_size, eps=_LAYER_NORM_EPS)
            self.query_norm = nn.LayerNorm(config.attention_hidden_size, eps=_LAYER_NORM_EPS, bias=False)

    def project_keys(self, encoder_states: torch.Tensor) -> torch.Tensor:
        """(B, S, K) -> (B, S, A), computed once per source sentence."""
        keys = self.key_projection(encoder_states)
        return keys if self.key_norm is None else self.key_norm(keys)

    def forward(self, queries, keys, encoder_mask):
        """queries (N, T, H), keys (B, S, A), encoder_mask (B, S) -> attention weights (N, T, S)."""
        rows, steps = queries.shape[:2]
        projected = self.query_projection(queries)
        projected = _per_sentence(projected if self.query_norm is None else self.query_norm(projected), keys.shape[0])
        # In place: the largest tensor of a decoding step, and the sum is needed by nothing but its tanh.
        hidden = (projected.unsqueeze(2) + keys.unsqueeze(1)).tanh_()  # (B, G*T, S, A)
        weights = _masked_softmax(self.energy(hidden).squeeze(-1), encoder_mask)  # (B, G*T, S)
        return weights.view(rows, steps, -1)


class LayerNormGRU(nn.Module):
    """A one-layer GRU with layer normalisation (Ba et al. 2016) as Marian's cells apply it (`config.layer_norm`):
    the input product and the recurrent product each normalised over their 3H gates, gain only, before the biases:
        g_i = LN(W_ih x) + b_ih,  g_h = LN(W_hh h) + b_hh,  then nn.GRU's gate equations on g_i and g_h.
    nn.GRU's parameter names and call (batch_first inputs (N, T, In), state (1, N, H)), one time step at a time."""

    def __init__(self, input_size: int, hidden_size: int, batch_first: bool = True):
        super().__init__()
        if not batch_first:
            raise ValueError("LayerNormGRU takes batch-first inputs only")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.zeros(3 * hidden_size))
        self.bias_hh_l0 = nn.Parameter(torch.zeros(3 * hidden_size))
        self.norm_ih = nn.LayerNorm(3 * hidden_size, eps=_LAYER_NORM_EPS, bias=False)
        self.norm_hh = nn.LayerNorm(3 * hidden_size, eps=_LAYER_NORM_EPS, bias=False)

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor):
        input_gates = _input_gates(self, inputs)  # (N, T, 3H), every step at once
        state, outputs = hidden[0], []
        for t in range(inputs.shape[1]):
            state = _rnn_step_from_gates(self, input_gates[:, t], state)
            outputs.append(state)
        return torch.stack(outputs, dim=1), state[None]


def _rnn_class(config: RNNSeq2SeqConfig) -> type[nn.Module]:
    """The class of every RNN layer: nn.GRU or nn.LSTM (`config.rnn_type`), or LayerNormGRU (`config.layer_norm`)."""
    return LayerNormGRU if config.layer_norm else getattr(nn, config.rnn_type.upper())


def _input_gates(rnn: nn.Module, inputs: torch.Tensor = None, product: torch.Tensor = None) -> torch.Tensor:
    """An RNN layer's input gates W_ih x + b_ih for inputs x (.., In), or from the product W_ih x where that comes
    ready (`product`); W_ih x normalised first in a LayerNormGRU."""
    if isinstance(rnn, LayerNormGRU):
        product = nn.functional.linear(inputs, rnn.weight_ih_l0) if product is None else product
        return rnn.norm_ih(product) + rnn.bias_ih_l0
    if product is None:
        return nn.functional.linear(inputs, rnn.weight_ih_l0, rnn.bias_ih_l0)
    return product + rnn.bias_ih_l0


def _hidden_gates(rnn: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """An RNN layer's recurrent gates W_hh h + b_hh (W_hh h normalised first in a LayerNormGRU)."""
    if isinstance(rnn, LayerNormGRU):
        return rnn.norm_hh(nn.functional.linear(hidden, rnn.weight_hh_l0)) + rnn.bias_hh_l0
    return nn.functional.linear(hidden, rnn.weight_hh_l0, rnn.bias_hh_l0)


def _zero_state(rnn: nn.Module, inputs: torch.Tensor):
    """nn.GRU/nn.LSTM's default start state made explicit, (1, B, H) zeros (h and c of an LSTM): given, it keeps
    the batch size variable in an ONNX export, which fixes the traced one where the RNN makes its own."""
    zeros = inputs.new_zeros(1, inputs.shape[0], rnn.hidden_size)
    return (zeros, zeros) if isinstance(rnn, nn.LSTM) else zeros


def _run_rnn(rnn: nn.Module, inputs: torch.Tensor, lengths: torch.Tensor, packed: bool):
    """A one-layer unidirectional nn.GRU/nn.LSTM over right-padded inputs (B, S, In) -> outputs (B, S, He) and, with
    `packed`, each row's final state after its last real position: (h,) or LSTM (h, c), each (1, B, He).

    Unpacked, the RNN also runs over the padding, so its final state is not the row's; packed (as OpenNMT packs)
    it stops at each row's length, and its outputs on padding are zeros."""
    if not packed:
        return rnn(inputs, _zero_state(rnn, inputs))[0], None
    sequence = nn.utils.rnn.pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    outputs, final = rnn(sequence)
    outputs = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True, total_length=inputs.shape[1])[0]
    return outputs, final if isinstance(final, tuple) else (final,)


# math.log(10000.0), as eole and OpenNMT-py compute their position encodings (this file imports only torch and
# transformers).
_LOG_10000 = 9.210340371976184


def encoder_output(last_hidden_state, hidden_states=None, final_state=None) -> BaseModelOutput:
    """The encoder's outputs, with each layer's final state where the decoder starts from it (`config.decoder_init`
    "encoder_final*"): `final_state` (L, B, K) or LSTM (L, B, 2K) [h; c], both directions joined in each of h and c,
    an item of the output beside transformers' own fields (so that generate() carries it with the encoder outputs)."""
    output = BaseModelOutput(last_hidden_state=last_hidden_state, hidden_states=hidden_states)
    if final_state is not None:
        output["final_state"] = final_state
    return output


def add_positions(embeds: torch.Tensor, first: int = 0) -> torch.Tensor:
    """`config.position_encoding` "sinusoidal": embeds (N, T, E) -> embeds * sqrt(E) + PE[first : first + T], where
    PE[p, 2i] = sin(p / 10000^(2i/E)) and PE[p, 2i+1] = cos(p / 10000^(2i/E)) (Vaswani et al. 2017, §3.5), computed
    as eole's and OpenNMT-py's PositionalEncoding computes it."""
    dim = embeds.shape[-1]
    positions = torch.arange(first, first + embeds.shape[1], device=embeds.device).float().unsqueeze(1)  # (T, 1)
    frequencies = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float, device=embeds.device) * -(_LOG_10000 / dim)
    )  # (E/2,)
    angles = positions * frequencies  # (T, E/2)
    table = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (T, E): sin and cos interleaved
    scale = torch.tensor(float(dim), dtype=torch.float64).sqrt().item()  # math.sqrt(dim): IEEE sqrt, exact
    return embeds * scale + table.to(embeds.dtype)


def reverse_within_length(sequences: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first `lengths[b]` positions of each row, leaving its padding where it is: (B, S, *) -> (B, S, *).

    Its own inverse. A right-padded row reversed this way still has its padding at the end.
    """
    positions = torch.arange(sequences.shape[1], device=sequences.device)  # (S,)
    lengths = lengths.to(sequences.device)[:, None]  # (B, 1)
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)  # (B, S)
    return sequences.gather(1, index.view(*index.shape, *[1] * (sequences.dim() - 2)).expand_as(sequences))


class RNNSeq2SeqEncoder(nn.Module):
    """Embeddings + stacked (bi)GRU (or LSTM); returns every top-layer state (B, S, K), zero on padding.

    Each direction is its own unidirectional RNN over the right-padded batch, the backward one over every row
    reversed within its length. A row's padding then only ever follows its tokens, so it cannot reach their
    states, and one dense RNN call per direction replaces a packed sequence, whose CPU backward pass costs
    O(S^2) memory traffic (it materialises a full-size gradient per time step).
    """

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__()
        vocab_size = config.vocab_size if config.source_vocab_size is None else config.source_vocab_size
        self.embed_tokens = nn.Embedding(vocab_size, config.embedding_dim, config.pad_token_id)
        self.dropout = nn.Dropout(config.dropout)

        # A layer above the first reads both directions of the layer below, or its own direction's (per_direction).
        self.stacks_per_direction = config.encoder_stacking == "per_direction" and config.bidirectional_encoder
        upper_input_size = config.encoder_hidden_size if self.stacks_per_direction else config.encoder_output_size

        def directional_layers():
            return nn.ModuleList(
                _rnn_class(config)(
                    config.embedding_dim if i == 0 else upper_input_size,
                    config.encoder_hidden_size,
                    batch_first=True,
                )
                for i in range(config.num_encoder_layers)
            )

        self.forward_layers = directional_layers()
        self.backward_layers = directional_layers() if config.bidirectional_encoder else None
        self.keeps_final_states = config.decoder_init.startswith("encoder_final")
        self.adds_positions = config.position_encoding == "sinusoidal"

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds to the encoder")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)  # (B, S, E)
        if self.adds_positions:
            inputs_embeds = add_positions(inputs_embeds)
        batch_size, source_length = inputs_embeds.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(batch_size, source_length, dtype=torch.long, device=inputs_embeds.device)
        _check_right_padded(attention_mask, "attention_mask")
        lengths = attention_mask.sum(-1).clamp(min=1)  # (B,)
        keep = (torch.arange(source_length, device=lengths.device) < lengths[:, None]).unsqueeze(-1)  # (B, S, 1)

        states = inputs_embeds
        all_states = (inputs_embeds,) if output_hidden_states else None
        final_states = []
        for i, forward_rnn in enumerate(self.forward_layers):
            inputs = backward_inputs = self.dropout(states)
            if self.stacks_per_direction and i > 0:
                inputs, backward_inputs = inputs.chunk(2, dim=-1)  # (B, S, He) each
            states, final = _run_rnn(forward_rnn, inputs, lengths, self.keeps_final_states)  # (B, S, He)
            if self.backward_layers is not None:
                reversed_inputs = reverse_within_length(backward_inputs, lengths)
                backward, backward_final = _run_rnn(self.backward_layers[i], reversed_inputs, lengths,
                                                    self.keeps_final_states)  # fmt: skip
                states = torch.cat([states, reverse_within_length(backward, lengths)], dim=-1)  # (B, S, K)
                if final is not None:
                    final = [torch.cat(pair, dim=-1) for pair in zip(final, backward_final)]  # h (and c): (1, B, K)
            if final is not None:
                final_states.append(torch.cat(final, dim=-1))  # (1, B, K|2K)
            states = states * keep
            if output_hidden_states:
                all_states += (states,)
        final_state = torch.cat(final_states) if final_states else None  # (L, B, K|2K)
        return encoder_output(states, all_states, final_state)


class ContextTerms:
    """What a decoder step takes from its context vector c_t, by the layer that reads it (rows N, steps T).

    The RNN cell that reads c_t is the first layer's ("bahdanau", and the fixed context of "none"), joined to its
    input, or the conditional GRU's second cell ("cgru"), as its input.
    cell_input: c_t itself (N, T, K) for that cell, or None where no cell reads c_t or it gets it as `cell_gates`;
    cell_gates: W_ic c_t (N, T, 3H|4H), c_t's share of that cell's input gates, ready mixed from premultiplied values
        (`PremultipliedContext`), or None;
    attentional: W_cc c_t (N, T, O), c_t's share of the attentional layer.
    """

    __slots__ = ("attentional", "cell_input", "cell_gates")

    def __init__(self, attentional, cell_input=None, cell_gates=None):
        self.attentional = attentional
        self.cell_input = cell_input
        self.cell_gates = cell_gates


def _rnn_step_from_gates(rnn: nn.Module, input_gates: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """One step of a one-layer nn.GRU (Cho et al. 2014, eqs. 5–8) or nn.LSTM whose input product W_i x + b_i comes
    ready: input_gates (N, 3H|4H), hidden (N, H) or LSTM [h; c] (N, 2H) -> new hidden, same shape. torch.nn's own
    gate order and equations, so the result is the one `rnn` computes from x."""
    if isinstance(rnn, nn.LSTM):
        h, c = hidden.chunk(2, dim=-1)
        i, f, g, o = (input_gates + nn.functional.linear(h, rnn.weight_hh_l0, rnn.bias_hh_l0)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], dim=-1)
    reset_in, update_in, new_in = input_gates.chunk(3, dim=-1)
    reset_h, update_h, new_h = _hidden_gates(rnn, hidden).chunk(3, dim=-1)
    update = torch.sigmoid(update_in + update_h)
    new = torch.tanh(new_in + torch.sigmoid(reset_in + reset_h) * new_h)
    return new + update * (hidden - new)  # (1 - z) n + z h


class PremultipliedContext:
    """Beam search and sampling decode each sentence in G rows. Instead of forming the context vector
    c_t = sum_s a_ts h_s (K wide) for every row and step and then multiplying it by each weight matrix W that reads
    it, every W is applied once per sentence to the encoder states (`values`: S rows instead of G rows a step), and
    a step mixes those: sum_s a_ts (W h_s) = W c_t. With one row a sentence (training, greedy search) forming c_t is
    as cheap and its backward pass is cheaper, so the decoder uses this only when a sentence has several rows.

    The readers of c_t are the attentional layer's context columns W_cc (E, K) and, where c_t enters the first RNN
    layer (Bahdanau), that layer's context columns W_ic (3H|4H, K); the first layer then takes W_ic c_t as part of
    its input gates (`first_layer_step`) instead of c_t as part of its input. A conditional GRU's second cell reads
    nothing but c_t: its input weights W_ic (3H, K) are all readers.
    """

    def __init__(self, decoder: "RNNSeq2SeqDecoder"):
        self.decoder = decoder

    def readers(self) -> dict[str, torch.Tensor]:
        """The weights that multiply c_t, by the `ContextTerms` field they produce."""
        decoder = self.decoder
        readers = {}
        if decoder.context_in_first_layer:
            start = decoder.embedding_dim  # the first layer reads [y_{t-1}; c_t; h~_{t-1}?]
            readers["cell_gates"] = decoder.layers[0].weight_ih_l0[:, start : start + decoder.context_size]
        elif decoder.conditional_cell is not None:
            readers["cell_gates"] = decoder.conditional_cell.weight_ih_l0
        readers["attentional"] = decoder.attentional_context_weight()
        return readers

    def project_values(self, encoder_states: torch.Tensor) -> torch.Tensor:
        """(B, S, K) -> (B, S, D), D = (3H|4H) + O with Bahdanau attention, else O; once per source sentence."""
        return nn.functional.linear(encoder_states, torch.cat(list(self.readers().values())))

    def read(self, weights: torch.Tensor, values: torch.Tensor) -> ContextTerms:
        """Attention weights (N, T, S) and the sentence's `values` -> the step's `ContextTerms`, c_t never formed."""
        readers = self.readers()
        terms = _mix(weights, values).split([reader.shape[0] for reader in readers.values()], dim=-1)
        return ContextTerms(**dict(zip(readers, terms)))

    def first_layer_step(self, inputs: torch.Tensor, context_gates: torch.Tensor, hidden: torch.Tensor):
        """The first RNN layer's step with W_i [y; c_t; h~] split as W_iy y + W_ic c_t + W_ih~ h~, where W_ic c_t comes
        ready mixed: inputs (N, E|E+O) = [y_{t-1}; h~_{t-1}?], context_gates (N, 3H|4H), hidden (N, H|2H) ->
        new hidden (N, H|2H)."""
        rnn, width, context_size = self.decoder.layers[0], self.decoder.embedding_dim, self.decoder.context_size
        weight = rnn.weight_ih_l0
        gates = torch.addmm(rnn.bias_ih_l0, inputs[:, :width], weight[:, :width].T) + context_gates
        if inputs.shape[1] > width:  # input feeding: h~_{t-1} is read by the columns after c_t's
            gates = gates.addmm_(inputs[:, width:], weight[:, width + context_size :].T)
        return _rnn_step_from_gates(rnn, gates, hidden)


class RNNSeq2SeqDecoder(nn.Module):
    """Stacked RNN (GRU or LSTM) decoder with a learned bridge from the encoder and one of the attention scorers.

    Per step t (Luong et al. 2015, eqs. 5–6; Bahdanau et al. 2015, eq. 4 for the order of attention and RNN step):
        bahdanau: c_t = attend(s_{t-1}); s_t = RNN([y_{t-1}; c_t; h~_{t-1}?], s_{t-1})
        luong_*:  s_t = RNN([y_{t-1}; h~_{t-1}?], s_{t-1}); c_t = attend(s_t)
        none:     c_t = c (the fixed context, Cho et al. 2014); s_t = RNN([y_{t-1}; c; h~_{t-1}?], s_{t-1})
        cgru:     s'_t = GRU_1([y_{t-1}; h~_{t-1}?], s_{t-1}); c_t = attend(s'_t); s_t = GRU_2(c_t, s'_t) in the first
                  layer (Sennrich et al. 2017, Nematus); layers above it: s^l_t = GRU(s^{l-1}_t, s^l_{t-1})
        h~_t = tanh(W_c [c_t; s_t] + b_c) = tanh(W_cc c_t + W_cs s_t + b_c)   (O wide; O = E lets the output layer
        share the embedding table), + W_cy y_{t-1} inside the tanh with `config.deep_output`
        (without the tanh where `config.attentional_activation` is "none"). s_0 comes from a bridge, or from the
        encoder's final states (`config.decoder_init`).
    `?` marks input feeding. Two paths compute this: `_forward_sequence` runs a whole teacher-forced sequence as one
    RNN call per layer where nothing but s_{t-1} feeds step t (no input feeding, no Bahdanau attention);
    `_forward_steps` runs one step at a time otherwise, and in generation. Beams and samples read the context through
    `PremultipliedContext`.
    """

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__()
        self._read_settings(config)
        # Modules in this order: it is the order their initial weights are drawn in (seeded runs reproduce).
        # The conditional GRU's second cell: input c_t, state s'_t from the first layer's cell.
        self.conditional_cell = None
        if config.decoder_type == "cgru":
            self.conditional_cell = _rnn_class(config)(config.encoder_output_size, config.hidden_size, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        # Target embeddings of their own where the source vocabulary is separate; else the encoder's table serves.
        self.embed_tokens = None
        if config.source_vocab_size is not None:
            self.embed_tokens = nn.Embedding(config.vocab_size, config.embedding_dim, config.pad_token_id)
        self._build_bridge(config)
        self.attentional_activation = nn.Tanh() if config.attentional_activation == "tanh" else nn.Identity()
        if config.attention_type in ("bahdanau", "luong_concat"):
            self.attention = AdditiveAttention(config)
        elif config.attention_type in ("luong_dot", "luong_general"):
            self.attention = MultiplicativeAttention(config)
        else:
            self.attention = None
        input_size = (
            config.embedding_dim
            + (config.encoder_output_size if self.context_in_first_layer else 0)
            + (config.attentional_size if config.input_feeding else 0)
        )
        self.layers = nn.ModuleList(
            _rnn_class(config)(input_size if i == 0 else config.hidden_size, config.hidden_size, batch_first=True)
            for i in range(config.num_decoder_layers)
        )
        self._build_attentional_layer(config)
        self.premultiplied = PremultipliedContext(self)

    def _read_settings(self, config: RNNSeq2SeqConfig) -> None:
        """The configuration values the forward passes read."""
        self.input_feeding = config.input_feeding
        self.num_layers = config.num_decoder_layers
        self.hidden_size = config.hidden_size
        self.embedding_dim = config.embedding_dim
        self.shared_bridge = config.shared_bridge
        self.context_size = config.encoder_output_size
        self.bidirectional_encoder = config.bidirectional_encoder
        # Where c_t comes from and who reads it: Bahdanau attends with s_{t-1} before the RNN step and feeds c_t to
        # the first layer; Luong attends with s_t after it; "none" feeds the fixed context to the first layer.
        conditional = config.decoder_type == "cgru"
        self.attends_before_step = config.attention_type == "bahdanau" and not conditional
        self.context_in_first_layer = config.attention_type in ("none", "bahdanau") and not conditional
        self.deep_output = config.deep_output
        self.state_size = config.hidden_size * (2 if config.rnn_type == "lstm" else 1)  # an LSTM carries [h; c]
        self.decoder_init = config.decoder_init
        self.adds_positions = config.position_encoding == "sinusoidal"
        self.zero_start_embedding = config.zero_start_embedding

    def _build_bridge(self, config: RNNSeq2SeqConfig) -> None:
        """The layers that make s_0 from the encoder (`config.decoder_init`); none where it is read as it is."""
        self.bridge = self.cell_bridge = None
        if self.decoder_init in ("bridge", "mean_bridge"):
            # s_0 = tanh(W_b [h_fwd_last; h_bwd_first]) (Bahdanau et al. 2015, A.2.2), or of the states' mean: a state
            # for every decoder layer (and an LSTM's h and c), or one state for all of them (`shared_bridge`).
            bridge_size = config.hidden_size if self.shared_bridge else config.num_decoder_layers * self.state_size
            # With layer normalisation, tanh(LN(W_b x)): the normalisation's bias is the bridge's.
            self.bridge = nn.Linear(config.encoder_output_size, bridge_size, bias=not config.layer_norm)
            if config.layer_norm:
                self.bridge_norm = nn.LayerNorm(bridge_size, eps=_LAYER_NORM_EPS)
        elif self.decoder_init == "encoder_final_relu":
            # OpenNMT's bridge reads each direction's final states of all layers: L * He wide (see _relu_bridge).
            width = config.num_encoder_layers * config.encoder_hidden_size
            self.bridge = nn.Linear(width, width)
            self.cell_bridge = nn.Linear(width, width) if config.rnn_type == "lstm" else None

    def _build_attentional_layer(self, config: RNNSeq2SeqConfig) -> None:
        """W_c, reading [c_t; s_t; y_{t-1}?], and with layer normalisation one gain for each input's product."""
        attentional_inputs = config.encoder_output_size + config.hidden_size
        attentional_inputs += config.embedding_dim if self.deep_output else 0
        self.attentional_layer = nn.Linear(attentional_inputs, config.attentional_size)
        self.attentional_norms = None
        if config.layer_norm:
            self.attentional_norms = nn.ModuleList(
                nn.LayerNorm(config.attentional_size, eps=_LAYER_NORM_EPS, bias=False)
                for _ in range(3 if self.deep_output else 2)
            )

    @property
    def runs_in_parallel(self) -> bool:
        """Whether a teacher-forced sequence can run as one RNN call (nothing but s_{t-1} feeds step t)."""
        return not self.attends_before_step and not self.input_feeding and self.conditional_cell is None

    def summary(self, encoder_states: torch.Tensor, encoder_mask: torch.Tensor) -> torch.Tensor:
        """The last encoder state of each direction (the fixed context of Cho et al. 2014): (B, S, K) -> (B, K)."""
        last = encoder_states[torch.arange(encoder_states.shape[0]), encoder_mask.sum(-1).clamp(min=1) - 1]
        if not self.bidirectional_encoder:
            return last
        half = encoder_states.shape[-1] // 2
        return torch.cat([last[:, :half], encoder_states[:, 0, half:]], dim=-1)

    def _relu_bridge(self, final_state: torch.Tensor) -> torch.Tensor:
        """OpenNMT-py's / eole's `bridge`: final_state (L, B, H|2H) -> (L, B, H|2H). For each of h and c, each
        sentence's final states are laid out as theirs, [layer 1 forward; layer 1 backward; layer 2 forward; ...]
        (L * D pieces of He = H / D), cut into D consecutive rows of L * He, and each row goes through the same
        ReLU(W x + b)."""
        layers, batch, _ = final_state.shape
        parts = final_state.split(self.hidden_size, dim=-1)  # h (and c): (L, B, H) each
        bridged = [
            torch.relu(bridge(part.transpose(0, 1).reshape(-1, bridge.in_features))).view(batch, layers, -1)
            for bridge, part in zip((self.bridge, self.cell_bridge), parts)
        ]  # (B, L, H) each
        return torch.cat(bridged, dim=-1).transpose(0, 1)

    def _start_hidden(self, encoder_states, encoder_mask, final_state) -> torch.Tensor:
        """s_0 of every layer for each sentence (`config.decoder_init`): (L, B, H|2H)."""
        if self.decoder_init in ("bridge", "mean_bridge"):
            if self.decoder_init == "bridge":
                summary = self.summary(encoder_states, encoder_mask)
            else:  # the mean over real positions; the encoder's states are zero on padding
                lengths = encoder_mask.sum(-1, keepdim=True).clamp(min=1).to(encoder_states.dtype)  # (B, 1)
                summary = encoder_states.sum(1) / lengths
            bridged = self.bridge(summary)
            hidden = torch.tanh(bridged if self.bridge.bias is not None else self.bridge_norm(bridged))  # (B, L*H|L*2H)
            if self.shared_bridge:
                hidden = hidden.repeat(1, self.num_layers * self.state_size // self.hidden_size)  # [s; s] an LSTM layer
            return hidden.view(hidden.shape[0], self.num_layers, -1).transpose(0, 1)
        if final_state is None:
            raise ValueError(
                f"this model's decoder starts from the encoder's final states (decoder_init={self.decoder_init!r}): "
                "pass encoder_outputs as the encoder returns them, with their final_state"
            )
        return final_state if self.decoder_init == "encoder_final" else self._relu_bridge(final_state)

    def initial_state(self, encoder_states, encoder_mask, rows, final_state=None) -> RNNDecoderState:
        """The state before the first target token for `rows` (N) decoder rows, G consecutive ones per sentence;
        `final_state`: the encoder's (`encoder_output`)."""
        hidden = self._start_hidden(encoder_states, encoder_mask, final_state)  # (L, B, H|2H)
        hidden = hidden.repeat_interleave(rows // encoder_states.shape[0], dim=1).contiguous()  # (L, N, H|2H)
        attentional = None
        if self.input_feeding:
            attentional = encoder_states.new_zeros(rows, 1, self.attentional_layer.out_features)
        keys = values = None
        if self.attention is not None:
            keys = self.attention.project_keys(encoder_states)
            if rows > encoder_states.shape[0]:  # several rows a sentence: see PremultipliedContext
                values = self.premultiplied.project_values(encoder_states)
        return RNNDecoderState(hidden, attentional, keys, values, seen_tokens=0)

    def attentional_context_weight(self) -> torch.Tensor:
        """W_cc, the attentional layer's columns that read c_t: (O, K)."""
        return self.attentional_layer.weight[:, : self.context_size]

    def context_terms(self, context: torch.Tensor) -> ContextTerms:
        """The terms of a formed context vector c_t (N, T, K)."""
        reads_context = self.context_in_first_layer or self.conditional_cell is not None
        return ContextTerms(
            attentional=nn.functional.linear(context, self.attentional_context_weight()),
            cell_input=context if reads_context else None,
        )

    def _attend(self, queries, encoder_states, encoder_mask, state: RNNDecoderState):
        """queries (N, T, H) -> attention weights (N, T, S) and the `ContextTerms` of c_t = sum_s a_ts h_s."""
        weights = self.attention(queries, state.keys, encoder_mask)
        if state.values is not None:
            return weights, self.premultiplied.read(weights, state.values)
        return weights, self.context_terms(_mix(weights, encoder_states))

    def _attentional(self, terms: ContextTerms, states: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
        """h~ = tanh(W_cc c + W_cs s + [W_cy y] + b_c) (Luong et al. 2015, eq. 5; the deep output) for states (N, T, H)
        and the embeddings of the previous words (N, T, E): (N, T, O)."""
        layer, start = self.attentional_layer, self.context_size
        end = start + self.hidden_size
        if self.attentional_norms is not None:  # each input's product normalised: W_cc c, W_cs s, W_cy y
            products = [terms.attentional, nn.functional.linear(states, layer.weight[:, start:end])]
            products += [nn.functional.linear(embedded, layer.weight[:, end:])] if self.deep_output else []
            attentional = sum(norm(product) for norm, product in zip(self.attentional_norms, products)) + layer.bias
            return self.attentional_activation(attentional)
        attentional = terms.attentional + nn.functional.linear(states, layer.weight[:, start:end], layer.bias)
        if self.deep_output:
            attentional = attentional + nn.functional.linear(embedded, layer.weight[:, end:])
        return self.attentional_activation(attentional)

    def _run_layers(self, inputs, hidden, context_gates=None, layers=None):
        """The layers whose indices `layers` (a range) holds, all by default: inputs (N, T, In), hidden (their L', N,
        H|2H), context_gates (N, 1, 3H|4H) (one step, c_t not in inputs) or None -> top states (N, T, H), new hidden
        (L', N, H|2H), per-layer states."""
        layer_states, last_hidden = [], []
        # A decoding step (one token, no gradient) computes each cell from its gate equations: the same result as
        # nn.GRU/nn.LSTM, as fast at one time step, and a graph of plain matrix products for the ONNX export.
        one_step = inputs.shape[1] == 1 and not torch.is_grad_enabled()
        layers = range(len(self.layers)) if layers is None else layers
        for i, layer in enumerate(layers):
            rnn = self.layers[layer]
            layer_input = self.dropout(inputs) if layer > 0 else inputs
            if layer == 0 and context_gates is not None:
                new = self.premultiplied.first_layer_step(layer_input[:, 0], context_gates[:, 0], hidden[0])[None]
            elif one_step:
                gates = _input_gates(rnn, layer_input[:, 0])
                new = _rnn_step_from_gates(rnn, gates, hidden[i])[None]  # (1, N, H|2H)
            else:
                h = hidden[i : i + 1]
                if isinstance(rnn, nn.LSTM):
                    h = tuple(part.contiguous() for part in h.chunk(2, dim=-1))  # (h, c)
                inputs, h = rnn(layer_input, h)
                layer_states.append(inputs)
                last_hidden.append(torch.cat(h, dim=-1) if isinstance(rnn, nn.LSTM) else h)
                continue
            inputs = new[0, :, None, : self.hidden_size]  # (N, 1, H): the h of an LSTM's [h; c]
            layer_states.append(inputs)
            last_hidden.append(new)
        return inputs, torch.cat(last_hidden, dim=0) if last_hidden else hidden, layer_states

    def _conditional_step(self, inputs, hidden, encoder_states, encoder_mask, state):
        """One cGRU step: inputs (N, 1, E|E+O) = [y_{t-1}; h~_{t-1}?], hidden (L, N, H) -> top states (N, 1, H), new
        hidden (L, N, H), per-layer states, attention weights (N, 1, S), the `ContextTerms` of c_t.
        s'_t = GRU_1(inputs, s_{t-1}); c_t = attend(s'_t); s_t = GRU_2(c_t, s'_t); then the layers above."""
        intermediate, first_hidden, _ = self._run_layers(inputs, hidden[:1], layers=range(1))  # s'_t: (N, 1, H)
        weights, terms = self._attend(intermediate, encoder_states, encoder_mask, state)
        cell = self.conditional_cell
        gates = terms.cell_gates  # W_ic c_t premultiplied, or formed from c_t here
        gates = nn.functional.linear(terms.cell_input, cell.weight_ih_l0) if gates is None else gates
        state_t = _rnn_step_from_gates(cell, _input_gates(cell, product=gates[:, 0]), first_hidden[0])[:, None]  # s_t
        top, upper_hidden, upper_states = self._run_layers(state_t, hidden[1:], layers=range(1, len(self.layers)))
        new_hidden = torch.cat([state_t.transpose(0, 1), upper_hidden], dim=0)
        return top, new_hidden, [state_t, *upper_states], weights, terms

    def _forward_sequence(self, embedded, encoder_states, encoder_mask, state, fixed_terms):
        """All T steps at once: one RNN call per layer, then attention for every step (Luong) or the fixed context."""
        inputs = embedded  # (N, T, E)
        if fixed_terms is not None:
            fixed = fixed_terms.cell_input.expand(-1, embedded.shape[1], -1)  # (N, T, K)
            inputs = torch.cat([embedded, fixed], dim=-1)
        states, hidden, layer_states = self._run_layers(inputs, state.hidden)  # (N, T, H)
        weights, terms = None, fixed_terms
        if self.attention is not None:
            weights, terms = self._attend(states, encoder_states, encoder_mask, state)
        attentional = self._attentional(terms, states, embedded)  # (N, T, O)
        new_state = RNNDecoderState(hidden, None, state.keys, state.values, state.seen_tokens + embedded.shape[1])
        return attentional, new_state, layer_states, weights

    def _forward_steps(self, embedded, encoder_states, encoder_mask, state, fixed_terms):
        """One step at a time: s_t depends on c_t (Bahdanau) or on h~_{t-1} (input feeding)."""
        hidden, previous = state.hidden, state.attentional
        outputs, step_weights, step_layer_states = [], [], []
        for t in range(embedded.shape[1]):
            weights, terms = None, fixed_terms
            if self.attends_before_step:
                query = hidden[-1, :, None, : self.hidden_size]  # s_{t-1}, top layer (h of an LSTM): (N, 1, H)
                weights, terms = self._attend(query, encoder_states, encoder_mask, state)
            inputs = [embedded[:, t : t + 1]]  # (N, 1, E)
            if terms is not None and terms.cell_input is not None:
                inputs.append(terms.cell_input)  # (N, 1, K)
            if previous is not None:
                inputs.append(previous)  # (N, 1, O)
            inputs = torch.cat(inputs, dim=-1)
            if self.conditional_cell is not None:
                states, hidden, layer_states, weights, terms = self._conditional_step(
                    inputs, hidden, encoder_states, encoder_mask, state
                )
            else:
                context_gates = None if terms is None else terms.cell_gates
                states, hidden, layer_states = self._run_layers(inputs, hidden, context_gates)
                if self.attention is not None and not self.attends_before_step:
                    weights, terms = self._attend(states, encoder_states, encoder_mask, state)  # Luong: with s_t
            output = self._attentional(terms, states, embedded[:, t : t + 1])  # (N, 1, O)
            previous = output if self.input_feeding else None
            outputs.append(output)
            step_weights.append(weights)
            step_layer_states.append(layer_states)
        weights = None if self.attention is None else torch.cat(step_weights, dim=1)
        layer_states = [torch.cat(per_step, dim=1) for per_step in zip(*step_layer_states)]
        new_state = RNNDecoderState(hidden, previous, state.keys, state.values, state.seen_tokens + embedded.shape[1])
        return torch.cat(outputs, dim=1), new_state, layer_states, weights

    def forward(
        self, inputs_embeds, encoder_states, encoder_mask, state=None, output_hidden_states=False, final_state=None
    ):
        """inputs_embeds (N, T, E), encoder_states (B, S, K), encoder_mask (B, S), final_state (L, B, H|2H) or None ->
        attentional vectors (N, T, O), new state, per-layer states (tuple or None), attention weights (N, T, S) or None.
        """
        rows, sentences = inputs_embeds.shape[0], encoder_states.shape[0]
        if rows % sentences:
            raise ValueError(
                f"{rows} decoder rows for {sentences} source sentences: each sentence needs the same number of "
                "consecutive decoder rows"
            )
        if state is None:
            state = self.initial_state(encoder_states, encoder_mask, rows, final_state)
        if self.adds_positions:  # target positions go on from the tokens the state has seen
            inputs_embeds = add_positions(inputs_embeds, first=state.seen_tokens)
        if self.zero_start_embedding and state.seen_tokens == 0:  # a zero vector in place of the start token's
            inputs_embeds = torch.cat([torch.zeros_like(inputs_embeds[:, :1]), inputs_embeds[:, 1:]], dim=1)
        fixed_terms = None
        if self.attention is None:
            fixed_context = self.summary(encoder_states, encoder_mask).repeat_interleave(rows // sentences, dim=0)
            fixed_terms = self.context_terms(fixed_context.unsqueeze(1))  # (N, 1, *)
        path = self._forward_sequence if self.runs_in_parallel else self._forward_steps
        attentional, new_state, layer_states, weights = path(
            self.dropout(inputs_embeds), encoder_states, encoder_mask, state, fixed_terms
        )
        all_states = (inputs_embeds, *layer_states) if output_hidden_states else None
        return attentional, new_state, all_states, weights


class RNNSeq2SeqPreTrainedModel(PreTrainedModel):
    config_class = RNNSeq2SeqConfig
    config: RNNSeq2SeqConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False

    def _init_weights(self, module):
        # transformers.initialization helpers skip tensors that were loaded from a checkpoint.
        if isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif module is self.get_output_embeddings():
            # An untied output layer starts like the table it would otherwise share. At Xavier's scale (std 0.016
            # for 8,000 words) the decoder's gradient W_out^T (p - y) is so small that training stalls near the
            # unigram loss for hundreds of steps (measured on real data: 6.0 against 4.2 tied after 400 steps).
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.GRU, nn.LSTM, LayerNormGRU)):
            for name, param in module.named_parameters(recurse=False):  # a LayerNormGRU's norms are their own
                if name.startswith("weight_hh"):
                    init.orthogonal_(param)  # keeps the recurrence well conditioned over long sentences
                elif name.startswith("weight_ih"):
                    init.xavier_uniform_(param)
                else:
                    init.zeros_(param)

    def save_pretrained(self, save_directory, *args, **kwargs):
        # Both Auto classes point at this file, so a saved folder loads as remote code with AutoModel too.
        module = __name__.rsplit(".", 1)[-1]
        self.config.auto_map = {
            **(getattr(self.config, "auto_map", None) or {}),
            "AutoModel": f"{module}.RNNSeq2SeqModel",
            "AutoModelForSeq2SeqLM": f"{module}.RNNSeq2SeqForConditionalGeneration",
        }
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path, *args, output_loading_info=False, ignore_mismatched_sizes=False, **kwargs
    ):
        """As in transformers, but weights are read from safetensors only (a pickle is never unpickled), and a
        checkpoint saved from this very class that lacks tensors, or any tensor of the wrong shape, is refused with
        the tensors named: the library would initialise them randomly (with a warning) or raise without naming them."""
        if kwargs.pop("use_safetensors", True) is not True:
            raise ValueError("RNNSeq2Seq weights are read from safetensors only; pickle checkpoints are not loaded")
        model, loading_info = super().from_pretrained(
            pretrained_model_name_or_path,
            *args,
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # collected here, refused below unless the caller asked to ignore them
            use_safetensors=True,
            **kwargs,
        )
        problems = []
        if cls.__name__ in (model.config.architectures or []):
            problems += [f"missing: {key}" for key in sorted(loading_info["missing_keys"])]
        if not ignore_mismatched_sizes:
            problems += [f"wrong shape: {key} {tuple(saved)} != {tuple(expected)}" for key, saved, expected in
                         sorted(loading_info["mismatched_keys"])]
        if problems:
            raise ValueError(
                f"checkpoint {pretrained_model_name_or_path} does not fit {cls.__name__}; refusing to initialise "
                "these tensors randomly: " + "; ".join(problems)
            )
        with torch.no_grad():
            # safetensors may leave tensors at addresses that are not 64-byte aligned, and CPU kernels then round
            # differently; fresh copies make every load compute exactly like the model that was saved.
            for tensor in [*model.parameters(), *model.buffers()]:
                tensor.data = tensor.data.clone()
        return (model, loading_info) if output_loading_info else model


def _as_encoder_output(encoder_outputs) -> BaseModelOutput:
    if isinstance(encoder_outputs, BaseModelOutput):
        return encoder_outputs
    # A tuple (return_dict=False): last_hidden_state, then those of hidden_states (a tuple) and final_state (a tensor)
    # that were set.
    last_hidden_state, *rest = encoder_outputs
    return encoder_output(
        last_hidden_state,
        hidden_states=next((item for item in rest if isinstance(item, (tuple, list))), None),
        final_state=next((item for item in rest if isinstance(item, torch.Tensor)), None),
    )


class RNNSeq2SeqModel(RNNSeq2SeqPreTrainedModel):
    """The encoder–decoder without the output layer; `last_hidden_state` holds the attentional vectors (B, T, O)."""

    # save_pretrained copies this file beside the weights even where it was itself loaded as remote code (4.x does
    # not mark remote classes for it).
    _auto_class = "AutoModel"

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__(config)
        # One vocabulary, one embedding table: the encoder owns it and the decoder reads target embeddings from it
        # (unless the source vocabulary is separate: `config.source_vocab_size`).
        self.encoder = RNNSeq2SeqEncoder(config)
        self.decoder = RNNSeq2SeqDecoder(config)
        self.post_init()

    def get_input_embeddings(self):
        return self.encoder.embed_tokens

    def set_input_embeddings(self, value):
        self.encoder.embed_tokens = value

    def get_encoder(self, modality=None):
        return self.encoder

    def target_embeddings(self, decoder_input_ids: torch.Tensor, check_ids: bool = True) -> torch.Tensor:
        """(B, T) -> (B, T, E), from the decoder's own table where the source vocabulary is separate. `check_ids=False`
        skips the range check (a device synchronisation) for tokens the model generated itself."""
        if self.decoder.embed_tokens is None:
            return self.encoder.embed_tokens(decoder_input_ids)
        if check_ids and decoder_input_ids.numel() and decoder_input_ids.max() >= self.config.vocab_size:
            raise ValueError(
                f"decoder_input_ids (or labels) hold ids of {self.config.vocab_size} or more: tokens of the source "
                f"vocabulary only, which the decoder does not have (its vocab_size is {self.config.vocab_size})"
            )
        return self.decoder.embed_tokens(decoder_input_ids)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        past_key_values=None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        cache=None,
        **kwargs,
    ):
        _refuse_unknown_arguments(kwargs)
        state = _decoder_state(past_key_values, cache)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict

        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                output_hidden_states=output_hidden_states,
            )
        else:
            encoder_outputs = _as_encoder_output(encoder_outputs)
        encoder_states = encoder_outputs.last_hidden_state  # (B, S, K)
        if attention_mask is None:
            attention_mask = torch.ones(encoder_states.shape[:2], dtype=torch.long, device=encoder_states.device)

        if decoder_inputs_embeds is None:
            if decoder_input_ids is None:
                raise ValueError("pass decoder_input_ids, decoder_inputs_embeds or labels to the decoder")
            if state is not None and decoder_input_ids.shape[1] > state.seen_tokens:
                decoder_input_ids = decoder_input_ids[:, state.seen_tokens :]  # a full prefix: feed only new tokens
            # With a state, these are tokens generate() chose from the model's own vocab_size logits.
            decoder_inputs_embeds = self.target_embeddings(decoder_input_ids, check_ids=state is None)  # (B, T, E)
        if decoder_attention_mask is not None:
            _check_right_padded(decoder_attention_mask, "decoder_attention_mask")

        attentional, new_state, decoder_states, weights = self.decoder(
            decoder_inputs_embeds, encoder_states, attention_mask, state, output_hidden_states,
            getattr(encoder_outputs, "final_state", None),
        )
        cross_attentions = None
        if output_attentions and weights is not None:
            cross_attentions = (weights.unsqueeze(1),)  # one layer, one head: (B, 1, T, S)
        output = Seq2SeqModelOutput(
            last_hidden_state=attentional,
            **{_STATE_OUTPUT: new_state if use_cache else None},
            decoder_hidden_states=decoder_states,
            cross_attentions=cross_attentions,
            encoder_last_hidden_state=encoder_states,
            encoder_hidden_states=encoder_outputs.hidden_states,
        )
        return output if return_dict else output.to_tuple()


# Rows of logits a block of the low-precision loss works on: 64 x 8,000 float32 values (2 MB) stay in a core's cache
# between the block's passes (1,152 x 8,000 bf16 logits, loss and gradient: 20-30 ms in blocks of 64 rows against
# 48-89 ms for torch's cross_entropy on their float32 copy; blocks of 32 or 256 rows slower than 64).
_LOSS_BLOCK_ROWS = 64


def _row_blocks(logits: torch.Tensor) -> list[slice]:
    return [slice(start, start + _LOSS_BLOCK_ROWS) for start in range(0, logits.shape[0], _LOSS_BLOCK_ROWS)]


class _LowPrecisionCrossEntropy(torch.autograd.Function):
    """Label-smoothed cross-entropy summed over the rows whose label is not -100, from bfloat16 (or float16) logits
    z (N, V), computed in float32 a block of rows at a time; the same value and gradient as
        nn.functional.cross_entropy(z.float(), y, ignore_index=-100, label_smoothing=eps, reduction="sum")
    without its float32 copy of all the logits, their float32 log-softmax and gradient, and the casts between them
    (in bf16 training those passes over N x V values cost as much as the output layer's products):
        loss_i = lse(z_i) - (1 - eps) z_{i,y_i} - eps/V sum_v z_{i,v}
        d loss_i / d z_{i,v} = softmax(z_i)_v - eps/V - (1 - eps) [v = y_i]"""

    @staticmethod
    def forward(ctx, logits, labels, smoothing):
        kept = labels != -100
        safe_labels = labels.clamp(min=0)[:, None]  # (N, 1); an ignored row's label is never used
        total, log_normalisers = logits.new_zeros((), dtype=torch.float32), []
        for block in _row_blocks(logits):
            z = logits[block].float()  # (R, V)
            lse = torch.logsumexp(z, dim=-1)
            row_loss = lse - (1 - smoothing) * z.gather(1, safe_labels[block])[:, 0] - smoothing * z.mean(-1)
            total = total + (row_loss * kept[block]).sum()
            log_normalisers.append(lse)
        ctx.save_for_backward(logits, safe_labels, kept, torch.cat(log_normalisers))
        ctx.smoothing = smoothing
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_total):
        logits, safe_labels, kept, lse = ctx.saved_tensors
        smoothing, vocab_size = ctx.smoothing, logits.shape[-1]
        grad = torch.empty_like(logits)
        for block in _row_blocks(logits):
            block_grad = torch.exp(logits[block].float() - lse[block, None]) - smoothing / vocab_size
            block_grad.scatter_add_(1, safe_labels[block], block_grad.new_full((len(block_grad), 1), smoothing - 1))
            grad[block] = block_grad * (grad_total * kept[block])[:, None]
        return grad, None, None


class RNNSeq2SeqForConditionalGeneration(RNNSeq2SeqPreTrainedModel, GenerationMixin):
    """The encoder–decoder with its output layer: logits = W_out dropout(h~_t) (Luong et al. 2015, eq. 6)."""

    _auto_class = "AutoModelForSeq2SeqLM"  # see RNNSeq2SeqModel
    # A dict in 5.x; 4.x iterates it as the list of tied keys.
    _tied_weights_keys = {"lm_head.weight": "model.encoder.embed_tokens.weight"}
    # A recurrent state cannot be rewound to a prefix: generate() refuses assisted decoding with a clear error (up to
    # transformers 5.24 on this flag; from 5.25, which dropped it, in `_validate_generation_mode` below).
    _is_stateful = True

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__(config)
        self.model = RNNSeq2SeqModel(config)
        self.dropout = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.attentional_size, config.vocab_size, bias=config.output_bias)
        self.post_init()

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the state is an RNNDecoderState, not a key/value cache

    def _validate_generation_mode(self, generation_mode, *args, **kwargs):
        if generation_mode == "assisted_generation":
            raise ValueError(
                f"assisted generation is not supported with stateful models, such as {type(self).__name__}: its "
                "recurrent state cannot be rewound to a prefix when draft tokens are rejected"
            )
        return super()._validate_generation_mode(generation_mode, *args, **kwargs)

    def get_encoder(self, modality=None):
        return self.model.encoder

    def _expand_inputs_for_generation(self, expand_size=1, is_encoder_decoder=False, input_ids=None, **model_kwargs):
        """Beam search and `num_return_sequences` decode each sentence `expand_size` times as consecutive rows. The
        library copies every input that many times; the encoder states and their mask are only read, per sentence,
        so they stay one copy (the decoder shares them among a sentence's rows) and each step reads G times less."""
        shared = {key: model_kwargs.pop(key) for key in ("encoder_outputs", "attention_mask") if key in model_kwargs}
        input_ids, model_kwargs = super()._expand_inputs_for_generation(expand_size, False, input_ids, **model_kwargs)
        return input_ids, {**model_kwargs, **shared}

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def _loss(self, logits, labels, num_items_in_batch=None) -> torch.Tensor:
        """Label-smoothed cross-entropy of logits (B, T, V) against labels (B, T) (-100: no target): the mean over the
        targets, or the sum divided by `num_items_in_batch`. Computed in float32; from bfloat16 logits (bf16 training,
        a bf16 model) without a float32 copy of them all (`_LowPrecisionCrossEntropy`)."""
        logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).to(logits.device)
        smoothing = self.config.label_smoothing
        if logits.dtype == torch.float32:
            reduction = "mean" if num_items_in_batch is None else "sum"
            loss = nn.functional.cross_entropy(
                logits, labels, ignore_index=-100, reduction=reduction, label_smoothing=smoothing
            )
            return loss if num_items_in_batch is None else loss / num_items_in_batch
        total = _LowPrecisionCrossEntropy.apply(logits, labels, smoothing)
        return total / ((labels != -100).sum() if num_items_in_batch is None else num_items_in_batch)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        encoder_outputs=None,
        past_key_values=None,
        inputs_embeds=None,
        decoder_inputs_embeds=None,
        labels=None,
        use_cache=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        cache=None,
        num_items_in_batch=None,
        **kwargs,
    ):
        """As transformers' seq2seq models. The decoder state comes back as `past_key_values` (transformers < 5.24) or
        `cache` (5.24 on). `num_items_in_batch`, passed by transformers' training loop, is the number of target tokens
        in the whole optimizer step (all accumulated batches, all processes): the loss is then this batch's share of
        their mean, as that loop expects, instead of this batch's mean."""
        _refuse_unknown_arguments(kwargs)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            cache=cache,
        )
        logits = self.lm_head(self.dropout(outputs.last_hidden_state))  # (B, T, V)
        loss = None
        if labels is not None:
            loss = self._loss(logits, labels, num_items_in_batch)
        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            **{_STATE_OUTPUT: getattr(outputs, _STATE_OUTPUT)},
            decoder_hidden_states=outputs.decoder_hidden_states,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
        )
        return output if return_dict else output.to_tuple()


__all__ = [
    "RNNDecoderState",
    "RNNSeq2SeqForConditionalGeneration",
    "RNNSeq2SeqModel",
    "RNNSeq2SeqPreTrainedModel",
]
