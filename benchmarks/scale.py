"""train.py on corpora of 0.1M to 10M pairs: time to the first training step, each preparation stage, peak memory,
the on-disk cache, and the same for a second run on the same files (which reuses the cache).

The corpora are French→English pairs we have (Multi30k's 29,000 and Tatoeba's 167,000), repeated and shuffled with
a fixed seed up to the size, written as gzip files in the {split}.{lang}.gz layout to a temporary folder (Multi30k's
validation and test splits beside them). Each run is the default recipe with `--max_steps 3`, in a fresh process
with its own `datasets` cache; the second run is repeated (3 times by default) and its median reported, since one
size's peak varies from run to run by the size of one buffer of the first training step. Peak memory is the largest
proportional set size (PSS) of train.py and its worker processes together, sampled every 50 ms (shared pages counted
once), and of that the anonymous part (what is not a reclaimable page of a file, such as the memory-mapped Arrow
tables). The floor: the trained tokenizer's bare `encode_batch` (Rust, all cores) on the first million of the same
pairs, both sides, in the same run.

    python benchmarks/scale.py                      # 0.1M, 1M, 3M, 10M; writes benchmarks/results/scale.md and .png
    python benchmarks/scale.py --sizes 100000 1000000 --second-runs 1 --out /tmp/scale.md

Run it alone: another job on the machine slows every stage.
"""

import argparse
import gzip
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from common import REPO, emit, work_folder

MULTI30K = REPO.parent / "shared" / "data" / "multi30k"
TATOEBA = REPO.parent / "shared" / "data" / "tatoeba-fra-eng" / "fra.txt.gz"
FLOOR_PAIRS = 1_000_000


def base_pairs() -> list[tuple[str, str]]:
    """Multi30k's training pairs and Tatoeba's, French→English."""
    with gzip.open(MULTI30K / "train.fr.gz", "rt", encoding="utf-8") as fr, gzip.open(
        MULTI30K / "train.en.gz", "rt", encoding="utf-8"
    ) as en:
        pairs = [(f.rstrip("\n"), e.rstrip("\n")) for f, e in zip(fr, en)]
    with gzip.open(TATOEBA, "rt", encoding="utf-8") as tatoeba:
        for line in tatoeba:
            english, french = line.rstrip("\n").split("\t")[:2]
            pairs.append((french, english))
    return pairs


def write_corpus(folder: Path, size: int, pairs: list[tuple[str, str]]) -> None:
    """`size` pairs: `pairs` in a new seeded order each round, as train.{fr,en}.gz; Multi30k's val and test."""
    folder.mkdir(parents=True)
    rng = random.Random(size)
    with gzip.open(folder / "train.fr.gz", "wt", encoding="utf-8", compresslevel=1) as fr, gzip.open(
        folder / "train.en.gz", "wt", encoding="utf-8", compresslevel=1
    ) as en:
        written = 0
        while written < size:
            order = list(range(len(pairs)))
            rng.shuffle(order)
            chunk = [pairs[i] for i in order[: size - written]]
            fr.write("".join(f + "\n" for f, _ in chunk))
            en.write("".join(e + "\n" for _, e in chunk))
            written += len(chunk)
    for stem in ("val", "test_2016_flickr"):
        for lang in ("fr", "en"):
            shutil.copy(MULTI30K / f"{stem}.{lang}.gz", folder / f"{stem}.{lang}.gz")


def tree_memory(root: psutil.Process) -> tuple[int, int]:
    """(PSS, anonymous PSS) in bytes of `root` and its descendants: proportional set sizes, so the pages forked
    workers share with train.py (torch's libraries, the model) count once, not once per process."""
    totals = [0, 0]
    for member in [root, *root.children(recursive=True)]:
        try:
            with open(f"/proc/{member.pid}/smaps_rollup") as rollup:
                fields = dict(line.split(":", 1) for line in rollup.read().splitlines()[1:])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # ended meanwhile
        totals[0] += int(fields["Pss"].split()[0]) * 1024
        totals[1] += int(fields["Pss_Anon"].split()[0]) * 1024
    return totals[0], totals[1]


def peak_memory_of(process: subprocess.Popen, stop: threading.Event, peak: list[int]) -> None:
    """Sample `tree_memory` of `process` every 50 ms until `stop`; keep the largest of each in `peak`."""
    root = psutil.Process(process.pid)
    while not stop.is_set():
        try:
            pss, anonymous = tree_memory(root)
        except psutil.NoSuchProcess:
            return
        peak[0], peak[1] = max(peak[0], pss), max(peak[1], anonymous)
        time.sleep(0.05)


def run_train(corpus: Path, work: Path, cache: Path, log: Path) -> dict:
    out = work / "run"
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable, str(REPO / "train.py"), "--data_dir", str(corpus), "--source_lang", "fr", "--target_lang",
        "en", "--output_dir", str(out), "--do_train", "--max_steps", "3", "--eval_strategy", "no",
        "--save_strategy", "no", "--logging_steps", "1", "--disable_tqdm", "True",
    ]  # fmt: skip
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache)}
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as output:
        process = subprocess.Popen(command, cwd=work, env=env, stdout=output, stderr=subprocess.STDOUT)
        stop, peak = threading.Event(), [0, 0]
        sampler = threading.Thread(target=peak_memory_of, args=(process, stop, peak))
        sampler.start()
        code = process.wait()
        stop.set()
        sampler.join()
    if code != 0:
        raise SystemExit(f"train.py failed ({code}); see {log}")
    results = json.loads((out / "train_results.json").read_text())
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    results["peak_gb"], results["peak_anonymous_gb"] = peak[0] / 2**30, peak[1] / 2**30
    results["cache_gb"] = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 2**30
    return results


