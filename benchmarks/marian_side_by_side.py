"""Marian and this package side by side on the same weights: a Marian `s2s` model (bidirectional GRU encoder,
conditional-GRU decoder, deep output) trained by Marian, imported with `hf-rnn-seq2seq-import-marian`, and the same
test sentences translated by marian-decoder on the CPU and by ours (the translate command's path), beam 5 without
length normalisation, batches of 64, in one run on one machine.

Both read Multi30k de→en segmented by one joint BPE tokenizer (ours), as space-separated pieces with Marian's own
vocabularies over them. Each search stops a sentence at its end: Marian caps a translation at 3 × its source's length,
ours at the generation config's limit (153 tokens), which these sentences never reach; the table gives the mean
output length of each and how many of their translations are identical, so that equal speed means equal work.
Marian's time is its own "Total time" (model loading included, about a second); ours is the translation alone, after
a warm-up batch (`fixed_length_translation.py` with MAX_NEW_TOKENS 0), in float32 and in bfloat16. Peak memory is each
process's resident peak.

Marian runs from its own environment (`--marian_venv`, made from `benchmarks/marian-requirements.txt` by .ci/run).
Run alone: a concurrent job slows both.

    python benchmarks/marian_side_by_side.py --out benchmarks/results/marian_side_by_side.md
"""

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch
import yaml
from common import REPO, add_corpus_argument, emit, machine
from joeynmt_side_by_side import test_bleu, timed, write_segmented_corpus

from hf_rnn_seq2seq.configuration_rnn_seq2seq import VOCAB_SIZE
from hf_rnn_seq2seq.translation import BATCH_SIZE, NUM_BEAMS

MARIAN_REQUIREMENTS = REPO / "benchmarks" / "marian-requirements.txt"


def pymarian(venv: Path) -> Path:
    command = venv / "bin" / "pymarian"
    if not command.exists():
        raise SystemExit(
            f"Marian's environment {venv} is missing: make it with `python3 -m venv {venv} && "
            f"{venv}/bin/pip install -r {MARIAN_REQUIREMENTS}` (.ci/run does)"
        )
    return command


def train_marian(args, work: Path, marian: Path) -> tuple[Path, list[Path], float]:
    """Marian's vocabularies over the segmented corpus and its s2s model trained for `--updates` updates: (model
    file, vocabularies, training seconds)."""
    corpus = work / "corpus"
    vocabularies = []
    for lang in ("de", "en"):
        vocabulary = corpus / f"vocab.{lang}.yml"
        with open(corpus / f"train.{lang}", encoding="utf-8") as text:
            vocabulary.write_text(timed([str(marian), "vocab"], work, stdin=text)[0].stdout, encoding="utf-8")
        vocabularies.append(vocabulary)
    model = work / "marian" / "model.npz"
    model.parent.mkdir(exist_ok=True)
    start = time.perf_counter()
    timed([str(marian), "train", "--type", "s2s", "-m", str(model), "-t", str(corpus / "train.de"),
           str(corpus / "train.en"), "-v", *map(str, vocabularies), "--dim-emb", str(args.embedding_dim),
           "--dim-rnn", str(args.hidden_size), "--mini-batch", str(args.batch_size), "--after-batches",
           str(args.updates), "--learn-rate", "1e-3", "--cpu-threads", str(torch.get_num_threads()), "--seed", "1",
           "--max-length", "100", "--quiet"], work)  # fmt: skip
    return model, vocabularies, time.perf_counter() - start


def run_marian(model: Path, vocabularies: list[Path], work: Path, marian: Path) -> dict:
    command = [str(marian), "decode", "-m", str(model), "-v", *map(str, vocabularies), "--beam-size", str(NUM_BEAMS),
               "--normalize", "0", "--mini-batch", str(BATCH_SIZE), "--maxi-batch", "1",
               "--cpu-threads", str(torch.get_num_threads())]  # fmt: skip
    with open(work / "corpus" / "test.de", encoding="utf-8") as sources:
        result, peak_mib = timed(command, work, stdin=sources)
    pieces = result.stdout.splitlines()
    return {
        "translate_seconds": float(re.findall(r"Total time: ([\d.]+)s", result.stderr)[-1]),
        "translate_peak_mib": peak_mib,
        "output_tokens": sum(len(line.split()) for line in pieces) / len(pieces),
        "sentences": len(pieces),
        "pieces": pieces,
    }


