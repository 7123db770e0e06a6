"""What the benchmark scripts share: where the repository and the default corpus are, and what they do with a table.

The scripts run as `python benchmarks/NAME.py`, which puts this folder first on Python's import path: they import
this module as `common`.
"""

from pathlib import Path

from hf_rnn_seq2seq.data import DEFAULT_DATA_DIR

REPO = Path(__file__).resolve().parents[1]


def add_corpus_argument(parser) -> None:
    """`--data_dir`: a folder of {split}.{lang}[.gz] files (Multi30k layout), by default train.py's."""
    parser.add_argument("--data_dir", default=str(DEFAULT_DATA_DIR), help="Multi30k-layout corpus folder")


def emit(lines: list[str], out: str | Path | None) -> str:
    """Print the results table, and write it to `out` when given."""
    table = "\n".join(lines) + "\n"
    print(table)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(table)
    return table
