"""Training throughput of token batches against sentence batches at equal tokens per update: `python train.py` (the
default recipe: batches of 64 pairs grouped by length) and `python train.py --max_tokens_per_batch 1070` (as many
similar-length pairs as fit in 1,070 padded tokens a side: as many batches an epoch as 64-pair batches make, so the
same target tokens per update on average), each for the same number of updates, run after run, alternating (ABAB...),
so that a slower moment of the machine does not fall on one side only.

    python benchmarks/batching_speed.py         # 3 rounds of 300 updates: benchmarks/results/batching_speed.md
    python benchmarks/batching_speed.py --rounds 1 --max_steps 50 --out /tmp/batching.md -- --data_dir other/corpus

Arguments after `--` go to both train.py runs. Run it alone: another job on the machine slows either side.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, emit

SIDES = {"sentence batches (64 pairs)": [], "token batches (1,070 tokens)": ["--max_tokens_per_batch", "1070"]}


def run(extra: list[str], steps: int, work: Path) -> dict:
    out = work / "run"
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable, str(REPO / "train.py"), "--output_dir", str(out), "--do_train", "--do_eval", "False",
        "--do_predict", "False", "--max_steps", str(steps), "--eval_strategy", "no", "--save_strategy", "no",
        "--disable_tqdm", "True", *extra,
    ]  # fmt: skip
    subprocess.run(command, cwd=work, check=True, capture_output=True, text=True)
    return json.loads((out / "train_results.json").read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max_steps", type=int, default=300, help="updates per run")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "batching_speed.md"))
    parser.add_argument("train_args", nargs="*", help="after --: more train.py arguments, for both sides")
    args = parser.parse_args()
    results = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="batching_") as work:
        for _ in range(args.rounds):
            for side, extra in SIDES.items():
                results[side].append(run([*extra, *args.train_args], args.max_steps, Path(work)))
    command = " ".join(["python benchmarks/batching_speed.py", *sys.argv[1:]])
    lines = [
        f"# Token batches against sentence batches (`{command}`, {time.strftime('%Y-%m-%d')}, 2 CPU cores)",
        "",
        "| batches | target tokens/s, each round | median | target tokens per update |",
        "| --- | --- | ---: | ---: |",
    ]
    for side, runs in results.items():
        speeds = [run["train_target_tokens_per_second"] for run in runs]
        per_update = statistics.mean(run["train_target_tokens"] for run in runs) / args.max_steps
        lines.append(f"| {side} | {', '.join(f'{s:,.0f}' for s in speeds)} | {statistics.median(speeds):,.0f} | "
                     f"{per_update:,.0f} |")  # fmt: skip
    sentence_speeds, token_speeds = (
        [run["train_target_tokens_per_second"] for run in runs] for runs in results.values()
    )
    ratios = [tokens / sentences for sentences, tokens in zip(sentence_speeds, token_speeds)]
    lines += [
        "",
        f"Each run: {args.max_steps} updates of train.py's default recipe from a fresh process (its first updates "
        "included), the corpus's tokenization cached after the first run; target tokens/s are train.py's "
        "`train_target_tokens_per_second` (non-padding target tokens per second of training). Token batches against "
        f"the sentence batches of the same round: {', '.join(f'{ratio:.3f}' for ratio in ratios)}×.",
    ]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
