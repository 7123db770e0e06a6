"""The README and the results index quote the committed benchmark tables: every figure they quote is read here from
its table in benchmarks/results/ and must appear as quoted."""

import re
from itertools import product
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
INDEX = (RESULTS / "README.md").read_text(encoding="utf-8")
DIRECTIONS = ("de→en", "fr→en", "en→de")


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every Markdown table row but the separator rows; bold marks and thousands commas removed."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            cells = [cell.strip().strip("*") for cell in line.strip("|").split("|")]
            rows.append([cell.replace(",", "") if re.fullmatch(r"[\d,]+(\.\d+)?", cell) else cell for cell in cells])
    return rows


def results_table(name: str) -> list[list[str]]:
    return table_rows((RESULTS / name).read_text(encoding="utf-8"))


def dated_sections(name: str) -> list[str]:
    """The "## date: ..." sections of a results file that keeps its runs newest first, in that order."""
    return (RESULTS / name).read_text(encoding="utf-8").split("\n## ")[1:]


def assert_quoted(document: str, quote: str) -> None:
    """`quote` appears in `document`, line breaks and runs of spaces read as one space."""
    assert quote in " ".join(document.split()), f"not quoted as measured: {quote!r}"


def bleu_in(cell: str, label: str) -> str:
    """The score in a cell such as "40.76 (42.41 beam 5)" for label "beam 5"."""
    return re.search(rf"(\d+\.\d+) {label}", cell).group(1)


# quality.md: the runs' table (9 columns) and the table of every configuration tried (5 columns).
QUALITY = results_table("quality.md")
RUNS = [row for row in QUALITY if len(row) == 9 and row[0] in DIRECTIONS]
CONFIGURATIONS = [row for row in QUALITY if len(row) == 5 and row[1] in DIRECTIONS]
DEFAULT_JOB = next(row for row in RUNS if row[1].startswith("`python train.py` ("))  # the newest run of the default


def run_figures(row: list[str]) -> dict[str, str]:
    direction, command, validation, test, lowercased, chrf, _, _, minutes = row
    command = re.sub(r" \(.*\)$", "", command)  # the date and notes after the command
    return dict(direction=direction, command=command, val=validation, test=test, lc=lowercased, chrf=chrf)


def test_the_readme_result_table_rows_are_rows_of_the_quality_table():
    quoted = [row for row in table_rows(README) if row[0] in DIRECTIONS]
    assert quoted and quoted[0][:2] == ["de→en", "`python train.py`"]  # the default job first
    measured = [run_figures(row) for row in RUNS]
    for direction, command, test, lowercased, chrf, validation in quoted:
        figures = dict(direction=direction, command=command, val=validation, test=test, lc=lowercased, chrf=chrf)
        assert figures in measured, figures
    assert run_figures(DEFAULT_JOB) == dict(
        zip(("direction", "command", "test", "lc", "chrf", "val"), quoted[0])
    ), "the README's default-job row is not the newest run of the default job"


def test_the_readme_quotes_the_default_job_s_training_time():
    assert_quoted(README, f"The de→en run took {DEFAULT_JOB[8]} minutes of training on 2 CPU cores.")


def test_the_readme_quotes_the_default_job_s_float32_score_on_an_amd_cpu():
    # The newest training table of precision.md: its float32-trained, float32-decoded row (7 columns).
    section, row = next(
        (section, row) for section in dated_sections("precision.md") for row in table_rows(section)
        if len(row) == 7 and row[0] == row[4] == "float32"
    )  # fmt: skip
    assert "AMD EPYC" in section
    assert_quoted(README, f"Another CPU rounds differently: 2 AMD EPYC cores gave {row[5]}")


def test_the_index_quality_table_rows_are_rows_of_the_quality_table():
    quoted = [row for row in table_rows(INDEX) if row[0] in DIRECTIONS]
    assert len(quoted) == 5
    measured = [run_figures(row) for row in RUNS]
    for direction, command, validation, test, lowercased, chrf in quoted:
        command = re.sub(r" \(.*\)$", "", command)
        figures = dict(direction=direction, command=command, val=validation, test=test, lc=lowercased, chrf=chrf)
        assert figures in measured, figures
    assert quoted[0][3] == DEFAULT_JOB[3]


def default_runs() -> list[tuple[str, str]]:
    """(validation BLEU with beam 5, test BLEU) of every de→en run of the default recipe, unchanged."""
    runs = [(bleu_in(row[3], "beam 5"), row[4]) for row in CONFIGURATIONS
            if row[0].startswith("default recipe") and not row[0].startswith("default recipe with") and row[1] == "de→en"]
    return [*runs, (DEFAULT_JOB[2], DEFAULT_JOB[3])]


