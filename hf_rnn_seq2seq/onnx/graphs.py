"""The two graphs a translator runs, as torch modules around the model's own code, ready for `torch.onnx.export`.

The search loop stays outside the graphs (`translator.py`): the encoder graph runs once per batch, the decoder-step
graph once per generated token, with the recurrent state as an explicit input and output.

    encoder:      input_ids (B, S), attention_mask (B, S)
                  -> encoder_states (B, S, K), hidden (L, B, H|2H) the decoder's start state,
                     and with attention keys (B, S, A) and values (B, S, D) (`PremultipliedContext`)
    decoder step: input_ids (N, 1), hidden (L, N, H|2H), encoder_states (B, S, K), attention_mask (B, S),
                  [keys, values], [attentional (N, 1, O) with input feeding], token_mask (V,), top_k (k,)
                  -> log_probs (N, V) float32, top_scores (N, k), top_tokens (N, k), next_hidden,
                     [next_attentional], [attention (N, S)]

token_mask holds 0 or -inf per token: the decoding rules of the step (tokens never to generate, EOS before the
minimum length), added to the log-probabilities before the k best of each row are picked (k: top_k's length, so
that it can change from call to call; greedy search takes 1, beam search 2 per beam). The search then reads k
candidates a row instead of the vocabulary.

N = G·B decoder rows, G consecutive rows for each source sentence (G = 1 greedy, G = beams), as in `generate()`: the
encoder outputs stay one copy per sentence. The decoding step computes its cells from their gate equations (the
decoder does at one step without gradient), so the decoder graph is plain matrix products and elementwise functions;
the encoder's recurrences export as ONNX's GRU/LSTM operators, which the tests compare with PyTorch.
"""

from __future__ import annotations

import torch
from torch import nn

from ..modeling_rnn_seq2seq import RNNDecoderState, RNNSeq2SeqForConditionalGeneration


def _has_attention(model: RNNSeq2SeqForConditionalGeneration) -> bool:
    return model.model.decoder.attention is not None


def encoder_outputs(model) -> list[str]:
    return ["encoder_states", "hidden"] + (["keys", "values"] if _has_attention(model) else [])


def decoder_inputs(model) -> list[str]:
    names = ["input_ids", "hidden", "encoder_states", "attention_mask"]
    names += ["keys", "values"] if _has_attention(model) else []
    return names + (["attentional"] if model.config.input_feeding else []) + ["token_mask", "top_k"]


def decoder_outputs(model) -> list[str]:
    names = ["log_probs", "top_scores", "top_tokens", "next_hidden"]
    names += ["next_attentional"] if model.config.input_feeding else []
    return names + (["attention"] if _has_attention(model) else [])


class EncoderGraph(nn.Module):
    def __init__(self, model: RNNSeq2SeqForConditionalGeneration):
        super().__init__()
        self.model = model.model

    def forward(self, input_ids, attention_mask):
        states = self.model.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        decoder = self.model.decoder
        start = decoder.initial_state(states, attention_mask, rows=states.shape[0])
        outputs = [states, start.hidden]
        if decoder.attention is not None:
            outputs += [start.keys, decoder.premultiplied.project_values(states)]
        return tuple(outputs)


class DecoderStepGraph(nn.Module):
    """One decoding step; its inputs in the order of `decoder_inputs(model)`."""

    def __init__(self, model: RNNSeq2SeqForConditionalGeneration):
        super().__init__()
        self.model = model
        self.input_names = decoder_inputs(model)

    def forward(self, *inputs):
        named = dict(zip(self.input_names, inputs))
        # The values are read whatever G is (greedy too): one graph for every search.
        state = RNNDecoderState(named["hidden"], named.get("attentional"), named.get("keys"), named.get("values"))
        embedded = self.model.model.target_embeddings(named["input_ids"], check_ids=False)  # (N, 1, E)
        output, new_state, _, weights = self.model.model.decoder(
            embedded, named["encoder_states"], named["attention_mask"], state
        )
        log_probs = self.model.lm_head(output[:, -1]).float().log_softmax(-1)  # (N, V)
        top_scores, top_tokens = (log_probs + named["token_mask"]).topk(named["top_k"].shape[0], dim=-1)
        results = [log_probs, top_scores, top_tokens, new_state.hidden]
        if self.model.config.input_feeding:
            results.append(new_state.attentional)
        if weights is not None:
            results.append(weights[:, -1])  # (N, S)
        return tuple(results)


def example_inputs(model, sentences: int = 2, rows_per_sentence: int = 3, source_length: int = 5):
    """Inputs of both graphs for tracing: a right-padded batch, G > 1 rows a sentence."""
    config, decoder = model.config, model.model.decoder
    input_ids = torch.randint(3, config.source_vocab_size or config.vocab_size, (sentences, source_length))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[-1, -2:] = 0
    with torch.no_grad():
        encoded = dict(zip(encoder_outputs(model), EncoderGraph(model)(input_ids, attention_mask)))
    rows = sentences * rows_per_sentence
    step = {
        "input_ids": torch.full((rows, 1), config.decoder_start_token_id),
        "hidden": encoded["hidden"].repeat_interleave(rows_per_sentence, dim=1),
        "encoder_states": encoded["encoder_states"],
        "attention_mask": attention_mask,
        "keys": encoded.get("keys"),
        "values": encoded.get("values"),
        "attentional": torch.zeros(rows, 1, config.attentional_size),
        "token_mask": torch.zeros(config.vocab_size),
        "top_k": torch.zeros(2 * rows_per_sentence, dtype=torch.int64),
    }
    return (input_ids, attention_mask), tuple(step[name] for name in decoder_inputs(model))
