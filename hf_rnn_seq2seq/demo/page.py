"""The demo's page (Gradio Blocks): translate a sentence with a chosen decoding, read the attention of any hypothesis,
put two models side by side, and sweep the beam size. Every handler answers a bad input (an empty or too long
sentence, a model that does not load or is not an RNNSeq2Seq model, impossible settings) with a message in the page,
and the app goes on serving."""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from typing import NamedTuple

import gradio as gr
import matplotlib.pyplot as plt
import torch

from ..hypotheses import DECODING_MODES, MAX_BEAMS, Decoding, beam_sweep, translate_with_attention
from ..plotting import beam_sweep_figure
from ..translation import load_model
from .heatmap import heatmap_html, hypotheses_html

logger = logging.getLogger(__name__)

NO_ATTENTION = (
    '<p class="no-attention">This model has no attention (<code>attention_type="none"</code>): every target token is '
    "written from the same fixed summary of the whole source, the encoder's last state.</p>"
)


class ModelShelf:
    """The models the page serves, each loaded once. A visitor may name another folder or Hub id; the last few of
    those stay loaded beside the ones the app started with."""

    def __init__(self, names: list[str], extra_capacity: int = 2, dtype: torch.dtype | None = None):
        self.names = list(names)
        self.dtype = dtype  # what every model computes in (default: its saved weights' type)
        self.extra_capacity = extra_capacity
        self._loaded: OrderedDict[str, tuple] = OrderedDict()
        self.lock = threading.Lock()  # one generate() at a time: the models and torch's seed are shared

    def get(self, name: str | None):
        name = (name or "").strip()
        if not name:
            raise ValueError("choose a model")
        if name not in self._loaded:
            try:
                self._loaded[name] = load_model(name, dtype=self.dtype)
            except OSError as error:  # a missing folder, an unknown or unreachable Hub id, a missing file
                raise ValueError(f"could not load {name!r}: {str(error).splitlines()[0]}") from error
            extras = [loaded for loaded in self._loaded if loaded not in self.names]
            for evicted in extras[: max(0, len(extras) - self.extra_capacity)]:
                del self._loaded[evicted]
        return self._loaded[name]


def _answers_errors(empty_outputs):
    """A handler whose ValueError (a refused input) becomes a message in the status line, with the other outputs
    cleared; anything else is logged with its traceback for the operator and shown as a one-line message."""

    def decorate(handler):
        @functools.wraps(handler)
        def wrapped(*args):
            try:
                return handler(*args)
            except ValueError as error:
                message = str(error)
            except Exception as error:  # noqa: BLE001  the page must keep serving; the log keeps the traceback
                logger.exception("demo request failed")
                message = f"something went wrong ({type(error).__name__}: {error})"
            return (f"⚠️ {message[:1].upper()}{message[1:]}", *empty_outputs())

        return wrapped

    return decorate


def _attention_view(translation, hypothesis: int, token: int | None) -> str:
    chosen = translation.hypotheses[hypothesis]
    if chosen.attention is None:
        return NO_ATTENTION
    return heatmap_html(translation.source_tokens, chosen.tokens, chosen.attention, token)


def _token_choices(translation, hypothesis: int) -> gr.Radio:
    tokens = translation.hypotheses[hypothesis].tokens
    return gr.Radio(choices=[(token, index) for index, token in enumerate(tokens)], value=None)


INTRODUCTION = (
    "# Where does the decoder look?\n"
    "An RNN encoder reads the source into one state per token; the decoder writes the translation a token at "
    "a time, and attention weighs the source states at each step. Translate a sentence, then read the "
    "weights: a row per target token, a column per source token (hover a cell for its weight)."
)


class DecodingControls(NamedTuple):
    """The decoding panel's inputs, in `Decoding`'s order (the handlers receive their values in this order)."""

    mode: gr.Radio
    num_beams: gr.Slider
    length_penalty: gr.Slider
    temperature: gr.Slider
    top_p: gr.Slider
    num_return_sequences: gr.Slider
    seed: gr.Number


