"""The attention story, measured: BLEU by source-length bucket for models that differ only in attention.

Reads the test translations that `train.py` wrote (`generated_predictions.txt`, in test-set order) for each run,
splits the test set by source length in words, and scores each bucket with sacreBLEU (cased, 13a, as every score
here). Without attention the decoder sees one fixed context vector for the whole sentence (Cho et al. 2014), so
its loss against attention should grow with the sentence length (Bahdanau et al. 2015, fig. 2).

    python train.py benchmarks/recipes/attention-none.yaml        # and -luong_general, -bahdanau
    python benchmarks/attention_story.py "none=runs/attention-none" "Luong general=runs/attention-luong_general" \
        "Bahdanau=runs/attention-bahdanau" --out benchmarks/results/attention_story
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from common import add_corpus_argument, emit
from sacrebleu.metrics import BLEU

from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
from hf_rnn_seq2seq.data import load_parallel_dir

HYPOTHESES_FILE = "generated_predictions.txt"
BUCKETS = [(1, 10), (11, 15), (16, 20), (21, None)]  # source words, inclusive


def bucket_name(low: int, high: int | None) -> str:
    return f"{low}–{high}" if high else f"{low}+"


def bucket_of(words: int) -> str:
    for low, high in BUCKETS:
        if words >= low and (high is None or words <= high):
            return bucket_name(low, high)
    raise ValueError(f"a source of {words} words fits no bucket")


def scores_by_bucket(
    bleu: BLEU, sources: list[str], references: list[str], hypotheses: list[str]
) -> dict[str, tuple[float, int]]:
    """{bucket: (BLEU, sentences)}, and the whole set under "all"."""
    if not len(sources) == len(references) == len(hypotheses):
        raise ValueError(f"{len(hypotheses)} translations for {len(sources)} sources and {len(references)} references")
    groups: dict[str, list[int]] = {bucket_name(*bounds): [] for bounds in BUCKETS}
    for index, source in enumerate(sources):
        groups[bucket_of(len(source.split()))].append(index)
    groups["all"] = list(range(len(sources)))
    return {
        name: (bleu.corpus_score([hypotheses[i] for i in indices], [[references[i] for i in indices]]).score
               if indices else float("nan"), len(indices))
        for name, indices in groups.items()
    }  # fmt: skip


def plot(results: dict[str, dict[str, tuple[float, int]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = [bucket_name(*bounds) for bounds in BUCKETS]
    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for label, scores in results.items():
        axes.plot(buckets, [scores[b][0] for b in buckets], marker="o", label=label)
    first = next(iter(results.values()))
    axes.set_xticks(range(len(buckets)), [f"{b}\n({first[b][1]} sent.)" for b in buckets])
    axes.set_xlabel("source length (words)")
    axes.set_ylabel("sacreBLEU")
    axes.set_title("Multi30k de→en test: BLEU by source length")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="LABEL=RUN_DIR pairs (train.py output folders)")
    add_corpus_argument(parser, languages=True)
    parser.add_argument("--out", required=True, help="prefix: writes OUT.md and OUT.png")
    args = parser.parse_args(argv)
    test = load_parallel_dir(args.data_dir, args.source_lang, args.target_lang, splits=["test"])["test"]
    sources = [pair[args.source_lang] for pair in test["translation"]]
    references = [pair[args.target_lang] for pair in test["translation"]]
    results, details, bleu = {}, {}, BLEU()
    for spec in args.runs:
        label, run_dir = spec.split("=", 1)
        run_dir = Path(run_dir)
        hypotheses = (run_dir / HYPOTHESES_FILE).read_text(encoding="utf-8").split("\n")[:-1]
        results[label] = scores_by_bucket(bleu, sources, references, hypotheses)
        config = json.loads((run_dir / "config.json").read_text())
        details[label] = (run_dir, config)

    buckets = [bucket_name(*bounds) for bounds in BUCKETS] + ["all"]
    counts = next(iter(results.values()))
    lines = [
        f"Command: `python benchmarks/attention_story.py {' '.join(argv if argv is not None else sys.argv[1:])}`  ",
        f"Date {time.strftime('%Y-%m-%d')}; Multi30k {args.source_lang}→{args.target_lang} `test_2016_flickr`, "
        f"sacreBLEU `{bleu.get_signature()}` per bucket of source length in words (beam search as each run's "
        "generation config).",
        "",
        "| model | attention | hidden | parameters | " + " | ".join(f"{b} ({counts[b][1]})" for b in buckets) + " |",
        "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in buckets) + " |",
    ]
    for label, scores in results.items():
        run_dir, config = details[label]
        with torch.device("meta"):
            parameters = RNNSeq2SeqForConditionalGeneration(RNNSeq2SeqConfig(**config)).num_parameters()
        lines.append(
            f"| {label} (`{run_dir.name}`) | {config['attention_type']} | {config['hidden_size']} | {parameters:,} | "
            + " | ".join(f"{scores[b][0]:.2f}" for b in buckets) + " |"
        )
    out = Path(args.out)
    emit(lines, out.with_suffix(".md"))
    plot(results, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