def test_the_index_quotes_the_run_to_run_spread_and_the_recipe_changes():
    runs = default_runs()
    tests = sorted(float(test) for _, test in runs)
    assert_quoted(INDEX, f"scored test {tests[0]:.2f}–{tests[-1]:.2f}.")
    best_default = max(float(validation) for validation, _ in runs)
    assert_quoted(INDEX, f"against the default runs' best of {best_default:.2f})")
    changes = {row[0]: row for row in CONFIGURATIONS if row[0].startswith("default recipe with")}
    (embeddings,) = [row for name, row in changes.items() if "with embeddings 512" in name]
    (encoder,) = [row for name, row in changes.items() if "with encoder 2×512" in name]
    parameters = [re.search(r"\((\d+\.\d+M) parameters", row[0]).group(1) for row in (embeddings, encoder)]
    assert_quoted(
        INDEX,
        f"embeddings 512 scored {bleu_in(embeddings[3], 'beam 5')} ({parameters[0]} parameters) and an encoder of 512 "
        f"per direction {bleu_in(encoder[3], 'beam 5')} ({parameters[1]}), both slower to train.",
    )
    for row in (embeddings, encoder):
        assert float(bleu_in(row[3], "beam 5")) > best_default
    others = [row for row in changes.values() if row is not embeddings and row is not encoder]
    assert len(others) == 8  # label smoothing, dropout 0.2 and 0.4, BPE 16k and 4k, untied (twice), input feeding
    for row in others:
        assert float(bleu_in(row[3], "beam 5")) < best_default, row[0]
    assert_quoted(INDEX, "all scored below the best default run.")


def test_the_index_quotes_the_decoding_sweep():
    text = (RESULTS / "decoding_sweep.md").read_text(encoding="utf-8")
    sweep = [row for row in table_rows(text) if len(row) == 5 and row[3] != "val BLEU"]
    defaults = next(row for row in sweep if row[:3] == ["final weights", "5", "1.0"])
    gain = max(float(row[3]) for row in sweep) - float(defaults[3])
    best_test = re.search(r"test BLEU with it: \*\*(\d+\.\d+)\*\*", text).group(1)
    (third_run,) = [row for row in CONFIGURATIONS if row[0].startswith("default recipe, a third run")]
    assert_quoted(INDEX, f"{len(sweep)} settings on validation. None raises validation BLEU by more than {gain:.2f}")
    assert_quoted(INDEX, f"The setting best on validation scored {best_test} on test against {third_run[4]} with the")
    assert float(best_test) - float(third_run[4]) < max(float(t) for _, t in default_runs()) - min(
        float(t) for _, t in default_runs()
    )  # "less than the run-to-run spread"


def side_by_side() -> dict[str, list[str]]:
    """system -> [parameters, tok/s, × JoeyNMT, s/epoch, MiB, sent/s, × JoeyNMT, ...] of the newest committed table
    (the file's first dated section)."""
    return {row[0]: row[1:] for row in table_rows(dated_sections("joeynmt_side_by_side.md")[0])[1:]}


def test_the_index_side_by_side_table_equals_the_benchmark_table():
    table = side_by_side()
    quoted = [row for row in table_rows(INDEX) if row[0].startswith(("JoeyNMT 2.3", "ours,"))]
    assert [row[0] for row in quoted] == list(table)
    for row in quoted:
        measured = table[row[0]]
        assert row[1:] == [measured[1], measured[2], measured[5], measured[6]], row[0]


def test_the_side_by_side_ratio_in_the_prose_is_the_table_s():
    imported = side_by_side()["ours, JoeyNMT's trained weights imported"]
    assert_quoted(INDEX, f"On the same weights our beam search is {imported[6]}× JoeyNMT's")


def test_the_quoted_translation_speeds_are_the_table_s():
    text = (RESULTS / "translate_speed.md").read_text(encoding="utf-8")
    rows = {row[0]: row[1] for row in table_rows(text)}
    overhead = re.search(r"overhead x(\d+\.\d+)", text).group(1)
    assert_quoted(INDEX, f"{rows['greedy']} sentences/s greedy, {rows['beam 5']} with beam 5")
    assert_quoted(INDEX, f"`generate()` costs ×{overhead} the time")


def test_the_quoted_million_line_translation_times_are_the_translate_file_table_s():
    rows = {}  # (decoding, processes) -> the newest row measured on a million lines
    for section in dated_sections("translate_file.md"):
        if "1,000,000 lines" in section.splitlines()[0]:
            for row in table_rows(section)[1:]:
                rows.setdefault((row[0], row[1]), row)
    (greedy_1, greedy_2, beam_1, beam_2) = (rows[key] for key in product(("greedy", "beam 5"), ("1", "2")))

    def minutes(row: list[str]) -> int:
        return round(float(row[2]) / 60)

    peak = max(int(rows[(decoding, "1")][4]) for decoding in ("greedy", "beam 5"))
    assert_quoted(
        (REPO_ROOT / "docs" / "inference.md").read_text(encoding="utf-8"),
        f"a million lines take {minutes(greedy_1)} minutes greedy with one process ({greedy_1[3]} sentences/s) and "
        f"{minutes(greedy_2)} with two ({greedy_2[3]}); with beam 5, {minutes(beam_1)} minutes with one "
        f"({beam_1[3]}) and {minutes(beam_2)} with two ({beam_2[3]}); one process holds at most {peak} MiB",
    )


