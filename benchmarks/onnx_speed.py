"""PyTorch `generate()` against the exported model on onnxruntime, float32 and int8: the test split's BLEU and
translation speed with greedy search and beam 5, batches of 64 (throughput) and of one sentence (latency), and what
each runtime installs.

    python benchmarks/onnx_speed.py runs/multi30k-de-en --out benchmarks/results/onnx_speed.md

The model is exported twice into `--work_dir` (float32 and `--int8`). Throughput: the whole test split, length-
sorted batches of 64, sentences a second after a warm-up batch. Latency: each of the first `--latency_sentences`
test sentences alone, median milliseconds, and the median over those of exactly 15 words. Install size: the files
of the main distributions each runtime imports, without their further dependencies (PyTorch: torch, transformers,
tokenizers, safetensors, huggingface_hub, numpy; onnxruntime: onnxruntime, numpy, tokenizers). Run alone.
"""

import argparse
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

import torch
from common import add_corpus_argument, emit, machine, test_pairs, work_folder

from hf_rnn_seq2seq.metrics import load_metric
from hf_rnn_seq2seq.onnx import export_onnx
from hf_rnn_seq2seq.translation import BATCH_SIZE, NUM_BEAMS, load_model, translate

RUNTIMES = {
    "PyTorch generate()": ("torch", "transformers", "tokenizers", "safetensors", "huggingface_hub", "numpy"),
    "onnxruntime": ("onnxruntime", "numpy", "tokenizers"),
}
LATENCY_WORDS = 15


def install_mib(distributions) -> float:
    """MiB of the installed files of `distributions` (their own, not their dependencies')."""
    total = 0
    for name in distributions:
        for file in metadata.distribution(name).files or []:
            path = file.locate()
            if path.is_file():
                total += path.stat().st_size
    return total / 2**20


class Runner:
    """One way to translate: a name and translate(sentences, num_beams, batch_size) -> texts."""

    def __init__(self, name, runtime, translate_function):
        self.name, self.runtime, self.translate = name, runtime, translate_function


def runners(model_folder: str, work: Path) -> list[Runner]:
    sys.path.insert(0, str(export_onnx(model_folder, work / "float32")))
    from onnx_translator import OnnxTranslator  # the exported folder's own translator

    export_onnx(model_folder, work / "int8", int8=True)
    model, tokenizer = load_model(model_folder)

    def pytorch(sentences, **settings):
        return translate(model, tokenizer, sentences, **settings)

    found = [Runner("PyTorch float32", "PyTorch generate()", pytorch)]
    for name in ("float32", "int8"):
        translator = OnnxTranslator(work / name)
        found.append(Runner(f"onnxruntime {name}", "onnxruntime", translator.translate))
    return found


def throughput(runner: Runner, sources, references, num_beams) -> tuple[float, float]:
    """(sentences a second, BLEU) over the whole split in batches of BATCH_SIZE, after a warm-up batch."""
    runner.translate(sources[:BATCH_SIZE], num_beams=num_beams, batch_size=BATCH_SIZE)
    start = time.perf_counter()
    hypotheses = runner.translate(sources, num_beams=num_beams, batch_size=BATCH_SIZE)
    speed = len(sources) / (time.perf_counter() - start)
    return speed, load_metric().compute(predictions=hypotheses, references=references)["bleu"]


def latency(runner: Runner, sentences, num_beams) -> tuple[float, float]:
    """Median milliseconds of one sentence alone: over `sentences`, and over those of LATENCY_WORDS words."""
    runner.translate(sentences[:1], num_beams=num_beams, batch_size=1)
    times = {}
    for sentence in sentences:
        start = time.perf_counter()
        runner.translate([sentence], num_beams=num_beams, batch_size=1)
        times[sentence] = 1000 * (time.perf_counter() - start)
    fifteen = [ms for sentence, ms in times.items() if len(sentence.split()) == LATENCY_WORDS]
    return statistics.median(times.values()), statistics.median(fifteen) if fifteen else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a folder written by train.py")
    add_corpus_argument(parser, languages=True)
    parser.add_argument("--latency_sentences", type=int, default=200)
    parser.add_argument("--work_dir", help="where the exports go, kept (default: a temporary folder, removed)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    sources, references = test_pairs(args.data_dir, args.source_lang, args.target_lang)
    sizes = {runtime: install_mib(distributions) for runtime, distributions in RUNTIMES.items()}
    rows = []
    with work_folder(args.work_dir, "onnx_speed_") as work:
        for runner in runners(args.model, work):
            for decoding, beams in (("greedy", 1), (f"beam {NUM_BEAMS}", NUM_BEAMS)):
                speed, bleu = throughput(runner, sources, references, beams)
                median, fifteen = latency(runner, sources[: args.latency_sentences], beams)
                rows.append(f"| {runner.name} | {decoding} | {bleu:.2f} | {speed:.1f} | {median:.1f} | "
                            f"{fifteen:.1f} | {sizes[runner.runtime]:,.0f} |")  # fmt: skip
    emit([
        f"Command: `python benchmarks/onnx_speed.py {args.model} --latency_sentences {args.latency_sentences}`  ",
        f"Machine: {machine()}, torch {torch.__version__} ({torch.get_num_threads()} threads), onnxruntime "
        f"{metadata.version('onnxruntime')} (its default threads); date {time.strftime('%Y-%m-%d')}; "
        f"{args.source_lang}→{args.target_lang} test split ({len(sources)} sentences)",
        "",
        f"| runtime | decoding | test BLEU | sentences/s, batches of {BATCH_SIZE} | ms a sentence alone (median) | "
        f"ms, {LATENCY_WORDS}-word sentences alone | install MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ], args.out)


if __name__ == "__main__":
    main()