def run_ours(folder: Path, work: Path, dtype: str) -> dict:
    sentences = (work / "corpus" / "test.de").read_text(encoding="utf-8").splitlines()
    sentences_file = work / "sentences.json"
    sentences_file.write_text(json.dumps(sentences), encoding="utf-8")
    result, _ = timed([sys.executable, str(REPO / "benchmarks" / "fixed_length_translation.py"), str(folder), "0",
                       str(sentences_file), dtype], work)  # fmt: skip
    translation = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "translate_seconds": translation["seconds"],
        "translate_peak_mib": translation["peak_mib"],
        "output_tokens": translation["output_tokens"] + 0.0,
        "sentences": len(sentences),
        "pieces": translation["translations"],  # a word-level model: its output is the BPE pieces
    }


def results_table(rows: dict[str, dict], corpus: dict, args, model: Path, training_seconds: float | None,
                  arguments: list[str]) -> list[str]:
    """The Markdown table of every system's figures, with the command, the machine and the model above it."""
    marian_row = next(iter(rows.values()))
    lines = [
        f"Command: `python benchmarks/marian_side_by_side.py {' '.join(arguments)}`  ",
        f"Machine: {machine()}, torch {torch.__version__} ({torch.get_num_threads()} threads; Marian "
        f"--cpu-threads {torch.get_num_threads()}); date {time.strftime('%Y-%m-%d %H:%M')}  ",
        (f"Model: `{model}`" if training_seconds is None else
         f"Model: Marian s2s, embeddings {args.embedding_dim}, GRU {args.hidden_size}, trained by Marian on "
         f"{len(corpus['pairs']['train'])} Multi30k de→en pairs (joint BPE {args.vocab_size} pieces) for "
         f"{args.updates} updates of {args.batch_size} sentences ({training_seconds / 60:.1f} min)") + "; translation of "
        f"{marian_row['sentences']} test sentences, beam {NUM_BEAMS}, no length normalisation, batches of {BATCH_SIZE}",
        "",
        f"| system | beam-{NUM_BEAMS} sent/s | × Marian | mean output tokens | translations equal to Marian's | "
        "peak MiB | test BLEU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    marian_speed = marian_row["sentences"] / marian_row["translate_seconds"]
    for name, row in rows.items():
        speed = row["sentences"] / row["translate_seconds"]
        equal = sum(ours == theirs for ours, theirs in zip(row["pieces"], marian_row["pieces"]))
        lines.append(
            f"| {name} | {speed:.1f} | {speed / marian_speed:.2f} | {row['output_tokens']:.2f} | "
            f"{equal}/{row['sentences']} | {row['translate_peak_mib']:.0f} | {test_bleu(row, corpus):.2f} |"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_corpus_argument(parser)
    parser.add_argument("--work_dir", default=str(REPO / ".cache" / "marian_side_by_side"))
    parser.add_argument("--marian_venv", default=str(REPO / ".cache" / "marian-venv"))
    parser.add_argument("--vocab_size", type=int, default=VOCAB_SIZE)
    parser.add_argument("--embedding_dim", type=int, default=256)
    parser.add_argument("--hidden_size", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=64, help="Marian's training mini-batch")
    parser.add_argument("--updates", type=int, default=2000, help="Marian's training updates")
    parser.add_argument("--marian_model", help="translate with this Marian model (its decoder.yml naming vocabularies "
                        "over the work folder's segmentation, e.g. one an earlier run trained) instead of training one")
    parser.add_argument("--train_pairs", type=int, default=29000)
    parser.add_argument("--dev_sentences", type=int, default=8)
    parser.add_argument("--test_sentences", type=int, default=1000)
    parser.add_argument("--out", help="write the results table (Markdown) here")
    args = parser.parse_args(argv)

    from hf_rnn_seq2seq.marian import import_marian

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    marian = pymarian(Path(args.marian_venv))
    corpus = write_segmented_corpus(args, work)
    if args.marian_model:
        model, training_seconds = Path(args.marian_model).resolve(), None
        vocabularies = [Path(v) for v in yaml.safe_load(Path(f"{model}.decoder.yml").read_text())["vocabs"]]
    else:
        model, vocabularies, training_seconds = train_marian(args, work, marian)
    folder = import_marian(model, work / "imported")
    rows = {"Marian 1.12.42, marian-decoder (CPU)": run_marian(model, vocabularies, work, marian)}
    for dtype in ("float32", "bfloat16"):
        rows[f"ours, Marian's weights imported, {dtype}"] = run_ours(folder, work, dtype)
    print({name: {k: v for k, v in row.items() if k != "pieces"} for name, row in rows.items()}, file=sys.stderr)

    arguments = argv if argv is not None else sys.argv[1:]
    emit(results_table(rows, corpus, args, model, training_seconds, arguments), args.out)


if __name__ == "__main__":
    main()
