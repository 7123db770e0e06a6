"""The README and the model card quote the committed benchmark tables: a number quoted there equals the table's."""

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
MODEL_CARD = (REPO_ROOT / "model_card.md").read_text(encoding="utf-8")


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every Markdown table row but the separator rows; bold marks and thousands commas removed."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            cells = [cell.strip().strip("*") for cell in line.strip("|").split("|")]
            rows.append([cell.replace(",", "") if re.fullmatch(r"[\d,]+(\.\d+)?", cell) else cell for cell in cells])
    return rows


def side_by_side() -> dict[str, list[str]]:
    """system -> [parameters, tok/s, × JoeyNMT, s/epoch, MiB, sent/s, × JoeyNMT, ...] of the committed table."""
    return {row[0]: row[1:] for row in table_rows((RESULTS / "joeynmt_side_by_side.md").read_text())[1:]}


def test_the_readme_side_by_side_table_equals_the_benchmark_table():
    table = side_by_side()
    quoted = [row for row in table_rows(README) if row[0].startswith(("JoeyNMT 2.3", "ours,"))]
    assert [row[0] for row in quoted] == list(table)
    for row in quoted:
        measured = table[row[0]]
        assert row[1:] == [measured[1], measured[2], measured[5], measured[6]], row[0]


def test_the_ratios_in_the_prose_and_the_model_card_are_the_table_s():
    table = side_by_side()
    imported, configured = table["ours, JoeyNMT's trained weights imported"], table["ours, JoeyNMT's model trained"]
    fast = table["ours, Luong general (fast path, another model)"]
    card_line = " ".join(MODEL_CARD.split())
    assert f"{configured[2]}× its training throughput with its very model" in card_line
    assert f"and {fast[2]}× with Luong attention without input feeding" in card_line
    assert f"decoding steps {imported[6]}× its speed ({fast[6]}× for the Luong model)" in card_line
    prose = " ".join(README.split())
    assert f"On the same weights our beam search is {imported[6]}× JoeyNMT's" in prose


def test_the_quoted_translation_speeds_are_the_table_s():
    rows = {row[0]: row[1] for row in table_rows((RESULTS / "translate_speed.md").read_text())}
    overhead = re.search(r"overhead x(\d+\.\d+)", (RESULTS / "translate_speed.md").read_text()).group(1)
    prose = " ".join(README.split())
    assert f"{rows['greedy']} sentences/s greedy, {rows['beam 5']} with beam 5" in prose
    assert f"`generate()` costs ×{overhead} the time" in prose


def test_the_headline_bleu_is_the_quality_table_s():
    quality = table_rows((RESULTS / "quality.md").read_text())
    default_run = next(row for row in quality if row[1].startswith("`python train.py` ("))
    validation, test, lowercased, chrf = default_run[2:6]
    assert [test, lowercased, chrf, validation] == next(
        row[1:5] for row in table_rows(README) if row[0].startswith("de→en, `python train.py`")
    )
    card_line = " ".join(MODEL_CARD.split())
    assert f"test sacreBLEU {test} (cased; {lowercased} lower-cased), chrF {chrf}" in card_line


def test_every_quality_row_of_the_readme_is_a_row_of_the_quality_table():
    quality = table_rows((RESULTS / "quality.md").read_text())
    measured = {(row[0], *row[3:6], row[2]) for row in quality if len(row) == 9}  # direction, test, lc, chrF, val
    quoted = [row for row in table_rows(README) if row[0][:5] in ("de→en", "fr→en", "en→de") and len(row) == 6]
    assert len(quoted) == 4
    for row in quoted:
        assert (row[0][:5], *row[1:5]) in measured, row
    tests = {direction: test for direction, test, *_ in measured}
    card_line = " ".join(MODEL_CARD.split())
    assert f"The same recipe: en→de {tests['en→de']}, fr→en {tests['fr→en']}." in card_line


def test_the_quoted_compute_efficiency_is_the_train_speed_table_s():
    text = (RESULTS / "train_speed.md").read_text()
    peak = re.search(r"float32 matmul peak (\d+) GFLOP/s", text).group(1)
    fast_path = next(row for row in table_rows(text) if row[:2] == ["luong_general", "anchor"])
    prose = " ".join(README.split())
    assert f"the fast path at {fast_path[6]} GFLOP/s, {fast_path[7]} of the {peak} GFLOP/s" in prose


def test_the_quoted_attention_story_is_the_attention_table_s():
    rows = {row[1]: row for row in table_rows((RESULTS / "attention_story.md").read_text()) if len(row) == 9}
    whole_test_set = {attention: rows[attention][-1] for attention in ("none", "luong_general", "bahdanau")}
    prose = " ".join(README.split())
    assert (
        f"(whole test set: none {whole_test_set['none']}, Luong general {whole_test_set['luong_general']}, "
        f"Bahdanau {whole_test_set['bahdanau']})"
    ) in prose


def test_the_quoted_demo_speeds_are_the_table_s():
    (row,) = [row for row in table_rows((RESULTS / "demo_speed.md").read_text()) if row[0] == "`runs/multi30k-de-en`"]
    start, median, _, slowest = row[1:5]
    prose = " ".join(README.split())
    quote = f"the page serves {start} s after the command starts, and a beam-5 translation request takes {median} s"
    assert quote in prose
    assert f"(median over {row[5]} test sentences; slowest {slowest} s)" in prose


def test_the_quoted_batching_speeds_are_the_table_s():
    rows = table_rows((RESULTS / "batching_speed.md").read_text())
    medians = {row[0].split(" (")[0]: f"{int(row[2]):,}" for row in rows if " batches (" in row[0]}
    prose = " ".join(README.split())
    quote = f"train at a median {medians['token batches']} target tokens/s against {medians['sentence batches']}"
    assert quote in prose
