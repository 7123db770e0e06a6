"""Translating a file of any size: window by window, resumable after any interruption, shared by several processes.

The input is read `window` lines at a time (each window length-sorted into batches by `translation.translate`), so
memory stays flat in the file's size. A translated window is written whole, atomically, to its own file in the
work folder `OUTPUT.partial/`; the first process appends finished windows to OUTPUT in input order and records in
`OUTPUT.partial/progress.json` how many windows and bytes OUTPUT holds, each append made durable (fsync) before the
record that counts it. After a Ctrl-C, a kill -9 or a power loss the same command resumes: OUTPUT is cut back to the
recorded bytes, windows already translated are not translated again, and the final file is byte-identical to an
uninterrupted run's. When OUTPUT is complete the work folder is removed.

With several processes (torchrun, accelerate launch), process r translates windows r, r + P, r + 2P, ...: a
window's translation depends only on its lines and the recorded settings (sampling is seeded per window), so the
output is the same for any number of processes and any sequence of interruptions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

from tqdm.auto import tqdm

from .text_files import iter_lines

WINDOW_LINES = 20_000  # lines translated together: sorted by length within it, written as one piece
_PROGRESS = "progress.json"


def windows(lines: Iterable[str], window: int) -> Iterator[list[str]]:
    """Consecutive lists of `window` lines (the last one shorter)."""
    if window < 1:
        raise ValueError(f"window must be a positive number of lines, got {window}")
    lines = iter(lines)
    while batch := list(islice(lines, window)):
        yield batch


def as_text(translations: list[str]) -> str:
    """One output line per translation. A line end inside a translation (which a foreign tokenizer could decode)
    becomes a space: it would otherwise shift every later line against its source."""
    return "".join(" ".join(translation.splitlines()) + "\n" for translation in translations)


def scan_input(path: Path) -> tuple[str, int]:
    """(sha256 of the file's lines as text, its number of lines), reading it once; a line that is not UTF-8 is refused
    here, with its number, before anything is translated."""
    digest, count = hashlib.sha256(), 0
    for line in iter_lines(path, allow_empty=True):
        digest.update(line.encode() + b"\n")
        count += 1
    return digest.hexdigest(), count


def _write_durably(path: Path, data: bytes) -> None:
    """`path` holds `data` whole or is left as it was: written beside it, flushed to disk, then renamed over it."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class TranslationJob:
    """One input file translated into one output file, with its work folder and progress record."""

    def __init__(self, input_path: str | Path, output_path: str | Path, settings: dict, window: int = WINDOW_LINES):
        self.input_path, self.output_path = Path(input_path), Path(output_path)
        self.work_folder = self.output_path.with_name(self.output_path.name + ".partial")
        self.window = window
        digest, self.line_count = scan_input(self.input_path)
        # Everything a resumed run must share with the run it continues.
        self.identity = {"input_sha256": digest, "lines": self.line_count, "window": window, **settings}

    @property
    def window_count(self) -> int:
        return -(-self.line_count // self.window)

    def window_path(self, index: int) -> Path:
        return self.work_folder / f"window-{index:09d}.txt"

    def read_progress(self) -> dict:
        return json.loads((self.work_folder / _PROGRESS).read_text())

    def _record(self, merged: int, size: int) -> None:
        record = {"identity": self.identity, "merged_windows": merged, "merged_bytes": size}
        _write_durably(self.work_folder / _PROGRESS, json.dumps(record, indent=1).encode())

    def start_or_resume(self) -> None:
        """(First process only.) Continue the partial run of these same settings, or start afresh: OUTPUT emptied
        and a new record written. A partial run of other settings is refused rather than mixed with this one."""
        if (self.work_folder / _PROGRESS).exists():
            progress = self.read_progress()
            saved = progress["identity"]
            keys = saved.keys() | self.identity.keys()
            differing = sorted(key for key in keys if saved.get(key) != self.identity.get(key))
            if differing:
                raise ValueError(
                    f"{self.output_path} is a partial translation made with other settings ({', '.join(differing)} "
                    f"differ): rerun with the same arguments to resume it, or delete {self.work_folder} to start over"
                )
            size = self.output_path.stat().st_size if self.output_path.exists() else -1
            if size < progress["merged_bytes"]:
                raise ValueError(
                    f"{self.output_path} is shorter than the {progress['merged_bytes']} bytes its progress record "
                    f"counts: delete {self.work_folder} to start over"
                )
            return
        shutil.rmtree(self.work_folder, ignore_errors=True)  # what a start interrupted before its record left
        self.work_folder.mkdir(parents=True)
        self.output_path.write_bytes(b"")
        self._record(0, 0)

    def pending_windows(self, rank: int, processes: int) -> set[int]:
        """This process's share of the windows that are neither in OUTPUT nor translated and waiting."""
        merged = self.read_progress()["merged_windows"]
        return {
            index for index in range(merged, self.window_count)
            if index % processes == rank and not self.window_path(index).exists()
        }  # fmt: skip

    def merge(self) -> int:
        """(First process only.) Append the translated windows that follow OUTPUT's last one, in order; each append is
        on disk before the record counts it, and OUTPUT is first cut back to what the record counts (an append that
        an interruption left uncounted). Returns how many windows OUTPUT now holds."""
        progress = self.read_progress()
        merged, size = progress["merged_windows"], progress["merged_bytes"]
        while (piece := self.window_path(merged)).exists():
            data = piece.read_bytes()
            with open(self.output_path, "r+b") as output:
                output.truncate(size)
                output.seek(size)
                output.write(data)
                output.flush()
                os.fsync(output.fileno())
            merged, size = merged + 1, size + len(data)
            self._record(merged, size)
            piece.unlink()
        return merged

    def run(
        self,
        translate_window: Callable[[list[str], int], list[str]],
        rank: int = 0,
        processes: int = 1,
        barrier: Callable[[], None] = lambda: None,
        progress: bool = True,
    ) -> None:
        """Translate this process's pending windows with `translate_window(lines, window_index)`; the first process
        merges as windows finish and, once every process is done, completes OUTPUT and removes the work folder."""
        if rank == 0:
            self.start_or_resume()
            self.merge()  # windows a previous run finished but did not append
        barrier()
        pending = self.pending_windows(rank, processes)
        barrier()  # every process has its share before the first process appends (and deletes) windows again
        lines_pending = sum(min(self.window, self.line_count - index * self.window) for index in pending)
        with tqdm(
            total=lines_pending, unit="line", disable=not progress or rank != 0, file=sys.stderr, smoothing=0.1,
            desc=f"translating ({processes} processes)" if processes > 1 else "translating",
        ) as bar:
            for index, lines in enumerate(windows(iter_lines(self.input_path, allow_empty=True), self.window)):
                if index not in pending:
                    continue
                _write_durably(self.window_path(index), as_text(translate_window(lines, index)).encode())
                if rank == 0:
                    self.merge()
                bar.update(len(lines))
        barrier()
        if rank == 0:
            merged = self.merge()
            if merged != self.window_count:
                raise RuntimeError(f"{self.window_count - merged} windows of {self.input_path} were not translated")
            shutil.rmtree(self.work_folder)