def test_the_quoted_compute_efficiency_is_the_train_speed_table_s():
    text = (RESULTS / "train_speed.md").read_text(encoding="utf-8")
    peak = re.search(r"float32 matmul peak (\d+) GFLOP/s", text).group(1)
    fast_path = next(row for row in table_rows(text) if row[:2] == ["luong_general", "anchor"])
    assert_quoted(INDEX, f"at the anchor size runs at {fast_path[6]} GFLOP/s, {fast_path[7]} of the {peak} GFLOP/s")


def test_the_quoted_attention_story_is_the_attention_table_s():
    table = results_table("attention_story.md")
    header = table[0]
    rows = {row[1]: row for row in table if len(row) == 9}
    none, attended = rows["none"], [rows["luong_general"], rows["bahdanau"]]

    def gaps(column: int) -> str:
        values = sorted(float(row[column]) - float(none[column]) for row in attended)
        return f"{values[0]:.1f}–{values[-1]:.1f}"

    assert header[4] == "1–10 (528)" and header[6] == "16–20 (82)"
    assert_quoted(INDEX, f"{gaps(4)} BLEU on sentences of up to 10 words, {gaps(6)} on 16–20 words")
    assert_quoted(
        INDEX,
        f"(whole test set: none {none[-1]}, Luong general {rows['luong_general'][-1]}, "
        f"Bahdanau {rows['bahdanau'][-1]})",
    )
    longest = re.fullmatch(r"21\+ \((\d+)\)", header[7]).group(1)
    assert_quoted(INDEX, f"The 21+ bucket holds {longest} sentences")


def test_the_quoted_demo_speeds_are_the_table_s():
    (row,) = [row for row in results_table("demo_speed.md") if row[0] == "`runs/multi30k-de-en`"]
    start, median, _, slowest, sentences = row[1:6]
    assert_quoted(
        INDEX, f"the page serves {start} s after the command starts, and a beam-5 translation request takes {median} s"
    )
    assert_quoted(INDEX, f"(median over {sentences} test sentences; slowest {slowest} s)")


def test_the_quoted_batching_speeds_are_the_table_s():
    rows = results_table("batching_speed.md")
    medians = {row[0].split(" (")[0]: f"{int(row[2]):,}" for row in rows if " batches (" in row[0]}
    quote = f"train at a median {medians['token batches']} target tokens/s against {medians['sentence batches']}"
    assert_quoted(INDEX, quote)
    (tokens,) = [row for row in RUNS if "--max_tokens_per_batch 1070" in row[1]]
    assert_quoted(INDEX, f"the token-batch run of the default recipe scored test BLEU {tokens[3]}")


def scale_rows() -> dict[tuple[str, str], list[str]]:
    """(pairs, "first" or "second") -> the row of scale.md."""
    return {(row[0], row[1].split()[0]): row for row in results_table("scale.md")[1:]}


@pytest.mark.parametrize("document", ["README", "INDEX"])
def test_the_quoted_large_corpus_figures_are_the_scale_table_s(document):
    rows = scale_rows()
    first, second = rows[("10000000", "first")], rows[("10000000", "second")]
    if document == "README":
        assert_quoted(
            README,
            f"At 10M pairs, the first run peaked at {first[8]} GB of memory and a second run reached its first training "
            f"step in {second[2]} s",
        )
        return
    before_first, before_second = rows[("1000000", "first")], rows[("1000000", "second")]
    share = round(100 * float(first[6]) / float(first[7]))
    assert_quoted(INDEX, f"at 10M pairs, {float(first[2]) / 60:.1f} minutes from the start to the first training step")
    assert_quoted(INDEX, f"with preprocessing at {share}% of the speed of the bare Rust tokenizer")
    assert_quoted(INDEX, f"reaches its first step in {second[2]} s")
    growth = round(100 * (float(first[8]) / float(before_first[8]) - 1))
    second_growth = round(100 * (float(second[8]) / float(before_second[8]) - 1))
    assert_quoted(
        INDEX,
        f"peak memory {first[8]} GB, {growth}% more than at 1M pairs (the second run's median: {second[8]} GB, "
        f"{second_growth}% more)",
    )


def test_the_readme_onnx_table_is_the_benchmark_s():
    """README: runtime | test BLEU, beam 5 | beam-5 sentences/s | ms, 15-word sentence alone, greedy | install MiB."""
    measured = {(row[0], row[1]): row for row in results_table("onnx_speed.md") if len(row) == 7}
    quoted = [row for row in table_rows(README) if row[0].startswith(("PyTorch float32", "onnxruntime"))]
    assert [row[0] for row in quoted] == ["PyTorch float32", "onnxruntime float32", "onnxruntime int8"]
    for runtime, bleu, sentences_per_second, milliseconds, mib in quoted:
        beam, greedy = measured[(runtime, "beam 5")], measured[(runtime, "greedy")]
        assert [bleu, sentences_per_second, milliseconds, mib] == [beam[2], beam[3], greedy[5], beam[6]], runtime
