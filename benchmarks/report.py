"""What every benchmark script does with its results table: print it, and write it to `--out` when given."""

from pathlib import Path


def emit(lines: list[str], out: str | Path | None) -> str:
    table = "\n".join(lines) + "\n"
    print(table)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(table)
    return table
