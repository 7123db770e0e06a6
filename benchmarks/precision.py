"""float32 against bfloat16: the default job (`python train.py`, and the same with `--bf16 true`, nothing else
changed) trained both ways, then each model's test split translated with beam 5 in float32 and in bfloat16.
Reports wall time and peak memory of each run, the Trainer's training target tokens a second, and per model and
decoding type the test BLEU (sacreBLEU) and sentences a second.

    python benchmarks/precision.py --out benchmarks/results/precision.md [-- more train.py flags]

The runs go to `--runs_dir` (default runs/precision/float32 and runs/precision/bfloat16); a run folder that already
holds test_results.json is reused, not trained again (its wall time and memory are then not known: "-").
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from common import REPO, add_corpus_argument, emit, machine, run_measured, test_pairs

from hf_rnn_seq2seq.allocator import keep_freed_memory_for_reuse
from hf_rnn_seq2seq.metrics import load_metric
from hf_rnn_seq2seq.precision import DTYPES
from hf_rnn_seq2seq.translation import BATCH_SIZE, NUM_BEAMS, load_model, translate

PRECISIONS = {"float32": [], "bfloat16": ["--bf16", "true"]}  # train.py's flags for each


def train(run: Path, flags: list[str]) -> tuple[str, str]:
    """Train (unless the folder is complete already); (wall seconds, peak MiB) as table cells."""
    if (run / "test_results.json").exists():
        return "-", "-"
    command = [sys.executable, str(REPO / "train.py"), "--output_dir", str(run), *flags]
    seconds, peak = run_measured(command, dict(os.environ))
    return f"{seconds / 60:.1f} min", f"{peak:.0f}"


def decode(run: Path, dtype: str, sources: list[str], references: list[str]) -> tuple[float, float]:
    """(test BLEU, sentences a second) of the run's model decoded with beam 5 in `dtype`."""
    model, tokenizer = load_model(str(run), dtype=DTYPES[dtype])
    translate(model, tokenizer, sources[:BATCH_SIZE], num_beams=NUM_BEAMS)  # warm-up: oneDNN sets up its kernels
    start = time.perf_counter()
    hypotheses = translate(model, tokenizer, sources, num_beams=NUM_BEAMS)
    speed = len(sources) / (time.perf_counter() - start)
    return load_metric().compute(predictions=hypotheses, references=references)["bleu"], speed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_corpus_argument(parser)
    parser.add_argument("--runs_dir", default="runs/precision")
    parser.add_argument("--out")
    parser.add_argument("train_flags", nargs=argparse.REMAINDER, help="after --: train.py flags for both runs")
    args = parser.parse_args(argv)
    train_flags = [flag for flag in args.train_flags if flag != "--"]
    keep_freed_memory_for_reuse()  # decode as the translate and evaluate commands do (train.py sets it itself)
    sources, references = test_pairs(args.data_dir)
    rows = []
    for trained_in, flags in PRECISIONS.items():
        run = Path(args.runs_dir) / trained_in
        wall, peak = train(run, [*flags, "--data_dir", args.data_dir, *train_flags])
        results = json.loads((run / "train_results.json").read_text())
        tokens = results["train_target_tokens_per_second"]
        for decoded_in in PRECISIONS:
            bleu, speed = decode(run, decoded_in, sources, references)
            rows.append(f"| {trained_in} | {wall} | {peak} | {tokens:,.0f} | {decoded_in} | {bleu:.2f} | {speed:.1f} |")
    emit([
        f"Command: `python benchmarks/precision.py --runs_dir {args.runs_dir} {' '.join(args.train_flags)}`  ",
        f"Machine: {machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; date "
        f"{time.strftime('%Y-%m-%d')}; the default job (Multi30k de→en), test_2016_flickr ({len(sources)} "
        f"sentences), beam {NUM_BEAMS}, batch {BATCH_SIZE}, speed after a warm-up batch, the commands' allocator "
        "settings",
        "",
        "| trained in | train.py wall time | peak memory (MiB) | training target tokens/s | decoded in | test BLEU | "
        "sentences/s |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
        *rows,
    ], args.out)


if __name__ == "__main__":
    main()
