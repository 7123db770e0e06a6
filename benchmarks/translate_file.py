"""Translating a large file with the translate command: a corpus of `--lines` lines (the Multi30k training sources
repeated), greedy and beam 5, with one process and with two (torchrun), timed end to end (model loading included)
with the peak resident memory of all the command's processes together.

    python benchmarks/translate_file.py runs/multi30k-de-en --out benchmarks/results/translate_file.md
"""

import argparse
import gzip
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import add_corpus_argument, emit, machine, run_measured

from hf_rnn_seq2seq.file_translation import WINDOW_LINES
from hf_rnn_seq2seq.translation import NUM_BEAMS

SCRIPT = str(Path(sys.executable).with_name("hf-rnn-seq2seq-translate"))
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


def write_corpus(data_dir: Path, source_lang: str, lines: int, path: Path) -> None:
    """`lines` lines: the training split's sources, over and over."""
    with gzip.open(data_dir / f"train.{source_lang}.gz", "rt", encoding="utf-8") as handle:
        sentences = handle.read().splitlines()
    with open(path, "w", encoding="utf-8") as out:
        for start in range(0, lines, len(sentences)):
            out.write("".join(sentence + "\n" for sentence in sentences[: lines - start]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a folder written by train.py")
    add_corpus_argument(parser)
    parser.add_argument("--source_lang", default="de")
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--max_new_tokens", type=int, default=None)
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--beams", default=f"1,{NUM_BEAMS}", help="comma-separated beam sizes (1: greedy)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="translate_file_") as temporary:
        folder = Path(temporary)
        source = folder / f"corpus.{args.source_lang}"
        write_corpus(Path(args.data_dir), args.source_lang, args.lines, source)
        rows = []
        for beams in map(int, args.beams.split(",")):
            name = "greedy" if beams == 1 else f"beam {beams}"
            for processes in map(int, args.processes.split(",")):
                launcher = [SCRIPT] if processes == 1 else [TORCHRUN, "--nproc_per_node", str(processes), SCRIPT]
                output = folder / f"{beams}-{processes}.out"
                command = [*launcher, args.model, "--input", str(source), "--output", str(output), "--num_beams",
                           str(beams), "--dtype", args.dtype, "--no_progress"]  # fmt: skip
                if args.max_new_tokens:
                    command += ["--max_new_tokens", str(args.max_new_tokens)]
                seconds, peak = run_measured(command, {**os.environ, "PET_STANDALONE": "1"})
                rows.append(f"| {name} | {processes} | {seconds:.0f} | {args.lines / seconds:.1f} | {peak:.0f} |")
                output.unlink()
    emit([
        f"Command: `python benchmarks/translate_file.py {args.model} --lines {args.lines} --dtype {args.dtype} "
        f"--beams {args.beams} --processes {args.processes}`  ",
        f"Machine: {machine()}, torch {torch.__version__}; date {time.strftime('%Y-%m-%d')}; "
        f"{args.lines:,} lines ({args.source_lang}, Multi30k training sources repeated), the translate command with "
        f"--output (windows of {WINDOW_LINES:,} lines), wall time including start-up and model loading",
        "",
        "| decoding | processes | seconds | sentences/s | peak memory, all processes (MiB) |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows,
    ], args.out)


if __name__ == "__main__":
    main()
