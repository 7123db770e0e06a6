"""Console scripts: translate, evaluate and plot attention with a trained model (a local folder or a Hub id)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager

import torch

from .translation import BATCH_SIZE, MAX_SOURCE_LENGTH, load_model


@contextmanager
def user_errors(parser: argparse.ArgumentParser):
    """A missing or malformed file or model, or a refused input, ends the script with its message (exit status 2)
    instead of a traceback. (A corpus `DataError` is a `ValueError`.)"""
    try:
        yield
    except (ValueError, OSError) as error:
        parser.error(str(error))


def _generation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a folder written by train.py, or a Hub model id")
    parser.add_argument("--batch_size", type=int, default=BATCH_SIZE)
    parser.add_argument("--num_beams", type=int, default=None, help="default: the model's generation_config.json")
    parser.add_argument("--max_new_tokens", type=int, default=None)
    parser.add_argument(
        "--max_source_length", type=int, default=MAX_SOURCE_LENGTH, help="longer sources are cut, with a warning"
    )
    parser.add_argument("--do_sample", action="store_true", help="sample instead of beam search")
    parser.add_argument("--top_k", type=int, default=None)
    parser.add_argument("--top_p", type=float, default=None)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")


def _generate_kwargs(args) -> dict:
    names = ("num_beams", "max_new_tokens", "top_k", "top_p", "temperature")
    kwargs = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.do_sample:
        kwargs.update(do_sample=True, num_beams=1)
    return kwargs


def _translate_lines(args, lines: list[str]) -> list[str]:
    from .translation import translate

    torch.manual_seed(args.seed)
    model, tokenizer = load_model(args.model)
    return translate(
        model, tokenizer, lines, batch_size=args.batch_size, max_source_length=args.max_source_length,
        progress=not args.no_progress, **_generate_kwargs(args),
    )


def train_main(argv=None) -> None:
    """`train.py` as a console script (its results dict must not become the exit status). A corpus that is missing or
    cannot be read (`DataError`, whose message names the file or the flags to pass), or a file it was told to read that
    is not there (a model card template, a checkpoint), ends it with that message instead of a traceback."""
    from .data import DataError
    from .training import main

    try:
        main(argv)
    except (DataError, FileNotFoundError) as error:
        raise SystemExit(f"{os.path.basename(sys.argv[0])}: error: {error}") from None


def translate_main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="hf-rnn-seq2seq-translate", description="Translate one sentence per line (a file or stdin) to stdout."
    )
    _generation_arguments(parser)
    parser.add_argument("--input", help="a text file, one sentence a line (default: stdin)")
    args = parser.parse_args(argv)
    with user_errors(parser):
        if args.input:
            with open(args.input, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        else:
            lines = sys.stdin.read().splitlines()
        translations = _translate_lines(args, lines)
    for translation in translations:
        print(translation)


def evaluate_main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="hf-rnn-seq2seq-evaluate",
        description="sacreBLEU BLEU and chrF of a model on a parallel test set, with the signatures (JSON to stdout).",
    )
    _generation_arguments(parser)
    parser.add_argument("--source", required=True, help="source sentences, one a line (.gz allowed)")
    parser.add_argument("--reference", required=True, help="reference translations, line-aligned with --source")
    parser.add_argument("--hypotheses", help="also write the translations here")
    args = parser.parse_args(argv)
    from .text_files import normalize, read_parallel_lines
    from .metrics import load_metric

    with user_errors(parser):
        sources, references = read_parallel_lines(args.source, args.reference)
        references = [normalize(reference) for reference in references]  # as train.py scores its test split
        hypotheses = _translate_lines(args, sources)
        if args.hypotheses:
            with open(args.hypotheses, "w", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in hypotheses))
    scores = load_metric().compute(predictions=hypotheses, references=references)
    print(json.dumps({"num_samples": len(sources), **scores}, indent=2))


def plot_attention_main(argv=None) -> None:
    from .plotting import MAX_NEW_TOKENS, attention_matrix, plot_attention

    parser = argparse.ArgumentParser(
        prog="hf-rnn-seq2seq-plot-attention",
        description="Translate a sentence greedily and write its cross-attention heatmap (a row per target token, a "
        "column per source token) as PNG; print the tokens and the weights as JSON.",
    )
    parser.add_argument("model", help="a folder written by train.py, or a Hub model id")
    parser.add_argument("sentence", help="the source sentence")
    parser.add_argument("--output", default="attention.png", help="PNG file to write")
    parser.add_argument("--max_new_tokens", type=int, default=MAX_NEW_TOKENS)
    args = parser.parse_args(argv)
    with user_errors(parser):
        model, tokenizer = load_model(args.model)
        source, target, weights = attention_matrix(model, tokenizer, args.sentence, args.max_new_tokens)
        plot_attention(source, target, weights, args.output)
    summary = {
        "output": args.output,
        "source_tokens": source,  # the heatmap's columns
        "target_tokens": target,  # its rows
        "weights": weights.tolist(),  # (target, source)
    }
    print(json.dumps(summary, ensure_ascii=False))
