"""The model's contract: generation equals reference computations, caching and batching change nothing."""

import gzip
import math
import re

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import AutoModel, AutoModelForSeq2SeqLM

from hf_rnn_seq2seq import RNNDecoderState, RNNSeq2SeqForConditionalGeneration
from hf_rnn_seq2seq.modeling_rnn_seq2seq import TESTED_TRANSFORMERS, RNNSeq2SeqDecoder
from hf_rnn_seq2seq.translation import cut_at_eos
from helpers import BOS, EOS, PAD, VARIANTS, VOCAB, as_lists, padded_batch, tiny_config, tiny_model


@pytest.mark.parametrize("attention_type,input_feeding,rnn_type", VARIANTS)
def test_greedy_generate_equals_hand_written_argmax_loop(attention_type, input_feeding, rnn_type):
    model = tiny_model(attention_type, input_feeding, rnn_type=rnn_type)
    ids, mask = padded_batch()
    generated = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, num_beams=1)
    for row in range(ids.shape[0]):
        source = ids[row : row + 1, : int(mask[row].sum())]
        prefix = torch.tensor([[BOS]])
        with torch.no_grad():
            for _ in range(8):  # the whole prefix each step, without any state: an independent reference
                logits = model(input_ids=source, decoder_input_ids=prefix, use_cache=False).logits
                prefix = torch.cat([prefix, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
                if prefix[0, -1] == EOS:
                    break
        assert cut_at_eos(generated[row].tolist(), EOS) == prefix[0].tolist()


@pytest.mark.parametrize("attention_type,input_feeding,rnn_type", VARIANTS)
@pytest.mark.parametrize("num_beams", [1, 3])
def test_cache_does_not_change_generation(attention_type, input_feeding, rnn_type, num_beams):
    model = tiny_model(attention_type, input_feeding, rnn_type=rnn_type)
    ids, mask = padded_batch(seed=1)
    kwargs = dict(attention_mask=mask, max_new_tokens=8, num_beams=num_beams, do_sample=False)
    with_cache = model.generate(ids, use_cache=True, **kwargs)
    without_cache = model.generate(ids, use_cache=False, **kwargs)
    assert as_lists(with_cache) == as_lists(without_cache)


@pytest.mark.parametrize("attention_type,input_feeding,rnn_type", VARIANTS)
@pytest.mark.parametrize("num_beams", [1, 3])
def test_padded_batch_translates_like_each_sentence_alone(attention_type, input_feeding, rnn_type, num_beams):
    model = tiny_model(attention_type, input_feeding, rnn_type=rnn_type)
    ids, mask = padded_batch(seed=2)
    kwargs = dict(max_new_tokens=8, num_beams=num_beams, do_sample=False)
    batched = as_lists(model.generate(ids, attention_mask=mask, **kwargs))
    alone = [as_lists(model.generate(ids[r : r + 1, : int(mask[r].sum())], **kwargs))[0] for r in range(len(ids))]
    assert batched == alone


@pytest.mark.parametrize("attention_type,input_feeding,rnn_type", VARIANTS)
def test_a_beam_as_wide_as_the_vocabulary_finds_the_most_probable_two_tokens(attention_type, input_feeding, rnn_type):
    """Exhaustive search as the reference: with as many beams as tokens, two steps of beam search keep every first
    token, so they must return the most probable of all V^2 two-token outputs, scored by teacher forcing. (Greedy
    search differs from it for some sentence here, so the check has teeth.)"""
    model = tiny_model(attention_type, input_feeding, rnn_type=rnn_type)
    ids, mask = padded_batch(seed=4, lengths=(7, 4, 1, 6, 3, 5, 2, 8))
    two_tokens = dict(attention_mask=mask, max_new_tokens=2, min_new_tokens=2, do_sample=False)
    beam = model.generate(ids, num_beams=VOCAB, **two_tokens)
    greedy = model.generate(ids, **two_tokens)
    first, second = torch.cartesian_prod(torch.arange(VOCAB), torch.arange(VOCAB)).T
    allowed = (first != EOS) & (second != EOS)  # min_new_tokens bars EOS from both steps
    candidates = torch.stack([torch.full_like(first, BOS), first, second], dim=1)[allowed]  # (V'^2, 3)
    best = []
    with torch.no_grad():
        for row in range(ids.shape[0]):
            source = ids[row : row + 1, : int(mask[row].sum())].expand(len(candidates), -1)
            log_probs = model(input_ids=source, decoder_input_ids=candidates[:, :2]).logits.log_softmax(-1)
            scores = log_probs.gather(-1, candidates[:, 1:, None]).sum((1, 2))
            best.append(candidates[scores.argmax()].tolist())
    assert beam.tolist() == best
    assert greedy.tolist() != best


def sequence_log_prob(model, source_ids, source_mask, sequence: list[int]) -> float:
    """Teacher-forced log-probability of the generated tokens after the start token."""
    sequence = torch.tensor([sequence])
    with torch.no_grad():
        logits = model(input_ids=source_ids, attention_mask=source_mask, decoder_input_ids=sequence[:, :-1]).logits
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return log_probs[0].gather(-1, sequence[0, 1:, None]).sum().item()


@pytest.mark.parametrize("attention_type,input_feeding,rnn_type", VARIANTS)
@pytest.mark.parametrize("length_penalty", [0.5, 1.0, 2.0])
def test_beam_scores_equal_teacher_forced_log_probs(attention_type, input_feeding, rnn_type, length_penalty):
    model = tiny_model(attention_type, input_feeding, rnn_type=rnn_type)
    ids, mask = padded_batch(seed=4, lengths=(6, 3))
    out = model.generate(
        ids,
        attention_mask=mask,
        max_new_tokens=7,
        num_beams=4,
        num_return_sequences=2,
        length_penalty=length_penalty,
        return_dict_in_generate=True,
        output_scores=True,
    )
    for index, sequence in enumerate(out.sequences.tolist()):
        row = index // 2
        sequence = cut_at_eos(sequence, EOS)
        log_prob = sequence_log_prob(model, ids[row : row + 1], mask[row : row + 1], sequence)
        expected = log_prob / (len(sequence) - 1) ** length_penalty
        assert out.sequences_scores[index].item() == pytest.approx(expected, abs=1e-5)


def reference_cgru_decoder(decoder, embeds, encoder_states, mask):
    """The conditional GRU's equations (Sennrich et al. 2017), one sentence at a time over its real source positions
    only, each cell a call of its nn.GRU module: s_0 = tanh(W_b mean_s h_s + b_b) for every layer;
    s'_t = GRU_1(y_{t-1}, s_{t-1}); a_t = softmax_s(v^T tanh(W_q s'_t + W_k h_s)); c_t = sum_s a_ts h_s;
    s_t = GRU_2(c_t, s'_t); upper layers s^l_t = GRU_l(s^{l-1}_t, s^l_{t-1}); h~_t = tanh(W [c_t; s_t; y_{t-1}] + b).
    """
    if decoder.attentional_norms is not None:
        return reference_layer_norm_cgru_decoder(decoder, embeds, encoder_states, mask)
    attention, outputs = decoder.attention, []
    for row, length in enumerate(mask.sum(-1).tolist()):
        states = encoder_states[row : row + 1, :length]  # (1, S, K)
        start = torch.tanh(decoder.bridge(states.mean(1)))[None]  # (1, 1, H)
        hidden = [start] * len(decoder.layers)
        row_outputs = []
        for t in range(embeds.shape[1]):
            y = embeds[row : row + 1, t : t + 1]  # (1, 1, E)
            intermediate, _ = decoder.layers[0](y, hidden[0])
            scorer_hidden = attention.query_projection(intermediate) + attention.key_projection(states)  # (1, S, A)
            energy = attention.energy(torch.tanh(scorer_hidden))
            context = torch.softmax(energy.squeeze(-1), dim=-1) @ states  # (1, 1, K)
            layer_output, hidden[0] = decoder.conditional_cell(context, intermediate.transpose(0, 1))
            for i in range(1, len(decoder.layers)):
                layer_output, hidden[i] = decoder.layers[i](layer_output, hidden[i])
            row_outputs.append(torch.tanh(decoder.attentional_layer(torch.cat([context, layer_output, y], dim=-1))))
        outputs.append(torch.cat(row_outputs, dim=1))
    return torch.cat(outputs)


def layer_norm(x, gain, bias=None):
    """Marian's layer normalisation, written out: gain * (x - mean) / sqrt(variance + 1e-9) (+ bias)."""
    mean = x.mean(-1, keepdim=True)
    normalised = gain * (x - mean) / torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + 1e-9)
    return normalised if bias is None else normalised + bias


def layer_norm_gru_step(cell, x, h, bias_in_reset):
    """Marian's GRU cell with layer normalisation (src/rnn/cells.h), from `cell`'s tensors: r, z = sigmoid(LN(x W) +
    LN(h U) + b); h~ = tanh(LN(x W)_n + r * LN(h U)_n + b_n), or r * (LN(h U)_n + b_n); h' = (1 - z) h~ + z h."""
    x_gates = layer_norm(x @ cell.weight_ih_l0.T, cell.norm_ih.weight)
    h_gates = layer_norm(h @ cell.weight_hh_l0.T, cell.norm_hh.weight)
    bias = cell.bias_ih_l0 + cell.bias_hh_l0
    size = h.shape[-1]
    reset, update = torch.sigmoid(x_gates[..., : 2 * size] + h_gates[..., : 2 * size] + bias[: 2 * size]).chunk(2, -1)
    candidate_bias = bias[2 * size :]
    if bias_in_reset:
        candidate = torch.tanh(x_gates[..., 2 * size :] + reset * (h_gates[..., 2 * size :] + candidate_bias))
    else:
        candidate = torch.tanh(x_gates[..., 2 * size :] + reset * h_gates[..., 2 * size :] + candidate_bias)
    return (1 - update) * candidate + update * h


def reference_layer_norm_cgru_decoder(decoder, embeds, encoder_states, mask):
    """The conditional GRU with Marian's layer normalisation, one sentence at a time, equations written out: cells as
    `layer_norm_gru_step`; start tanh(LN(W mean_s h_s; g, b)); scores v^T tanh(LN(W_k h_s; g_k, b_k) +
    LN(W_q s'_t; g_q)); h~_t = tanh(LN(W_c c_t) + LN(W_s s_t) + LN(W_y y_{t-1}) + b)."""
    attention, outputs = decoder.attention, []
    weight, width = decoder.attentional_layer.weight, encoder_states.shape[-1]
    end = width + decoder.hidden_size
    columns = [weight[:, :width], weight[:, width:end], weight[:, end:]]  # read c_t, s_t, y_{t-1}
    for row, length in enumerate(mask.sum(-1).tolist()):
        states = encoder_states[row, :length]  # (S, K)
        norm = decoder.bridge_norm
        hidden = [torch.tanh(layer_norm(states.mean(0) @ decoder.bridge.weight.T, norm.weight, norm.bias))] * len(
            decoder.layers)  # fmt: skip
        key_norm = attention.key_norm
        keys = layer_norm(states @ attention.key_projection.weight.T, key_norm.weight, key_norm.bias)
        row_outputs = []
        for t in range(embeds.shape[1]):
            y = embeds[row, t]  # (E,)
            intermediate = layer_norm_gru_step(decoder.layers[0], y, hidden[0], bias_in_reset=False)
            query = layer_norm(intermediate @ attention.query_projection.weight.T, attention.query_norm.weight)
            energy = torch.tanh(keys + query) @ attention.energy.weight[0]  # (S,)
            context = torch.softmax(energy, dim=-1) @ states  # (K,)
            hidden[0] = layer_output = layer_norm_gru_step(decoder.conditional_cell, context, intermediate, True)
            for i in range(1, len(decoder.layers)):
                hidden[i] = layer_output = layer_norm_gru_step(decoder.layers[i], layer_output, hidden[i], False)
            terms = [layer_norm(x @ w.T, n.weight) for x, w, n in zip((context, layer_output, y), columns,
                                                                       decoder.attentional_norms)]  # fmt: skip
            row_outputs.append(torch.tanh(sum(terms) + decoder.attentional_layer.bias))
        outputs.append(torch.stack(row_outputs))
    return torch.stack(outputs)


def reference_decoder(decoder, config, embeds, encoder_states, mask):
    """The decoder's equations written out with the context vector c_t = sum_s a_ts h_s formed explicitly and each
    layer a call of its torch.nn.GRU / nn.LSTM module on the concatenated input (the decoder itself never forms c_t).
    """
    if config.decoder_type == "cgru":
        return reference_cgru_decoder(decoder, embeds, encoder_states, mask)
    config_type, attention, is_lstm = config.attention_type, decoder.attention, config.rnn_type == "lstm"
    steps = embeds.shape[1]
    # The fixed context (Cho et al. 2014) and the bridge (Bahdanau et al. 2015, A.2.2), row by row: the forward
    # direction's state at the last real token, the backward direction's at the first.
    half = encoder_states.shape[-1] // 2
    summaries = []
    for row, length in enumerate(mask.sum(-1).tolist()):
        last = encoder_states[row, length - 1]
        first = encoder_states[row, 0]
        summaries.append(torch.cat([last[:half], first[half:]]) if config.bidirectional_encoder else last)
    summary = torch.stack(summaries)  # (B, K)
    bridged = torch.tanh(decoder.bridge(summary))  # (B, L * state)
    hidden = torch.stack(bridged.chunk(config.num_decoder_layers, dim=-1))  # (L, B, state)
    previous = None
    if config.input_feeding:
        previous = embeds.new_zeros(len(embeds), 1, config.embedding_dim)

    def weights_for(query):  # (B, 1, H) -> (B, 1, S)
        if config_type in ("bahdanau", "luong_concat"):
            keys = attention.key_projection(encoder_states)[:, None]  # (B, 1, S, A)
            scores = attention.energy(torch.tanh(attention.query_projection(query)[:, :, None] + keys)).squeeze(-1)
        elif config_type == "luong_general":
            scores = query @ attention.key_projection(encoder_states).transpose(1, 2)
        else:
            scores = query @ encoder_states.transpose(1, 2)
        return torch.softmax(scores.masked_fill(mask[:, None] == 0, float("-inf")), dim=-1)

    outputs = []
    for t in range(steps):
        inputs = [embeds[:, t : t + 1]]
        if config_type == "bahdanau":
            context = weights_for(hidden[-1, :, None, : config.hidden_size]) @ encoder_states
            inputs.append(context)
        elif config_type == "none":
            context = summary[:, None]
            inputs.append(context)
        if previous is not None:
            inputs.append(previous)
        layer_input, new_hidden = torch.cat(inputs, dim=-1), []
        for i, rnn in enumerate(decoder.layers):
            h = hidden[i : i + 1]
            h = tuple(part.contiguous() for part in h.chunk(2, dim=-1)) if is_lstm else h
            layer_input, h = rnn(layer_input, h)
            new_hidden.append(torch.cat(h, dim=-1) if is_lstm else h)
        hidden = torch.cat(new_hidden)
        if config_type.startswith("luong"):
            context = weights_for(layer_input) @ encoder_states
        output = torch.tanh(decoder.attentional_layer(torch.cat([context, layer_input], dim=-1)))
        previous = output if config.input_feeding else None
        outputs.append(output)
    return torch.cat(outputs, dim=1)


@pytest.mark.parametrize("attention_type,input_feeding,rnn_type", VARIANTS)
def test_decoder_equals_its_equations_with_the_context_vector_formed(attention_type, input_feeding, rnn_type):
    model = tiny_model(attention_type, input_feeding, rnn_type=rnn_type)
    ids, mask = padded_batch(seed=16)
    decoder = model.model.decoder
    embeds = torch.randn(ids.shape[0], 6, model.config.embedding_dim, generator=torch.Generator().manual_seed(16))
    with torch.no_grad():
        encoder_states = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        attentional = decoder(embeds, encoder_states, mask)[0]
        expected = reference_decoder(decoder, model.config, embeds, encoder_states, mask)
    # The same float32 arithmetic in another order (layer norm's sums among it), rounded by whichever vector
    # instructions the CPU has: seen up to 1e-6 apart; a wrong equation is off by far more than 1e-5.
    torch.testing.assert_close(attentional, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("attention_type", ["luong_dot", "luong_general", "luong_concat", "none"])
@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_parallel_teacher_forcing_equals_step_by_step(attention_type, rnn_type, monkeypatch):
    model = tiny_model(attention_type, rnn_type=rnn_type)
    assert model.model.decoder.runs_in_parallel
    ids, mask = padded_batch(seed=5)
    targets = torch.randint(3, VOCAB, (ids.shape[0], 6), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        parallel = model(input_ids=ids, attention_mask=mask, decoder_input_ids=targets, output_attentions=True)
        # Token by token through the returned state (what generate does) ...
        state, incremental = None, []
        for t in range(targets.shape[1]):
            step = model(input_ids=ids, attention_mask=mask, decoder_input_ids=targets[:, t : t + 1], past_key_values=state)
            state = step.past_key_values
            incremental.append(step.logits)
        # ... and the Python loop over time that input feeding needs, forced on.
        monkeypatch.setattr(RNNSeq2SeqDecoder, "runs_in_parallel", property(lambda self: False))
        stepwise = model(input_ids=ids, attention_mask=mask, decoder_input_ids=targets, output_attentions=True)
    torch.testing.assert_close(torch.cat(incremental, dim=1), parallel.logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stepwise.logits, parallel.logits, rtol=1e-5, atol=1e-6)
    if attention_type != "none":
        torch.testing.assert_close(stepwise.cross_attentions[0], parallel.cross_attentions[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention_type,input_feeding,rnn_type", VARIANTS)
def test_attention_weights_are_distributions_over_real_source_tokens(attention_type, input_feeding, rnn_type):
    model = tiny_model(attention_type, input_feeding, rnn_type=rnn_type)
    ids, mask = padded_batch(seed=6)
    out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=torch.full((4, 5), BOS), output_attentions=True)
    if attention_type == "none":
        assert out.cross_attentions is None  # the fixed-context model attends to nothing
        return
    (weights,) = out.cross_attentions
    assert weights.shape == (4, 1, 5, ids.shape[1])
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 1, 5))
    assert torch.all(weights.masked_select(mask[:, None, None, :] == 0) == 0)


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
@pytest.mark.parametrize("decoder_init", ["bridge", "encoder_final"])
def test_encoder_equals_a_packed_bidirectional_rnn(rnn_type, decoder_init):
    """Reference: torch's bidirectional RNN over packed sequences, layer by layer, with the encoder's weights; its
    final states (h_n, c_n), directions joined per layer, are the encoder's `final_state` where the decoder reads it."""
    model = tiny_model(rnn_type=rnn_type, num_encoder_layers=2, encoder_hidden_size=8, decoder_init=decoder_init)
    encoder, config = model.model.encoder, model.config
    ids, mask = padded_batch(seed=3, lengths=(7, 4, 1, 6))
    lengths = mask.sum(-1)
    states = encoder.embed_tokens(ids)
    finals = []
    for i in range(config.num_encoder_layers):
        reference = getattr(torch.nn, rnn_type.upper())(
            states.shape[-1], config.encoder_hidden_size, batch_first=True, bidirectional=True
        )
        for name, tensor in encoder.forward_layers[i].named_parameters():
            getattr(reference, name).data.copy_(tensor)
            getattr(reference, f"{name}_reverse").data.copy_(encoder.backward_layers[i].get_parameter(name))
        packed = pack_padded_sequence(states, lengths, batch_first=True, enforce_sorted=False)
        outputs, final = reference(packed)
        states = pad_packed_sequence(outputs, batch_first=True, total_length=ids.shape[1])[0]
        # (2, B, He) per state, forward then backward -> (B, 2 He); an LSTM's [h; c]
        finals.append(torch.cat([torch.cat(list(part), dim=-1) for part in (final if rnn_type == "lstm" else [final])],
                                dim=-1))  # fmt: skip
    with torch.no_grad():
        encoded = encoder(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(encoded.last_hidden_state, states.detach(), rtol=0, atol=1e-6)  # zero on padding
    if decoder_init == "bridge":
        assert "final_state" not in encoded
    else:
        torch.testing.assert_close(encoded.final_state, torch.stack(finals).detach(), rtol=0, atol=1e-6)


def test_an_encoder_stacked_per_direction_is_two_deep_rnns_joined_at_the_top():
    """Reference: a 2-layer torch GRU over each sentence and another over the sentence reversed (Marian's and
    Nematus's deep bidirectional encoders), with the encoder's weights, one sentence at a time."""
    model = tiny_model(num_encoder_layers=2, encoder_hidden_size=8, encoder_stacking="per_direction")
    encoder, config = model.model.encoder, model.config
    ids, mask = padded_batch(seed=3, lengths=(7, 4, 1, 6))
    references = [torch.nn.GRU(config.embedding_dim, 8, num_layers=2, batch_first=True) for _ in range(2)]
    for reference, layers in zip(references, (encoder.forward_layers, encoder.backward_layers)):
        for i, layer in enumerate(layers):
            for name, tensor in layer.named_parameters():
                getattr(reference, name.replace("l0", f"l{i}")).data.copy_(tensor)
    with torch.no_grad():
        encoded = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        for row, length in enumerate(mask.sum(-1).tolist()):
            embedded = encoder.embed_tokens(ids[row : row + 1, :length])
            forward = references[0](embedded)[0]
            backward = references[1](embedded.flip(1))[0].flip(1)
            torch.testing.assert_close(encoded[row : row + 1, :length], torch.cat([forward, backward], dim=-1),
                                       rtol=0, atol=1e-6)  # fmt: skip
            assert not encoded[row, length:].any()


def test_a_zero_start_embedding_replaces_the_start_tokens_at_the_first_step_only():
    model = tiny_model("cgru", zero_start_embedding=True, tie_word_embeddings=False)
    ids, mask = padded_batch(seed=4)
    decoder_ids = torch.cat([torch.full((4, 1), BOS), ids[:, :4].clamp(min=3)], dim=1)
    logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
    other_start = decoder_ids.clone()
    other_start[:, 0] = 7
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask, decoder_input_ids=other_start).logits, logits,
                               rtol=0, atol=0)  # fmt: skip
    reference = tiny_model("cgru", tie_word_embeddings=False)  # the same weights, its start token's row zeroed
    with torch.no_grad():
        reference.model.encoder.embed_tokens.weight[BOS] = 0
    torch.testing.assert_close(reference(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits,
                               logits, rtol=0, atol=1e-6)  # fmt: skip
    # generate() feeds the start token first, then one token a step: the same translations as the zeroed row's.
    assert torch.equal(model.generate(ids, attention_mask=mask, max_new_tokens=6, num_beams=3),
                       reference.generate(ids, attention_mask=mask, max_new_tokens=6, num_beams=3))  # fmt: skip


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
@pytest.mark.parametrize("decoder_init", ["encoder_final", "encoder_final_relu"])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_a_decoder_starting_from_the_encoders_final_states_translates_batches_like_sentences_alone(
    rnn_type, decoder_init, num_beams
):
    model = tiny_model(rnn_type=rnn_type, input_feeding=True, encoder_hidden_size=8, decoder_init=decoder_init,
                       attentional_activation="none", output_bias=True, seed=1)  # fmt: skip
    with torch.no_grad():
        model.lm_head.bias.normal_(generator=torch.Generator().manual_seed(0))
    ids, mask = padded_batch(seed=2)
    kwargs = dict(max_new_tokens=8, num_beams=num_beams, do_sample=False)
    batched = as_lists(model.generate(ids, attention_mask=mask, **kwargs))
    alone = [as_lists(model.generate(ids[r : r + 1, : int(mask[r].sum())], **kwargs))[0] for r in range(len(ids))]
    assert batched == alone


def test_relu_bridge_is_opennmts_view_of_the_final_states():
    """OpenNMT-py's RNNEncoder._bridge, written out: (L * D, B, He) final states -> (B, L * D, He) -> rows of L * He
    -> ReLU(W x + b) -> back, then its decoder's _fix_enc_hidden joins the two directions of each layer."""
    model = tiny_model(rnn_type="gru", num_encoder_layers=2, encoder_hidden_size=8, decoder_init="encoder_final_relu")
    decoder = model.model.decoder
    final_state = torch.randn(2, 3, 16)  # (L, B, H): [forward; backward] per layer
    theirs = final_state.view(2, 3, 2, 8).permute(0, 2, 1, 3).reshape(4, 3, 8)  # (L * D, B, He): l0f, l0b, l1f, ...
    bottled = theirs.permute(1, 0, 2).contiguous()
    bottled = torch.relu(decoder.bridge(bottled.view(-1, 16))).view(3, 4, 8).permute(1, 0, 2)
    expected = torch.cat([bottled[0::2], bottled[1::2]], dim=2)  # _fix_enc_hidden
    with torch.no_grad():
        torch.testing.assert_close(decoder._relu_bridge(final_state), expected.detach(), rtol=0, atol=1e-6)


def test_padding_does_not_leak_into_the_encoder_or_attention():
    model = tiny_model("bahdanau", True)
    ids, mask = padded_batch(seed=7, lengths=(5, 3))
    garbage = ids.clone()
    garbage[1, 3:] = 17  # whatever sits under mask 0 must not matter
    decoder_input_ids = torch.full((2, 4), BOS)
    with torch.no_grad():
        clean = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
        noisy = model(input_ids=garbage, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    torch.testing.assert_close(clean, noisy)


def test_output_hidden_states_are_embeddings_plus_one_per_layer():
    model = tiny_model("luong_general", num_encoder_layers=3, num_decoder_layers=2)
    ids, mask = padded_batch(seed=8)
    out = model(input_ids=ids, attention_mask=mask, decoder_input_ids=torch.full((4, 5), BOS), output_hidden_states=True)
    assert [tuple(h.shape) for h in out.encoder_hidden_states] == [(4, 7, 12)] + [(4, 7, 32)] * 3
    assert [tuple(h.shape) for h in out.decoder_hidden_states] == [(4, 5, 12)] + [(4, 5, 16)] * 2
    torch.testing.assert_close(out.encoder_hidden_states[-1], out.encoder_last_hidden_state)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loss_is_cross_entropy_with_ignored_padding_and_label_smoothing(dtype):
    """In float32 torch's cross_entropy itself; from bfloat16 logits the model's own blockwise float32 computation,
    checked here against torch's on the same logits made float32, in value and in gradient."""
    model = tiny_model(label_smoothing=0.1).to(dtype)
    ids, mask = padded_batch(seed=9)
    labels = torch.randint(3, VOCAB, (4, 5), generator=torch.Generator().manual_seed(9))
    labels[0, 3:] = -100
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels)
    assert decoder_input_ids[:, 0].eq(BOS).all() and decoder_input_ids[0, 4].item() == PAD
    logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits.detach()
    logits.requires_grad_()
    expected = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, VOCAB), labels.reshape(-1), label_smoothing=0.1
    )
    assert out.loss.dtype == torch.float32
    torch.testing.assert_close(out.loss, expected)
    out.logits.retain_grad()
    (3 * out.loss).backward()
    (3 * expected).backward()
    # Each gradient rounded to bfloat16 once, from float32 values computed in a different order: within one unit
    # in the last place (2^-8 relative).
    torch.testing.assert_close(out.logits.grad, logits.grad, rtol=2**-8, atol=1e-6)
    assert out.logits.grad[0, 3:].eq(0).all()  # ignored targets pass no gradient