def encode_floor(corpus: Path, tokenizer_file: Path) -> float:
    """Pairs per second of the bare tokenizer's encode_batch on the first FLOOR_PAIRS pairs, both sides."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    sides = []
    for lang in ("fr", "en"):
        with gzip.open(corpus / f"train.{lang}.gz", "rt", encoding="utf-8") as handle:
            sides.append([line.rstrip("\n") for _, line in zip(range(FLOOR_PAIRS), handle)])
    start = time.perf_counter()
    for side in sides:
        for begin in range(0, len(side), 10_000):
            tokenizer.encode_batch(side[begin : begin + 10_000])
    return len(sides[0]) / (time.perf_counter() - start)


def measure(size: int, work: Path, pairs, second_runs: int) -> dict:
    """A first run on a corpus of `size` pairs, then `second_runs` runs on the cache it wrote."""
    corpus, cache = work / f"corpus-{size}", work / f"cache-{size}"
    if not corpus.exists():  # written whole or not at all: an interrupted write is not taken for a corpus
        partial = work / f"partial-corpus-{size}"
        shutil.rmtree(partial, ignore_errors=True)
        write_corpus(partial, size, pairs)
        partial.rename(corpus)
    runs = [run_train(corpus, work, cache, work / f"train-{size}-{attempt}.log")
            for attempt in range(1, 2 + second_runs)]  # fmt: skip
    floor = encode_floor(corpus, work / "run" / "tokenizer.json")
    shutil.rmtree(cache)
    row = {"size": size, "runs": runs, "floor": floor}
    print(json.dumps(row), flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--work", type=Path, help="Folder for corpora, caches and runs, kept after the run (default: "
                        "a temporary one, removed)")
    parser.add_argument("--second-runs", type=int, default=3, help="Runs on the cache the first run wrote (median)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scale.md"))
    args = parser.parse_args()
    pairs = base_pairs()
    with work_folder(args.work, "scale_") as work:
        rows = [measure(size, work, pairs, args.second_runs) for size in args.sizes]
    emit(table(rows, " ".join(sys.argv[1:])), args.out)
    plot(rows, Path(args.out).with_suffix(".png"))


def table(rows: list[dict], arguments: str) -> list[str]:
    lines = [
        f"# train.py on large corpora (`python benchmarks/scale.py {arguments}`, {time.strftime('%Y-%m-%d')}, 2 CPU "
        "cores)",
        "",
        "| pairs | run | to first step (s) | reading (s) | tokenizer (s) | tokenization + cleaning (s) | preprocessing "
        "pairs/s | bare encode_batch pairs/s | peak memory PSS (GB) | of it anonymous (GB) | cache (GB) | each run's "
        "peak (GB) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        names = ("first", f"second (median of {len(row['runs']) - 1})")
        for name, run in zip(names, first_and_second(row["runs"])):
            preprocessing = run["reading_seconds"] + run["tokenization_seconds"]
            lines.append(
                f"| {row['size']:,} | {name} | {run['seconds_to_first_step']:.1f} | {run['reading_seconds']:.1f} | "
                f"{run['tokenizer_seconds']:.1f} | {run['tokenization_seconds']:.1f} | "
                f"{row['size'] / preprocessing:,.0f} | {row['floor']:,.0f} | {run['peak_gb']:.2f} | "
                f"{run['peak_anonymous_gb']:.2f} | {run['cache_gb']:.2f} | {run['each_peak_gb']} |"
            )
    return lines


def first_and_second(runs: list[dict]) -> list[dict]:
    """The first run, and the median of each figure over the second runs; each with its runs' peaks listed."""
    figures = [key for key, value in runs[1].items() if isinstance(value, float | int)]
    second = {key: statistics.median(run[key] for run in runs[1:]) for key in figures}
    second["each_peak_gb"] = ", ".join(f"{run['peak_gb']:.2f}" for run in runs[1:])
    return [{**runs[0], "each_peak_gb": f"{runs[0]['peak_gb']:.2f}"}, second]


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [row["size"] for row in rows]
    figure, (memory, seconds) = plt.subplots(1, 2, figsize=(10, 4))
    summaries = [first_and_second(row["runs"]) for row in rows]
    for index, name in enumerate(("first run", "second run (median)")):
        memory.plot(sizes, [runs[index]["peak_gb"] for runs in summaries], marker="o", label=f"{name}, PSS")
        memory.plot(sizes, [runs[index]["peak_anonymous_gb"] for runs in summaries], marker="o", linestyle="--",
                    color=memory.lines[-1].get_color(), label=f"{name}, anonymous")  # fmt: skip
        seconds.plot(sizes, [runs[index]["seconds_to_first_step"] for runs in summaries], marker="o", label=name)
    for axes, label in ((memory, "peak memory (GB)"), (seconds, "seconds to the first training step")):
        axes.set_ylim(bottom=0)  # growth drawn to scale
        axes.set_xscale("log")
        axes.set_xlabel("training pairs")
        axes.set_ylabel(label)
        axes.legend()
        axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