def _decoding(mode, num_beams, length_penalty, temperature, top_p, num_return_sequences, seed) -> Decoding:
    """The decoding panel's values (Gradio hands numbers as floats, and an empty seed as None) as a `Decoding`."""
    return Decoding(mode, int(num_beams), float(length_penalty), float(temperature), float(top_p),
                    int(num_return_sequences), int(seed or 0))  # fmt: skip


class PageHandlers:
    """What the page's events run. Each model request holds the shelf's lock: the models and torch's seed are
    shared by all visitors."""

    def __init__(self, shelf: ModelShelf):
        self.shelf = shelf

    @_answers_errors(lambda: ("", gr.Radio(choices=[], value=None), gr.Radio(choices=[], value=None), "", None))
    def translate(self, name, sentence, *settings):
        with self.shelf.lock:
            model, tokenizer = self.shelf.get(name)
            translation = translate_with_attention(model, tokenizer, sentence, _decoding(*settings))
        hypothesis_choices = [
            (f"{rank}. {hypothesis.text}", rank - 1) for rank, hypothesis in enumerate(translation.hypotheses, 1)
        ]
        return (
            f"Translated with {name}.", hypotheses_html(translation.hypotheses),
            gr.Radio(choices=hypothesis_choices, value=0), _token_choices(translation, 0),
            _attention_view(translation, 0, None), translation,
        )  # fmt: skip

    @staticmethod
    def choose_hypothesis(translation, hypothesis):
        if translation is None or hypothesis is None:
            return gr.Radio(choices=[], value=None), ""
        return _token_choices(translation, hypothesis), _attention_view(translation, hypothesis, None)

    @staticmethod
    def choose_token(translation, hypothesis, token):
        if translation is None or hypothesis is None:
            return ""
        return _attention_view(translation, hypothesis, token)

    @_answers_errors(lambda: (None,))
    def sweep(self, name, sentence, length_penalty):
        with self.shelf.lock:
            model, tokenizer = self.shelf.get(name)
            points = beam_sweep(model, tokenizer, sentence, length_penalty=float(length_penalty))
        figure = beam_sweep_figure(points)
        plt.close(figure)  # Gradio renders it; pyplot need not keep it
        return f"Beam sizes 1–{MAX_BEAMS} with {name}.", figure

    @_answers_errors(lambda: ("", "", "", ""))
    def side_by_side(self, left_name, right_name, sentence, *settings):
        views = []
        with self.shelf.lock:
            for name in (left_name, right_name):
                model, tokenizer = self.shelf.get(name)
                translation = translate_with_attention(model, tokenizer, sentence, _decoding(*settings))
                views += [translation.hypotheses[0].text, _attention_view(translation, 0, None)]
        return (f"{left_name} and {right_name} side by side.", *views)


def _decoding_controls() -> DecodingControls:
    """The decoding panel, set to `Decoding`'s defaults."""
    default = Decoding()
    with gr.Accordion("Decoding", open=True):
        with gr.Row():
            mode = gr.Radio(list(DECODING_MODES), value=default.mode, label="Search", elem_id="mode")
            num_beams = gr.Slider(1, MAX_BEAMS, value=default.num_beams, step=1, label="Beam size",
                                  elem_id="num-beams")  # fmt: skip
            length_penalty = gr.Slider(0.0, 2.0, value=default.length_penalty, step=0.1,
                                       label="Length penalty (beam search)")  # fmt: skip
        with gr.Row():
            temperature = gr.Slider(0.1, 2.0, value=default.temperature, step=0.1, label="Temperature (sampling)")
            top_p = gr.Slider(0.05, 1.0, value=default.top_p, step=0.05, label="Top-p (sampling)")
            num_return_sequences = gr.Slider(1, MAX_BEAMS, value=default.num_return_sequences, step=1,
                                             label="Hypotheses", elem_id="hypotheses-count")  # fmt: skip
            seed = gr.Number(default.seed, precision=0, label="Seed (sampling)")
    return DecodingControls(mode, num_beams, length_penalty, temperature, top_p, num_return_sequences, seed)