def test_inputs_embeds_replace_input_ids_in_forward_and_generate():
    model = tiny_model("bahdanau")
    ids, mask = padded_batch(seed=10)
    embeds = model.get_input_embeddings()(ids)
    decoder_input_ids = torch.full((4, 3), BOS)
    with torch.no_grad():
        from_ids = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
        from_embeds = model(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    torch.testing.assert_close(from_ids, from_embeds)
    kwargs = dict(attention_mask=mask, max_new_tokens=6, num_beams=2)
    assert as_lists(model.generate(inputs_embeds=embeds, **kwargs)) == as_lists(model.generate(ids, **kwargs))


@pytest.mark.parametrize("attention_type,input_feeding,rnn_type", VARIANTS)
def test_decoder_rows_sharing_a_sentence_equal_copies_of_its_encoder_states(attention_type, input_feeding, rnn_type):
    model = tiny_model(attention_type, input_feeding, rnn_type=rnn_type)
    ids, mask = padded_batch(seed=14)
    copies = 3
    decoder_ids = torch.randint(3, VOCAB, (ids.shape[0] * copies, 5), generator=torch.Generator().manual_seed(14))
    with torch.no_grad():
        encoded = model.get_encoder()(input_ids=ids, attention_mask=mask)
        shared = model(encoder_outputs=encoded, attention_mask=mask, decoder_input_ids=decoder_ids, output_attentions=True)
        copied = model(
            encoder_outputs=(encoded.last_hidden_state.repeat_interleave(copies, dim=0),),
            attention_mask=mask.repeat_interleave(copies, dim=0),
            decoder_input_ids=decoder_ids,
            output_attentions=True,
        )
    # Layer normalisation divides each product by its spread, so the rounding of the two orders of summation
    # (sum_s a_s W h_s against W sum_s a_s h_s) grows by the inverse of that spread (measured: 1.8e-6 here).
    atol = 1e-5 if model.config.layer_norm else 1e-6
    torch.testing.assert_close(shared.logits, copied.logits, rtol=0, atol=atol)
    if shared.cross_attentions is not None:
        torch.testing.assert_close(shared.cross_attentions, copied.cross_attentions, rtol=0, atol=atol)
    with pytest.raises(ValueError, match="decoder rows for 4 source sentences"):
        model(encoder_outputs=encoded, attention_mask=mask, decoder_input_ids=decoder_ids[:5])


@pytest.mark.parametrize(
    "attention_type,input_feeding,rnn_type",
    [("bahdanau", True, "gru"), ("bahdanau", False, "lstm"), ("luong_general", False, "gru"), ("none", False, "gru"),
     ("cgru", True, "gru"), ("cgru_layer_norm", False, "gru")],
)
def test_beam_search_and_samples_keep_one_copy_of_the_encoder_states(attention_type, input_feeding, rnn_type, monkeypatch):
    model = tiny_model(attention_type, input_feeding, rnn_type=rnn_type)
    ids, mask = padded_batch(seed=15)
    beam = dict(attention_mask=mask, max_new_tokens=8, num_beams=3, num_return_sequences=2, output_scores=True,
                return_dict_in_generate=True)  # fmt: skip
    samples = dict(attention_mask=mask, max_new_tokens=8, do_sample=True, num_return_sequences=3)
    ours = model.generate(ids, **beam)
    torch.manual_seed(0)
    our_samples = model.generate(ids, **samples)
    state = ours.past_key_values
    assert state.hidden.shape[1] == ids.shape[0] * 3
    for shared in (state.keys, state.values):  # one row per sentence, not per beam
        assert shared is None if attention_type == "none" else shared.shape[0] == ids.shape[0]
    # The reference: the library's own expansion, which copies the encoder states for every beam and sample (one
    # decoder row per copy, so the context vector is formed and fed to torch's GRU / LSTM as it is in training).
    from transformers import GenerationMixin

    monkeypatch.setattr(  # from the class dict: a staticmethod before transformers 5.2x stays one
        RNNSeq2SeqForConditionalGeneration, "_expand_inputs_for_generation",
        GenerationMixin.__dict__["_expand_inputs_for_generation"],
    )  # fmt: skip
    library = model.generate(ids, **beam)
    torch.manual_seed(0)
    assert torch.equal(model.generate(ids, **samples), our_samples)
    assert as_lists(ours.sequences) == as_lists(library.sequences)
    torch.testing.assert_close(ours.sequences_scores, library.sequences_scores, rtol=0, atol=1e-6)


def test_generate_returns_scores_and_per_step_cross_attentions():
    model = tiny_model("luong_concat")
    ids, mask = padded_batch(seed=11)
    out = model.generate(
        ids,
        attention_mask=mask,
        max_new_tokens=5,
        min_new_tokens=5,
        return_dict_in_generate=True,
        output_scores=True,
        output_attentions=True,
    )
    assert len(out.scores) == 5 and out.scores[0].shape == (4, VOCAB)
    assert len(out.cross_attentions) == 5
    assert all(step[0].shape == (4, 1, 1, ids.shape[1]) for step in out.cross_attentions)


def test_sampling_is_seeded_and_top_k_one_is_greedy():
    model = tiny_model("bahdanau", True)
    ids, mask = padded_batch(seed=12)
    sample = dict(attention_mask=mask, max_new_tokens=8, do_sample=True, top_p=0.9, temperature=0.7)
    torch.manual_seed(0)
    first = model.generate(ids, **sample)
    torch.manual_seed(0)
    assert torch.equal(first, model.generate(ids, **sample))
    greedy = model.generate(ids, attention_mask=mask, max_new_tokens=8)
    top_one = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=True, top_k=1)
    assert as_lists(greedy) == as_lists(top_one)


