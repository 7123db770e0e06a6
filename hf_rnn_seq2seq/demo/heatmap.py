"""The HTML the demo's page shows: the hypotheses with their scores, and the attention heatmap as a table (a row per
target token, a column per source token, each cell shaded by its weight, which it shows when hovered). One target row
can be selected: the source tokens it attended to most are highlighted. Plain HTML and CSS (no script), so it renders
the same in the app and in a saved page."""

from __future__ import annotations

from html import escape

import numpy as np

# A source token counts as attended by the selected target token when its weight is at least this share of the
# row's largest weight: the peak, plus the tokens that shared it (a phrase translated together).
ATTENDED_SHARE = 0.5

CSS = """
.attention { border-collapse: collapse; font-size: 0.9rem; }
.attention th { font-weight: normal; padding: 2px 6px; white-space: nowrap; }
.attention thead th { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; }
.attention tbody th { text-align: right; }
.attention td { position: relative; width: 2.2em; height: 1.6em; border: 1px solid #e5e7eb; text-align: center; }
.attention td .weight { visibility: hidden; font-size: 0.75rem; }
.attention td:hover { outline: 2px solid #f59e0b; }
.attention td:hover .weight { visibility: visible; }
.attention .dark { color: white; }
.attention tr.selected th { background: #fde68a; font-weight: bold; }
.attention th.attended { background: #fde68a; font-weight: bold; }
.attended-summary { margin: 0.5em 0; }
.hypotheses { border-collapse: collapse; width: 100%; }
.hypotheses th, .hypotheses td { border-bottom: 1px solid #e5e7eb; padding: 4px 8px; text-align: left; }
"""


def attended(weights: np.ndarray, row: int) -> list[int]:
    """Columns that target token `row` attended to (see ATTENDED_SHARE), strongest first."""
    row_weights = weights[row]
    columns = np.flatnonzero(row_weights >= ATTENDED_SHARE * row_weights.max())
    return sorted(columns.tolist(), key=lambda column: -row_weights[column])


def heatmap_html(source: list[str], target: list[str], weights: np.ndarray, selected: int | None = None) -> str:
    """The table for `weights` (target x source); with `selected`, that target row and the source tokens it attended
    to are highlighted and listed above the table."""
    if weights.shape != (len(target), len(source)):
        raise ValueError(f"weights of shape {weights.shape} do not match {len(target)} x {len(source)} tokens")
    highlighted = set(attended(weights, selected)) if selected is not None else set()
    header = "".join(
        f'<th class="source-token{" attended" if column in highlighted else ""}" data-col="{column}">'
        f"{escape(token)}</th>"
        for column, token in enumerate(source)
    )
    rows = []
    for row, token in enumerate(target):
        cells = "".join(
            f'<td data-row="{row}" data-col="{column}" data-weight="{weight:.2f}" '
            f'title="{escape(token)} → {escape(source[column])}: {weight:.2f}" '
            f'style="background: rgba(37, 99, 235, {weight:.3f})"{" class=dark" if weight > 0.5 else ""}>'
            f'<span class="weight">{weight:.2f}</span></td>'
            for column, weight in enumerate(weights[row].tolist())
        )
        selected_class = ' class="selected"' if row == selected else ""
        rows.append(f'<tr{selected_class}><th class="target-token" data-row="{row}">{escape(token)}</th>{cells}</tr>')
    summary = ""
    if selected is not None:
        listed = ", ".join(
            f"{escape(source[column])} ({weights[selected, column]:.2f})" for column in attended(weights, selected)
        )
        summary = f'<p class="attended-summary"><b>{escape(target[selected])}</b> attended to: {listed}</p>'
    return (
        f'{summary}<table class="attention" data-rows="{len(target)}" data-cols="{len(source)}">'
        f'<thead><tr><th></th>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def hypotheses_html(hypotheses) -> str:
    """Every hypothesis in generate()'s order with its log-probability and, for beam search, the length-normalised
    score the beams were ranked by."""
    rows = "".join(
        f"<tr><td>{rank}</td><td class=\"text\">{escape(hypothesis.text)}</td><td>{hypothesis.log_probability:.3f}</td>"
        f"<td>{'' if hypothesis.beam_score is None else f'{hypothesis.beam_score:.3f}'}</td></tr>"
        for rank, hypothesis in enumerate(hypotheses, start=1)
    )
    return (
        '<table class="hypotheses"><thead><tr><th>#</th><th>translation</th><th>log-probability</th>'
        f"<th>beam score</th></tr></thead><tbody>{rows}</tbody></table>"
    )