def _translation_panel(handlers: PageHandlers, model, sentence, settings: DecodingControls) -> gr.Markdown:
    """The translate button, its hypotheses and the attention heatmap of the chosen hypothesis and token; returns
    the status line, which every panel answers in."""
    translate_button = gr.Button("Translate", variant="primary", elem_id="translate")
    status = gr.Markdown(elem_id="status")
    hypotheses = gr.HTML(elem_id="hypotheses")
    hypothesis = gr.Radio([], type="value", label="Attention of hypothesis", elem_id="hypothesis")
    target_token = gr.Radio([], label="Target token: select it to highlight the source tokens it attended to",
                            elem_id="target-token")  # fmt: skip
    heatmap = gr.HTML(elem_id="heatmap")
    translation = gr.State()

    translate_event = dict(
        fn=handlers.translate, inputs=[model, sentence, *settings],
        outputs=[status, hypotheses, hypothesis, target_token, heatmap, translation],
    )  # fmt: skip
    translate_button.click(**translate_event, api_name="translate")
    sentence.submit(**translate_event)
    hypothesis.input(handlers.choose_hypothesis, [translation, hypothesis], [target_token, heatmap])
    target_token.input(handlers.choose_token, [translation, hypothesis, target_token], heatmap)
    return status


def _beam_sweep_panel(handlers: PageHandlers, model, sentence, length_penalty, status) -> None:
    with gr.Accordion(f"Beam size 1–{MAX_BEAMS}: length and score of the best hypothesis", open=False):
        sweep_button = gr.Button("Sweep the beam size", elem_id="sweep")
        sweep_plot = gr.Plot(elem_id="sweep-plot")
    sweep_button.click(handlers.sweep, [model, sentence, length_penalty], [status, sweep_plot], api_name="sweep")


def _side_by_side_panel(handlers: PageHandlers, model, sentence, settings: DecodingControls, status) -> None:
    names = handlers.shelf.names
    with gr.Accordion("Side by side: the same sentence through a second model", open=False):
        right_model = gr.Dropdown(names, value=names[-1], allow_custom_value=True, label="Second model",
                                  elem_id="right-model")  # fmt: skip
        compare_button = gr.Button("Translate with both", elem_id="compare")
        with gr.Row():
            with gr.Column():
                left_text = gr.Textbox(label="First model", interactive=False, elem_id="left-translation")
                left_heatmap = gr.HTML(elem_id="left-heatmap")
            with gr.Column():
                right_text = gr.Textbox(label="Second model", interactive=False, elem_id="right-translation")
                right_heatmap = gr.HTML(elem_id="right-heatmap")
    compare_button.click(
        handlers.side_by_side, [model, right_model, sentence, *settings],
        [status, left_text, left_heatmap, right_text, right_heatmap], api_name="side_by_side",
    )  # fmt: skip


def build_demo(shelf: ModelShelf, examples: list[str] | None = None) -> gr.Blocks:
    """The page: the model and sentence, the decoding panel, then the translation, beam sweep and side-by-side
    panels, all answering in one status line."""
    handlers = PageHandlers(shelf)
    with gr.Blocks(title="RNN encoder–decoder attention") as demo:
        gr.Markdown(INTRODUCTION)
        model = gr.Dropdown(shelf.names, value=shelf.names[0], allow_custom_value=True, label="Model",
                            info="a folder written by train.py or a Hub id", elem_id="model")  # fmt: skip
        sentence = gr.Textbox(label="Source sentence", lines=2, elem_id="sentence")
        if examples:
            gr.Examples([[example] for example in examples], inputs=sentence, label="Example sentences")
        settings = _decoding_controls()
        status = _translation_panel(handlers, model, sentence, settings)
        _beam_sweep_panel(handlers, model, sentence, settings.length_penalty, status)
        _side_by_side_panel(handlers, model, sentence, settings, status)
    return demo