def test_no_repeat_ngram_size_is_honoured():
    model = tiny_model("luong_general")
    ids, mask = padded_batch(seed=13)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=15, min_new_tokens=15, num_beams=3, no_repeat_ngram_size=2)
    for row in out.tolist():
        bigrams = list(zip(row, row[1:]))
        assert len(bigrams) == len(set(bigrams))


@pytest.mark.parametrize("state_argument", ["past_key_values", "cache"])
@pytest.mark.parametrize("attention_type,input_feeding", [("bahdanau", True), ("luong_general", False)])
def test_the_state_continues_under_either_name_generate_uses(state_argument, attention_type, input_feeding):
    """transformers up to 5.23 hands the decoder state back to forward as `past_key_values`, 5.24 as `cache`: called
    either way, one token a step, the model equals a hand-written greedy loop over the whole prefix without state."""
    model = tiny_model(attention_type, input_feeding)
    ids, mask = padded_batch(seed=3)
    expected = torch.full((ids.shape[0], 1), BOS)
    tokens, state = expected, None
    with torch.no_grad():
        for _ in range(8):
            logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=expected, use_cache=False).logits
            expected = torch.cat([expected, logits[:, -1:].argmax(-1)], dim=1)
            step = model(
                input_ids=ids, attention_mask=mask, decoder_input_ids=tokens[:, -1:], **{state_argument: state}
            )
            state = step["cache"] if "cache" in step else step["past_key_values"]  # the output's name differs too
            assert isinstance(state, RNNDecoderState)
            tokens = torch.cat([tokens, step.logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(tokens, expected)
    generated = model.generate(ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert torch.equal(generated, expected)


def test_an_argument_that_could_carry_state_is_never_dropped():
    """What this code does not recognise fails naming the running transformers and the tested range."""
    from transformers import DynamicCache

    model = tiny_model()
    ids, mask = padded_batch(seed=4)
    targets = torch.full((ids.shape[0], 1), BOS)
    oldest, newest = map(re.escape, TESTED_TRANSFORMERS)
    tested = rf"tested with transformers {oldest} to {newest}, and this is transformers \d"
    with pytest.raises(TypeError, match=r"does not understand: \['decoder_state'\].*" + tested):
        model(input_ids=ids, attention_mask=mask, decoder_input_ids=targets, decoder_state=object())
    with pytest.raises(TypeError, match=r"must be an RNNDecoderState, got a DynamicCache.*" + tested):
        model(input_ids=ids, attention_mask=mask, decoder_input_ids=targets, cache=DynamicCache())
    state = model(input_ids=ids, attention_mask=mask, decoder_input_ids=targets).past_key_values
    with pytest.raises(ValueError, match="not both"):
        model(input_ids=ids, attention_mask=mask, decoder_input_ids=targets, cache=state, past_key_values=state)
    with pytest.raises(TypeError, match=r"does not understand: \['future_state'\]"):
        model.model(input_ids=ids, attention_mask=mask, decoder_input_ids=targets, future_state=state)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_loss_is_a_share_of_the_optimizer_steps_mean_when_told_its_token_count(dtype):
    """The Trainer passes `num_items_in_batch` (target tokens of all batches accumulated into one step) and then no
    longer divides by the accumulation steps: two half batches must add up to the whole batch's mean loss."""
    model = tiny_model(label_smoothing=0.1).to(dtype)
    ids, mask = padded_batch(seed=9)
    labels = torch.randint(3, VOCAB, (4, 5), generator=torch.Generator().manual_seed(9))
    labels[0, 3:] = -100
    whole = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    tokens = (labels != -100).sum()
    halves = [
        model(input_ids=ids[rows], attention_mask=mask[rows], labels=labels[rows], num_items_in_batch=tokens).loss
        for rows in (slice(0, 2), slice(2, 4))
    ]
    torch.testing.assert_close(halves[0] + halves[1], whole)


def test_generate_continues_from_a_returned_state():
    model = tiny_model("luong_general", True)
    ids, mask = padded_batch(seed=14, lengths=(5,))
    kwargs = dict(attention_mask=mask, do_sample=False)
    whole = model.generate(ids, max_new_tokens=6, min_new_tokens=6, **kwargs)
    first = model.generate(ids, max_new_tokens=3, min_new_tokens=3, return_dict_in_generate=True, **kwargs)
    assert isinstance(first.past_key_values, RNNDecoderState)
    continued = model.generate(
        ids, decoder_input_ids=first.sequences, past_key_values=first.past_key_values, max_new_tokens=3, min_new_tokens=3, **kwargs
    )
    assert torch.equal(continued, whole)


def test_assisted_decoding_is_refused_clearly():
    model = tiny_model()
    ids, mask = padded_batch(seed=15)
    with pytest.raises(ValueError, match="stateful"):
        model.generate(ids, attention_mask=mask, max_new_tokens=4, assistant_model=tiny_model(seed=1))


def test_left_padding_is_refused():
    model = tiny_model()
    ids = torch.tensor([[PAD, 5, 6]])
    with pytest.raises(ValueError, match="right-padded"):
        model(input_ids=ids, attention_mask=torch.tensor([[0, 1, 1]]), decoder_input_ids=torch.tensor([[BOS]]))


@pytest.mark.parametrize("tie", [True, False])
def test_resize_token_embeddings_keeps_ties_and_values(tie):
    model = tiny_model(tie_word_embeddings=tie)
    old = model.get_input_embeddings().weight.detach().clone()
    model.resize_token_embeddings(VOCAB + 5)
    assert model.config.vocab_size == VOCAB + 5
    assert model.get_input_embeddings().weight.shape == (VOCAB + 5, 12)
    assert model.lm_head.weight.shape == (VOCAB + 5, 12)
    assert (model.lm_head.weight is model.get_input_embeddings().weight) == tie
    torch.testing.assert_close(model.get_input_embeddings().weight[:VOCAB], old)
    ids, mask = padded_batch(seed=16)
    assert model(input_ids=ids, attention_mask=mask, decoder_input_ids=ids).logits.shape[-1] == VOCAB + 5


def test_embedding_table_is_shared_by_encoder_decoder_and_tied_head(tmp_path):
    model = tiny_model()
    assert model.lm_head.weight is model.model.encoder.embed_tokens.weight
    model.save_pretrained(tmp_path)
    reloaded = RNNSeq2SeqForConditionalGeneration.from_pretrained(tmp_path)
    assert reloaded.lm_head.weight is reloaded.model.encoder.embed_tokens.weight


def test_auto_classes_resolve_after_import(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    assert type(AutoModelForSeq2SeqLM.from_pretrained(tmp_path)) is RNNSeq2SeqForConditionalGeneration
    assert type(AutoModel.from_pretrained(tmp_path)).__name__ == "RNNSeq2SeqModel"


def word_pairs(multi30k_dir, count):
    def read(lang):
        with gzip.open(multi30k_dir / f"train.{lang}.gz", "rt", encoding="utf-8") as handle:
            return [next(handle).strip() for _ in range(count)]

    return list(zip(read("de"), read("en")))


@pytest.mark.parametrize("decoder", ["bahdanau", "cgru"])
def test_loss_decreases_on_real_multi30k_pairs(multi30k_dir, decoder):
    pairs = word_pairs(multi30k_dir, 16)
    words = sorted({w for pair in pairs for sentence in pair for w in sentence.lower().split()})
    vocab = {w: i + 4 for i, w in enumerate(words)}

    def encode(sentence):
        return [vocab[w] for w in sentence.lower().split()] + [EOS]

    def pad(rows, value):
        width = max(map(len, rows))
        return torch.tensor([row + [value] * (width - len(row)) for row in rows])

    sources = [encode(de) for de, _ in pairs]
    input_ids = pad(sources, PAD)
    attention_mask = pad([[1] * len(s) for s in sources], 0)
    labels = pad([encode(en) for _, en in pairs], -100)
    torch.manual_seed(0)
    model = RNNSeq2SeqForConditionalGeneration(
        tiny_config(decoder, vocab_size=len(vocab) + 4, embedding_dim=64, hidden_size=64)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(len(vocab) + 4), rel=0.2)  # starts near uniform
    assert losses[-1] < 0.5 * losses[0]


def test_an_untied_output_layer_starts_like_the_table_it_would_share():
    # At Xavier's scale for a real vocabulary (std 0.016 for 8,000 words) the decoder got ~6x less gradient than with
    # a tied table and training stalled near the unigram loss; an untied layer must start as a tied one does.
    def model_and_decoder_gradient_norm(tie):
        torch.manual_seed(0)
        model = RNNSeq2SeqForConditionalGeneration(tiny_config(vocab_size=8000, tie_word_embeddings=tie))
        generator = torch.Generator().manual_seed(1)
        input_ids = torch.randint(4, 8000, (8, 9), generator=generator)
        labels = torch.randint(4, 8000, (8, 7), generator=generator)
        model(input_ids=input_ids, labels=labels).loss.backward()
        return model, torch.cat([p.grad.flatten() for p in model.model.decoder.layers.parameters()]).norm()

    _, tied_norm = model_and_decoder_gradient_norm(True)
    untied, untied_norm = model_and_decoder_gradient_norm(False)
    head = untied.lm_head.weight
    assert head is not untied.model.encoder.embed_tokens.weight
    assert head.std().item() == pytest.approx(untied.config.initializer_range, rel=0.05)
    assert head.mean().abs().item() < 0.01
    assert 0.3 < (untied_norm / tied_norm).item() < 3.0  # 0.53 here; 0.15 with the Xavier-initialised layer


@pytest.mark.parametrize("accumulation_steps", [2, 4])
def test_accumulated_batches_take_the_trainers_step_of_one_large_batch(accumulation_steps, tmp_path):
    """The Trainer hands the model the token count of the whole optimizer step (`num_items_in_batch`) and then no
    longer divides the loss by the accumulation steps: batches of different lengths accumulated into one step must
    move the weights as one batch of all of them (plain SGD, no clipping, so the step is the gradient itself)."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    generator = torch.Generator().manual_seed(5)
    examples = []
    for length in [2, 9, 3, 7, 5, 4, 8, 6]:
        ids = torch.randint(3, VOCAB, (length,), generator=generator).tolist()
        examples.append({"input_ids": ids, "attention_mask": [1] * length, "labels": ids[::-1] + [EOS]})

    def collate(batch):
        def pad(key, value):
            width = max(len(example[key]) for example in batch)
            return torch.tensor([example[key] + [value] * (width - len(example[key])) for example in batch])

        return {key: pad(key, value) for key, value in (("input_ids", PAD), ("attention_mask", 0), ("labels", -100))}

    def weights_after_one_step(batch_size, accumulation):
        model = tiny_model("bahdanau", True)
        arguments = Seq2SeqTrainingArguments(
            str(tmp_path / f"run-{batch_size}"), per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation, max_steps=1, learning_rate=1.0, optim="sgd", max_grad_norm=0.0,
            lr_scheduler_type="constant", save_strategy="no", report_to="none", use_cpu=True, seed=0,
        )  # fmt: skip
        Seq2SeqTrainer(model=model, args=arguments, train_dataset=examples, data_collator=collate).train()
        return {name: tensor.detach().clone() for name, tensor in model.named_parameters()}

    one_batch = weights_after_one_step(len(examples), 1)
    accumulated = weights_after_one_step(len(examples) // accumulation_steps, accumulation_steps)
    untrained = dict(tiny_model("bahdanau", True).named_parameters())
    assert any(not torch.equal(one_batch[name], untrained[name]) for name in one_batch)
    for name in one_batch:
        torch.testing.assert_close(accumulated[name], one_batch[name], rtol=0, atol=1e-5, msg=name)


def test_sinusoidal_positions_are_eoles_positional_encoding():
    """eole/modules/embeddings.py PositionalEncoding (SinusoidalInterleaved), written out: a (max_len, dim) table with
    sin at even and cos at odd dimensions, added to the embeddings scaled by sqrt(dim)."""
    import math

    from hf_rnn_seq2seq.modeling_rnn_seq2seq import add_positions

    dim, max_len = 12, 50
    pe = torch.zeros(max_len, dim)
    position = torch.arange(0, max_len).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float) * -(math.log(10000.0) / dim))
    pe[:, 0::2] = torch.sin(position.float() * div_term)
    pe[:, 1::2] = torch.cos(position.float() * div_term)
    embeds = torch.randn(3, 7, dim)
    assert torch.equal(add_positions(embeds), embeds * math.sqrt(dim) + pe[None, :7])
    assert torch.equal(add_positions(embeds, first=40), embeds * math.sqrt(dim) + pe[None, 40:47])


@pytest.mark.parametrize("num_beams", [1, 3])
@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_positions_count_on_across_decoding_steps(num_beams, rnn_type):
    """With a cache, each step's target position comes from the state (seen_tokens); without, from the whole prefix:
    the same translations, equal to each sentence alone, and a teacher-forced pass gives generate()'s scores."""
    model = tiny_model(rnn_type=rnn_type, position_encoding="sinusoidal", decoder_init="encoder_final",
                       encoder_hidden_size=8, bidirectional_encoder=True, seed=3)  # fmt: skip
    ids, mask = padded_batch(seed=2)
    kwargs = dict(max_new_tokens=8, num_beams=num_beams, do_sample=False)
    with_cache = as_lists(model.generate(ids, attention_mask=mask, use_cache=True, **kwargs))
    assert with_cache == as_lists(model.generate(ids, attention_mask=mask, use_cache=False, **kwargs))
    alone = [as_lists(model.generate(ids[r : r + 1, : int(mask[r].sum())], **kwargs))[0] for r in range(len(ids))]
    assert with_cache == alone
