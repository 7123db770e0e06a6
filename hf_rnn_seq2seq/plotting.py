"""Figures: attention heatmaps (which source tokens each generated target token attended to) and the beam-size sweep."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .hypotheses import Decoding, translate_with_attention  # noqa: E402

MAX_NEW_TOKENS = 64  # the attention plot's longest translation: its rows stay readable


def attention_matrix(model, tokenizer, sentence: str, max_new_tokens: int = MAX_NEW_TOKENS):
    """Greedy-translate `sentence`; return (source tokens, target tokens, weights (target x source)), the tokens as a
    reader sees them and the target's last one EOS (unless the translation reached `max_new_tokens`)."""
    if model.config.attention_type == "none":
        raise ValueError("attention_type='none' has no attention to plot: the decoder sees a fixed context")
    greedy = Decoding("greedy", max_new_tokens=max_new_tokens)
    translation = translate_with_attention(model, tokenizer, sentence, greedy)
    best = translation.hypotheses[0]
    return translation.source_tokens, best.tokens, best.attention


def attention_figure(source: list[str], target: list[str], weights: np.ndarray) -> plt.Figure:
    """The heatmap: one row per target token, one column per source token, the tokens as tick labels."""
    if weights.shape != (len(target), len(source)):
        raise ValueError(f"weights of shape {weights.shape} do not match {len(target)} x {len(source)} tokens")
    figure, axes = plt.subplots(figsize=(max(4.0, 0.45 * len(source) + 1.5), max(3.0, 0.4 * len(target) + 1.5)))
    image = axes.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(source)), source, rotation=90)
    axes.set_yticks(range(len(target)), target)
    axes.set_xlabel("source")
    axes.set_ylabel("translation")
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    return figure


def plot_attention(source: list[str], target: list[str], weights: np.ndarray, path: str | Path) -> Path:
    """Write the heatmap of `attention_figure` as a PNG."""
    figure = attention_figure(source, target, weights)
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def beam_sweep_figure(points) -> plt.Figure:
    """Length and scores of the best hypothesis against the beam size (`hypotheses.beam_sweep`'s points)."""
    beams = [point.num_beams for point in points]
    figure, (length_axes, score_axes) = plt.subplots(1, 2, figsize=(8, 2.8))
    length_axes.plot(beams, [point.length for point in points], marker="o")
    length_axes.set_ylabel("output tokens (EOS included)")
    score_axes.plot(beams, [point.log_probability for point in points], marker="o", label="log-probability")
    scored = [point for point in points if point.beam_score is not None]
    score_axes.plot([p.num_beams for p in scored], [p.beam_score for p in scored], marker="s", label="beam score")
    score_axes.legend(fontsize="small")
    for axes in (length_axes, score_axes):
        axes.set_xlabel("beam size")
        axes.set_xticks(beams)
    figure.tight_layout()
    return figure
