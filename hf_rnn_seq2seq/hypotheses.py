"""What a reader of the attention needs from one sentence: every hypothesis `generate()` returns, its score, its
tokens as a reader sees them, and the cross-attention each target token was written with.

The attention and the log-probability of a hypothesis come from one teacher-forced pass over it: the decoder computes
the same states there as while generating (tests/test_reference_outputs.py checks that they agree), and it works the
same for greedy search, beam search and sampling, whose `generate()` outputs keep attention in different shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .text_files import normalize
from .tokenization import reader_tokens
from .translation import MAX_SOURCE_LENGTH, NUM_BEAMS, cut_at_eos

DECODING_MODES = ("greedy", "beam search", "sampling")
MAX_BEAMS = 10  # the demo's widest beam search and largest number of hypotheses, and the beam sweep's range


@dataclass(frozen=True)
class Decoding:
    """A decoding strategy as `generate()` arguments; the rest (max_length, suppressed tokens, top_k, ...) comes from
    the model's generation_config.json."""

    mode: str = "beam search"
    num_beams: int = NUM_BEAMS
    length_penalty: float = 1.0  # beam search: score = log-probability / length ** length_penalty
    temperature: float = 1.0
    top_p: float = 1.0
    num_return_sequences: int = 1
    seed: int = 0  # sampling
    max_new_tokens: int | None = None  # None: the model's generation_config (max_length)

    def generate_kwargs(self) -> dict:
        limit = {} if self.max_new_tokens is None else dict(max_new_tokens=self.max_new_tokens)
        return {**limit, **self._strategy()}

    def _strategy(self) -> dict:
        if self.mode not in DECODING_MODES:
            raise ValueError(f"unknown decoding {self.mode!r}; choose one of {', '.join(DECODING_MODES)}")
        if self.num_return_sequences < 1:
            raise ValueError("ask for at least one hypothesis")
        if self.mode == "greedy":
            if self.num_return_sequences > 1:
                raise ValueError("greedy search finds one hypothesis: use beam search or sampling for more")
            return dict(num_beams=1, do_sample=False)
        if self.mode == "beam search":
            if self.num_return_sequences > self.num_beams:
                raise ValueError(
                    f"beam search with {self.num_beams} beams returns at most {self.num_beams} hypotheses, "
                    f"not {self.num_return_sequences}"
                )
            return dict(
                num_beams=self.num_beams, do_sample=False, length_penalty=self.length_penalty,
                num_return_sequences=self.num_return_sequences,
            )  # fmt: skip
        if not self.temperature > 0 or not 0 < self.top_p <= 1:
            raise ValueError("sampling needs a temperature above 0 and a top-p in (0, 1]")
        return dict(
            num_beams=1, do_sample=True, temperature=self.temperature, top_p=self.top_p,
            num_return_sequences=self.num_return_sequences,
        )  # fmt: skip


@dataclass
class Hypothesis:
    text: str
    token_ids: list[int]  # as generated, up to and including EOS (when it ended before the length limit)
    tokens: list[str]  # the same as a reader sees them (tokenization.reader_tokens)
    log_probability: float  # of the whole hypothesis under the model (sum over its tokens)
    beam_score: float | None  # beam search's ranking score (generate's sequences_scores); None otherwise
    attention: np.ndarray | None  # (len(tokens), source length): each row sums to 1; None without attention


@dataclass
class Translation:
    source_tokens: list[str]  # as a reader sees them, EOS last
    hypotheses: list[Hypothesis]


def encode_source(tokenizer, sentence: str) -> dict:
    """The sentence normalised as training data was, as a batch of one; empty or too long sentences are refused
    (a user asking to see the attention wants the whole sentence read, not a cut one)."""
    text = normalize(sentence)
    if not text:
        raise ValueError("type a sentence to translate")
    batch = tokenizer([text], return_tensors="pt")
    length = batch["input_ids"].shape[1]
    if length > MAX_SOURCE_LENGTH:
        raise ValueError(
            f"the sentence is {length} tokens long; these models read at most {MAX_SOURCE_LENGTH} (EOS included)"
        )
    return batch


@torch.no_grad()
def translate_with_attention(model, tokenizer, sentence: str, decoding: Decoding = Decoding()) -> Translation:
    """Translate `sentence` with `decoding`; every returned hypothesis with its score and attention."""
    kwargs = decoding.generate_kwargs()
    batch = encode_source(tokenizer, sentence).to(model.device)
    if kwargs["do_sample"]:
        torch.manual_seed(decoding.seed)
    out = model.generate(**batch, **kwargs, return_dict_in_generate=True, output_scores=True)
    start = model.config.decoder_start_token_id
    generated = [cut_at_eos(row[1:], tokenizer.eos_token_id) for row in out.sequences.tolist()]
    beam_scores = out.sequences_scores.tolist() if kwargs["num_beams"] > 1 else [None] * len(generated)

    # One teacher-forced pass over all hypotheses (right-padded: the decoder reads left to right, so padding after a
    # hypothesis changes nothing before it).
    longest = max(len(ids) for ids in generated)
    decoder_input_ids = torch.tensor(
        [[start, *ids[:-1]] + [tokenizer.pad_token_id] * (longest - len(ids)) for ids in generated], device=model.device
    )
    repeated = {name: tensor.expand(len(generated), -1) for name, tensor in batch.items()}
    forward = model(**repeated, decoder_input_ids=decoder_input_ids, output_attentions=True)
    log_probs = torch.log_softmax(forward.logits.float(), dim=-1)
    has_attention = model.config.attention_type != "none"

    hypotheses = []
    for row, (ids, beam_score) in enumerate(zip(generated, beam_scores)):
        picked = log_probs[row, torch.arange(len(ids)), torch.tensor(ids, device=model.device)]
        attention = forward.cross_attentions[-1][row, 0, : len(ids)].float().cpu().numpy() if has_attention else None
        hypotheses.append(
            Hypothesis(
                text=tokenizer.decode(ids, skip_special_tokens=True),
                token_ids=ids,
                tokens=reader_tokens(tokenizer, tokenizer.convert_ids_to_tokens(ids)),
                log_probability=picked.sum().item(),
                beam_score=beam_score,
                attention=attention,
            )
        )
    source = reader_tokens(tokenizer, tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist()))
    return Translation(source, hypotheses)


@dataclass
class BeamPoint:
    num_beams: int
    length: int  # target tokens, EOS included
    log_probability: float
    beam_score: float | None  # None for one beam (greedy search has no length-normalised score)


def beam_sweep(model, tokenizer, sentence: str, beam_sizes=range(1, MAX_BEAMS + 1), length_penalty: float = 1.0):
    """The best hypothesis of each beam size: how its length and score move as the search widens."""
    points = []
    for num_beams in beam_sizes:
        mode = "greedy" if num_beams == 1 else "beam search"
        best = translate_with_attention(
            model, tokenizer, sentence, Decoding(mode, num_beams=num_beams, length_penalty=length_penalty)
        ).hypotheses[0]
        points.append(BeamPoint(num_beams, len(best.token_ids), best.log_probability, best.beam_score))
    return points
