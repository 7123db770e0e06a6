"""Attention heatmaps: which source tokens each generated target token attended to."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def attention_matrix(model, tokenizer, sentence: str, max_new_tokens: int = 64):
    """Greedy-translate `sentence`; return (source tokens, target tokens, weights (target x source)).

    The weights are the decoder's cross-attention at each generated step (`generate(output_attentions=True)`);
    the last target token is EOS.
    """
    if model.config.attention_type == "none":
        raise ValueError("attention_type='none' has no attention to plot: the decoder sees a fixed context")
    batch = tokenizer([sentence], return_tensors="pt").to(model.device)
    with torch.no_grad():
        out = model.generate(
            **batch, num_beams=1, do_sample=False, max_new_tokens=max_new_tokens,
            output_attentions=True, return_dict_in_generate=True,
        )
    generated = out.sequences[0, 1:].tolist()  # without the start token
    if tokenizer.eos_token_id in generated:
        generated = generated[: generated.index(tokenizer.eos_token_id) + 1]
    weights = torch.cat([step[0][0, 0] for step in out.cross_attentions[: len(generated)]], dim=0)  # (T, S)
    source = reader_tokens(tokenizer, tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist()))
    target = reader_tokens(tokenizer, tokenizer.convert_ids_to_tokens(generated))
    return source, target, weights.cpu().numpy()


def reader_tokens(tokenizer, tokens: list[str]) -> list[str]:
    """Tokens as a reader sees them: the text each adds to the decoded sentence, without the tokenizer's own
    word-boundary marks ("▁Mann" is "Mann"), and a piece that continues the previous token's word marked "##"
    ("Männ", "##er"), whatever the tokenizer's convention (Metaspace, a "</w>" suffix, ...). Special tokens stay."""
    labels, pieces, text = [], [], ""
    for token in tokens:
        if token in tokenizer.all_special_tokens:
            labels.append(token)
            continue
        pieces.append(token)
        decoded = tokenizer.convert_tokens_to_string(pieces)
        if not decoded.startswith(text):  # a decoder that rewrites earlier text: show the token itself
            labels.append(token)
        else:
            added = decoded[len(text) :]
            starts_word = not text or added[:1].isspace() or not added
            labels.append(added.strip() if starts_word else f"##{added.strip()}")
        text = decoded
    return labels


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
