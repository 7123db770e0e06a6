"""Collect the scores of finished `train.py` runs into one Markdown table.

Each run folder holds what train.py wrote: test_results.json (sacreBLEU on the test split, with its signature),
generated_predictions.txt (the test translations, scored here once more lower-cased, the published anchors' case
setting), all_results.json (validation BLEU of the kept checkpoint, training time). Each run is given with the
command that produced it.

    python benchmarks/quality_table.py \
        "runs/recipe-multi30k-en-de=python train.py benchmarks/recipes/multi30k-en-de.yaml" ... \
        --out benchmarks/results/quality.md
"""

import argparse
import json
import time
from pathlib import Path

from common import add_corpus_argument, emit
from sacrebleu.metrics import BLEU

from hf_rnn_seq2seq.data import load_parallel_dir

LOWERCASED = BLEU(lowercase=True)


def lowercased_bleu(run_dir: Path, data_dir: str, source_lang: str, target_lang: str) -> float:
    test = load_parallel_dir(data_dir, source_lang, target_lang, splits=["test"])["test"]
    references = [pair[target_lang] for pair in test["translation"]]
    hypotheses = (run_dir / "generated_predictions.txt").read_text(encoding="utf-8").split("\n")[:-1]
    if len(hypotheses) != len(references):
        raise ValueError(f"{run_dir}: {len(hypotheses)} translations for {len(references)} test references")
    return LOWERCASED.corpus_score(hypotheses, [references]).score


def row(run_dir: Path, command: str, data_dir: str) -> str:
    test = json.loads((run_dir / "test_results.json").read_text())
    overall = json.loads((run_dir / "all_results.json").read_text())
    minutes = overall.get("train_runtime", float("nan")) / 60
    lowercased = lowercased_bleu(run_dir, data_dir, test["source_lang"], test["target_lang"])
    return (
        f"| {test['source_lang']}→{test['target_lang']} | `{command}` | {overall.get('eval_bleu', float('nan')):.2f} | "
        f"**{test['bleu']:.2f}** | {lowercased:.2f} | {test['chrf']:.2f} | {test['length_ratio']:.3f} | "
        f"{test['num_beams']} | {minutes:.1f} |"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="RUN_DIR=COMMAND pairs")
    add_corpus_argument(parser)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    lines = [
        f"Multi30k task 1, test split `test_2016_flickr` (1,000 sentences); validation `val` (1,014). "
        f"Collected {time.strftime('%Y-%m-%d')} on the 2-core CPU machine.",
        "",
        "| direction | command | val BLEU (beam) | test BLEU | test BLEU lower-cased | test chrF | length ratio | beams "
        "| training min |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    signatures = set()
    for spec in args.runs:
        run_dir, command = spec.split("=", 1)
        lines.append(row(Path(run_dir), command, args.data_dir))
        signatures.add(json.loads((Path(run_dir) / "test_results.json").read_text())["bleu_signature"])
    lines += ["", "sacreBLEU signature: " + ", ".join(f"`{s}`" for s in sorted(signatures))
              + f"; lower-cased: `{LOWERCASED.get_signature()}`"]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
