"""Translate with a model exported by `hf-rnn-seq2seq-export-onnx`, on onnxruntime, numpy and tokenizers alone.

The export copies this file into its folder as `onnx_translator.py`, so the folder runs anywhere these three
libraries do (no torch, no transformers):

    from onnx_translator import OnnxTranslator
    translator = OnnxTranslator("exported/")
    translator.translate(["Ein Hund läuft."], num_beams=5)

The search follows transformers' `generate()` (5.x) step for step, so that it returns the same tokens: greedy search
picks each row's most probable token and pads a row after its EOS; beam search keeps the 2·G best continuations of
each sentence's G beams, finishes a hypothesis at EOS or at the length limit with its summed log-probability divided
by (generated tokens) ** length_penalty, and stops as `early_stopping` says (True: when G hypotheses are finished;
False: when the best running beam, at its current length, cannot beat the worst finished one; "never": at the length
limit, or earlier where a positive length penalty cannot change the order). Scores are float32, as there.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

CONFIG_FILE = "onnx_config.json"
FORMAT_VERSION = 1  # of CONFIG_FILE and the graphs' inputs and outputs
NO_SCORE = np.float32(-1.0e9)  # generate()'s score of an impossible or unused beam
_WHITESPACE = re.compile(r"\s")


def normalize(text: str) -> str:
    """Unicode NFC, every whitespace character (tabs, no-break and thin spaces, ...) to a space, ends stripped: the
    normalisation of the training data (`hf_rnn_seq2seq.text_files.normalize`, restated because this file runs
    without the package; a test keeps the two equal)."""
    return unicodedata.normalize("NFC", _WHITESPACE.sub(" ", text)).strip()


class OnnxTranslator:
    """An exported model: its encoder and decoder-step graphs, tokenizer and decoding settings."""

    def __init__(self, folder, providers=("CPUExecutionProvider",), session_options=None):
        folder = Path(folder)
        config_path = folder / CONFIG_FILE
        if not config_path.is_file():
            raise ValueError(f"{folder} is not an exported model: it has no {CONFIG_FILE} (hf-rnn-seq2seq-export-onnx)")
        self.config = json.loads(config_path.read_text(encoding="utf-8"))
        if self.config.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{config_path} has format_version {self.config.get('format_version')!r}; this translator reads "
                f"{FORMAT_VERSION}: export the model again with this version"
            )
        self.tokenizer = Tokenizer.from_file(str(folder / self.config["tokenizer"]))
        self.tokenizer.no_padding()
        self.encoder, self.decoder = (
            self._session(folder / self.config[graph], providers, session_options) for graph in ("encoder", "decoder")
        )
        self.decoder_inputs = [graph_input.name for graph_input in self.decoder.get_inputs()]

    @staticmethod
    def _session(path: Path, providers, session_options) -> onnxruntime.InferenceSession:
        try:
            return onnxruntime.InferenceSession(str(path), session_options, providers=list(providers))
        except Exception as error:  # onnxruntime's own exception types differ between releases
            raise ValueError(f"onnxruntime {onnxruntime.__version__} cannot load {path}: {error}") from error

    # ---- tokens -------------------------------------------------------------------------------------------------

    def encode(self, sentences: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
        """Right-padded source ids and mask (B, S), int64, and how many sentences were cut to max_source_length."""
        # The tokenizer's own truncation, as transformers' truncation=True: its special tokens (the final EOS) stay.
        self.tokenizer.enable_truncation(max_length=self.config["max_source_length"])
        encodings = self.tokenizer.encode_batch(sentences)
        too_long = sum(bool(encoding.overflowing) for encoding in encodings)
        ids = [encoding.ids for encoding in encodings]
        width = max(map(len, ids))
        input_ids = np.full((len(ids), width), self.config["pad_token_id"], dtype=np.int64)
        attention_mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = tokens
            attention_mask[row, : len(tokens)] = 1
        return input_ids, attention_mask, too_long

    def decode(self, ids: np.ndarray) -> list[str]:
        """Generated rows (start token first) to text, each cut at its first EOS."""
        eos = self.config["eos_token_id"]
        rows = []
        for row in ids.tolist():
            rows.append(row[: row.index(eos)] if eos in row else row)
        return self.tokenizer.decode_batch(rows, skip_special_tokens=True)

    # ---- translation --------------------------------------------------------------------------------------------

    def translate(self, sentences, batch_size: int = 64, **settings) -> list:
        """Translations of `sentences` in input order: a string each, or a list of `num_return_sequences` strings.
        An empty sentence translates to "" (or that many); sentences longer than max_source_length tokens are cut,
        with a warning. `settings`: num_beams, max_new_tokens, max_length, length_penalty, early_stopping,
        num_return_sequences (the model's own from its generation config where not given)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        texts = [normalize(sentence) for sentence in sentences]
        returns = settings.get("num_return_sequences") or 1
        empty = [""] * returns
        results = [empty if returns > 1 else "" for _ in texts]
        order = sorted((i for i, text in enumerate(texts) if text), key=lambda i: -len(texts[i]))
        too_long = 0
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            input_ids, attention_mask, cut = self.encode([texts[i] for i in indices])
            too_long += cut
            texts_out = self.decode(self.generate(input_ids, attention_mask, **settings)["sequences"])
            for k, index in enumerate(indices):
                chosen = texts_out[k * returns : (k + 1) * returns]
                results[index] = chosen if returns > 1 else chosen[0]
        if too_long:
            logger.warning(
                "%d of %d sentences are longer than max_source_length=%d tokens and were truncated",
                too_long, len(texts), self.config["max_source_length"],
            )  # fmt: skip
        return results

    def _settings(self, settings: dict) -> dict:
        """The decoding settings of one call: the given ones over the model's generation defaults."""
        known = {
            "num_beams", "max_new_tokens", "max_length", "length_penalty", "early_stopping", "num_return_sequences"
        }  # fmt: skip
        unknown = sorted(set(settings) - known)
        if unknown:
            raise TypeError(f"unknown decoding settings {unknown}: this translator takes {sorted(known)}")
        merged = {**self.config["generation"], **{key: value for key, value in settings.items() if value is not None}}
        if settings.get("max_new_tokens") is not None:
            merged["max_length"] = 1 + settings["max_new_tokens"]  # the start token counts, as in generate()
        elif settings.get("max_length") is None and merged.get("max_new_tokens") is not None:
            merged["max_length"] = 1 + merged["max_new_tokens"]
        beams, returns = merged["num_beams"], merged["num_return_sequences"]
        if not 1 <= returns <= beams:
            raise ValueError(f"num_return_sequences must be between 1 and num_beams={beams}, got {returns}")
        if merged["max_length"] < 2:
            raise ValueError(f"max_length must leave room for a generated token, got {merged['max_length']}")
        return merged

    def generate(self, input_ids: np.ndarray, attention_mask: np.ndarray, **settings) -> dict:
        """As `model.generate(input_ids, attention_mask=...)`: {"sequences": (B·R, T) int64 ids, start token first,
        "attention": (B·R, T - 1, S) float32 attention weights of each returned hypothesis' tokens (None for a model
        without attention)}, R = num_return_sequences."""
        settings = self._settings(settings)
        encoded = dict(zip(self.config["encoder_outputs"], self.encoder.run(None, {
            "input_ids": input_ids, "attention_mask": attention_mask})))  # fmt: skip
        search = _BeamSearch if settings["num_beams"] > 1 else _GreedySearch
        return search(self, encoded, attention_mask, settings).run()

    def step(self, tokens, state: dict, encoded: dict, attention_mask, token_mask, k: int, outputs) -> dict:
        """One decoder step for rows (N,) of `tokens`: the graph's `outputs` by name (top_scores and top_tokens
        (N, k): the k best tokens of each row by log-probability plus `token_mask`; next_hidden, ...)."""
        given = {
            "input_ids": tokens[:, None], "attention_mask": attention_mask, "token_mask": token_mask,
            "top_k": np.zeros(k, dtype=np.int64), **state,
        }  # fmt: skip
        # The graph's own inputs: the export leaves out those its computation never reads.
        feeds = {name: given[name] if name in given else encoded[name] for name in self.decoder_inputs}
        return dict(zip(outputs, self.decoder.run(list(outputs), feeds)))


class _Search:
    """What greedy and beam search share: the state of G rows per sentence, the step's token rules, stepping."""

    def __init__(self, translator: OnnxTranslator, encoded: dict, attention_mask, settings: dict, rows_per_sentence):
        self.translator, self.encoded, self.settings = translator, encoded, settings
        self.attention_mask = attention_mask
        config = translator.config
        self.sentences = attention_mask.shape[0]
        self.rows = self.sentences * rows_per_sentence
        self.state = {"hidden": np.repeat(encoded["hidden"], rows_per_sentence, axis=1)}
        if "attentional" in config["decoder_inputs"]:
            self.state["attentional"] = np.zeros((self.rows, 1, config["attentional_size"]), dtype=np.float32)
        self.max_length = settings["max_length"]
        self.eos, self.pad = config["eos_token_id"], config["pad_token_id"]
        self.start = config["decoder_start_token_id"]
        self.vocab_size = config["vocab_size"]
        self.with_attention = "attention" in config["decoder_outputs"]
        self.outputs = ["top_scores", "top_tokens", *(f"next_{name}" for name in self.state)]
        self.outputs += ["attention"] if self.with_attention else []
        self.source_length = attention_mask.shape[1]
        self.step_attention = []  # (N, S) of each step

    def token_mask(self, generated: int) -> np.ndarray:
        """0 or -inf per token: generate()'s token rules after `generated` tokens (suppress_tokens,
        begin_suppress_tokens at the first step, no EOS before min_new_tokens / min_length)."""
        settings = self.settings
        mask = np.zeros(self.vocab_size, dtype=np.float32)
        mask[settings.get("suppress_tokens") or []] = -np.inf
        if generated == 0:
            mask[settings.get("begin_suppress_tokens") or []] = -np.inf
        if generated < (settings.get("min_new_tokens") or 0) or 1 + generated < (settings.get("min_length") or 0):
            mask[self.eos] = -np.inf
        return mask

    def step(self, tokens: np.ndarray, generated: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best (scores, tokens) of each row (N, k) after `generated` tokens; the state moves on."""
        outputs = self.translator.step(
            tokens, self.state, self.encoded, self.attention_mask, self.token_mask(generated), k, self.outputs
        )
        self.state = {name: outputs[f"next_{name}"] for name in self.state}
        if self.with_attention:
            self.step_attention.append(outputs["attention"])
        return outputs["top_scores"], outputs["top_tokens"]

    def reorder(self, rows: np.ndarray) -> None:
        """Follow the surviving beams: the state of row rows[i] becomes row i's."""
        self.state = {name: value[:, rows] if name == "hidden" else value[rows] for name, value in self.state.items()}

    def attention(self, rows: np.ndarray) -> np.ndarray | None:
        """(R, T, S) attention weights of R hypotheses whose t-th token came from decoder row rows[r, t] of step t
        (-1 after its end; zeros there)."""
        if not self.with_attention:
            return None
        weights = np.zeros((*rows.shape, self.source_length), dtype=np.float32)
        for t in range(rows.shape[1]):
            written = rows[:, t] >= 0
            weights[written, t] = self.step_attention[t][rows[written, t]]
        return weights


class _GreedySearch(_Search):
    def __init__(self, translator, encoded, attention_mask, settings):
        super().__init__(translator, encoded, attention_mask, settings, rows_per_sentence=1)

    def run(self) -> dict:
        sequences = np.full((self.rows, 1), self.start, dtype=np.int64)
        unfinished = np.ones(self.rows, dtype=bool)
        while sequences.shape[1] < self.max_length and unfinished.any():
            _, best = self.step(sequences[:, -1], generated=sequences.shape[1] - 1, k=1)
            tokens = np.where(unfinished, best[:, 0], self.pad)
            sequences = np.concatenate([sequences, tokens[:, None]], axis=1)
            unfinished &= tokens != self.eos
        rows = np.broadcast_to(np.arange(self.rows)[:, None], (self.rows, sequences.shape[1] - 1))
        return {"sequences": sequences, "attention": self.attention(rows)}


class _BeamSearch(_Search):
    """transformers' `_beam_search` (generation/utils.py, 5.x) in numpy: arrays (B, beams, ...) as there. Where it
    takes the 2·G best of a sentence's G·V continuations, this takes them from the 2·G best of each beam's row,
    which hold them all (adding a beam's score keeps the order within its row)."""

    def __init__(self, translator, encoded, attention_mask, settings):
        self.beams = settings["num_beams"]
        super().__init__(translator, encoded, attention_mask, settings, rows_per_sentence=self.beams)
        self.keep = 2 * self.beams  # one EOS token: max(2, 1 + 1) · beams continuations kept a step
        self.length_penalty = settings["length_penalty"]
        self.early_stopping = settings["early_stopping"]

    def candidates(self, running_scores: np.ndarray, length: int, running: np.ndarray):
        """The step's 2·G best continuations of each sentence, best first: (scores, parent beams, tokens) (B, 2G).
        Ties go to the lower index in generate()'s flattened (beam, token) order."""
        B, G = running_scores.shape
        top_scores, top_tokens = self.step(running[:, :, length - 1].reshape(-1), generated=length - 1, k=self.keep)
        scores = (top_scores.reshape(B, G, -1) + running_scores[:, :, None]).reshape(B, -1)
        flat = (np.arange(G)[None, :, None] * self.vocab_size + top_tokens.reshape(B, G, -1)).reshape(B, -1)
        order = np.lexsort((flat, -scores), axis=-1)[:, : self.keep]
        chosen = np.take_along_axis(flat, order, axis=1)
        return np.take_along_axis(scores, order, axis=1), chosen // self.vocab_size, chosen % self.vocab_size

    def run(self) -> dict:
        B, G, L = self.sentences, self.beams, self.max_length
        running = np.full((B, G, L), self.pad or self.eos, dtype=np.int64)  # generate()'s filler: pad, or EOS if 0
        running[:, :, 0] = self.start
        running_rows = np.full((B, G, L - 1), -1, dtype=np.int64)  # the decoder row each token came from
        running_scores = np.zeros((B, G), dtype=np.float32)
        running_scores[:, 1:] = NO_SCORE
        finished, finished_rows = running.copy(), running_rows.copy()
        finished_scores = np.full((B, G), NO_SCORE, dtype=np.float32)
        is_finished = np.zeros((B, G), dtype=bool)
        improvable = np.ones((B, 1), dtype=bool)
        top_beams = np.arange(self.keep) < G
        length = 1
        while True:
            candidate_scores, parents, tokens = self.candidates(running_scores, length, running)
            candidate_sequences, candidate_rows = _gather([running, running_rows], parents)
            candidate_sequences[:, :, length] = tokens
            candidate_rows[:, :, length - 1] = parents + np.arange(B)[:, None] * G
            ends = (tokens == self.eos) | (length + 1 >= L)
            # The G best continuations that go on, and the G best finished hypotheses so far.
            going_on = candidate_scores + ends.astype(np.float32) * NO_SCORE
            running, running_rows, running_scores = _gather(
                [candidate_sequences, candidate_rows, going_on], _top_k(going_on, G)
            )
            just_finished = ends & top_beams[None, :]
            merged = [np.concatenate(pair, axis=1) for pair in (
                (finished, candidate_sequences), (finished_rows, candidate_rows), (is_finished, just_finished),
                (finished_scores, self._final_scores(candidate_scores, just_finished, is_finished, improvable, length)),
            )]  # fmt: skip
            finished, finished_rows, is_finished, finished_scores = _gather(merged, _top_k(merged[-1], G))

            self.reorder(running_rows[:, :, length - 1].reshape(-1))
            length += 1
            improvable &= self._may_improve(running_scores, finished_scores, is_finished, length)
            all_full = is_finished.all() and self.early_stopping is True
            if not improvable.any() or all_full or ends.all():
                break
        returns = self.settings["num_return_sequences"]
        rows = finished_rows[:, :returns].reshape(B * returns, L - 1)
        width = 1 + int((rows >= 0).sum(-1).max())  # generate() crops to the longest returned hypothesis
        sequences = finished[:, :returns].reshape(B * returns, L)[:, :width]
        return {"sequences": sequences, "attention": self.attention(rows[:, : width - 1])}

    def _final_scores(self, candidate_scores, just_finished, is_finished, improvable, length) -> np.ndarray:
        """generate()'s scores of the candidates as finished hypotheses: length-normalised, and NO_SCORE added
        where one may not join the finished ones (not just finished among the top G, no improvement possible, or
        with early_stopping=True every finished slot taken), in generate()'s order of float32 additions."""
        final = candidate_scores / np.float32(length**self.length_penalty)
        if self.early_stopping is True:
            final = final + (is_finished.all(-1, keepdims=True)).astype(np.float32) * NO_SCORE
        final = final + (~improvable).astype(np.float32) * NO_SCORE
        return final + (~just_finished).astype(np.float32) * NO_SCORE

    def _may_improve(self, running_scores, finished_scores, is_finished, length) -> np.ndarray:
        """generate()'s `_check_early_stop_heuristic`: (B, 1), whether a running beam may still beat a finished one."""
        if self.early_stopping == "never" and self.length_penalty > 0.0:
            best_length = self.max_length - 1
        else:
            best_length = length - 1
        best_running = running_scores[:, :1] / np.float32(best_length**self.length_penalty)
        worst_finished = np.where(is_finished, finished_scores.min(axis=1, keepdims=True), NO_SCORE)
        return (best_running > worst_finished).any(axis=-1, keepdims=True)


def _gather(arrays: list[np.ndarray], index: np.ndarray) -> list[np.ndarray]:
    """Each (B, K, ...) array's entries `index` (B, G) along its second axis: (B, G, ...)."""
    return [np.take_along_axis(array, index.reshape(*index.shape, *[1] * (array.ndim - 2)), axis=1) for array in arrays]


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries of each (short) row, largest first; ties: the lower index first."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]
