"""Console scripts: translate, evaluate and plot attention with a trained model (a local folder or a Hub id)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm

from .allocator import keep_freed_memory_for_reuse
from .file_translation import WINDOW_LINES, TranslationJob, as_text, windows
from .precision import DTYPE_CHOICES, resolve_dtype
from .text_files import decode_lines, iter_lines
from .translation import BATCH_SIZE, MAX_SOURCE_LENGTH, load_model, model_fingerprint


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
    parser.add_argument(
        "--dtype", choices=DTYPE_CHOICES, default="float32",
        help="compute in this type; auto: bfloat16 where the CPU or GPU computes it natively, else float32",
    )
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")


def _generate_kwargs(args) -> dict:
    names = ("num_beams", "max_new_tokens", "top_k", "top_p", "temperature")
    kwargs = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.do_sample:
        kwargs.update(do_sample=True, num_beams=1)
    return kwargs


def _load(args, device: torch.device | None = None):
    device = torch.device("cpu") if device is None else device
    return load_model(args.model, dtype=resolve_dtype(args.dtype, device), device=device)


def _translator(args, model, tokenizer, batch_progress=False) -> Callable[[list[str], int], list[str]]:
    """translate(lines, window_index): sampling is seeded per window, so that a window's translation depends on its
    lines alone, whichever process translates it and wherever a run resumed. `batch_progress`: a bar of batches."""
    from .translation import translate

    def translate_window(lines: list[str], index: int) -> list[str]:
        torch.manual_seed(args.seed + index)
        return translate(
            model, tokenizer, lines, batch_size=args.batch_size, max_source_length=args.max_source_length,
            progress=batch_progress, **_generate_kwargs(args),
        )

    return translate_window


def _translate_lines(args, lines: list[str]) -> list[str]:
    model, tokenizer = _load(args)
    return _translator(args, model, tokenizer, batch_progress=not args.no_progress)(lines, 0)


def _stream(args, lines: Iterable[str]) -> None:
    """Translate to stdout window by window, each window written as soon as it is done."""
    translate_window = _translator(args, *_load(args))
    with tqdm(unit="line", disable=args.no_progress, file=sys.stderr, desc="translating") as bar:
        for index, window in enumerate(windows(lines, args.window)):
            sys.stdout.write(as_text(translate_window(window, index)))
            sys.stdout.flush()
            bar.update(len(window))


def _translate_file(args) -> None:
    """--input to --output, resumable, on every process that torchrun or accelerate launch started."""
    rank, processes = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = torch.device("cpu")
    if torch.accelerator.is_available():
        device = torch.device(torch.accelerator.current_accelerator().type, int(os.environ.get("LOCAL_RANK", 0)))
    model, tokenizer = _load(args, device)
    settings = {
        "model_sha256": model_fingerprint(model), "dtype": str(model.dtype), "seed": args.seed,
        "batch_size": args.batch_size, "max_source_length": args.max_source_length, **_generate_kwargs(args),
    }  # fmt: skip
    job = TranslationJob(args.input, args.output, settings, window=args.window)
    if processes > 1:
        torch.distributed.init_process_group("gloo")  # only for barriers: every process writes its own windows
    try:
        job.run(
            _translator(args, model, tokenizer), rank=rank, processes=processes,
            barrier=torch.distributed.barrier if processes > 1 else lambda: None, progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print(f"interrupted: run the same command again to resume {args.output}", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        if processes > 1:
            torch.distributed.destroy_process_group()


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
        prog="hf-rnn-seq2seq-translate",
        description="Translate one sentence per line (a file or stdin), window by window. With --output the "
        "translation is resumable: the same command continues an interrupted run, and several processes (torchrun, "
        "accelerate launch) share the file.",
    )
    _generation_arguments(parser)
    parser.add_argument("--input", help="a text file, one sentence a line (.gz allowed; default: stdin)")
    parser.add_argument("--output", help="write here, resumably (default: stdout, as each window is done)")
    parser.add_argument(
        "--window", type=int, default=WINDOW_LINES, help="lines read, sorted by length and translated together"
    )
    args = parser.parse_args(argv)
    keep_freed_memory_for_reuse()  # each beam step's (rows x vocabulary) float32 scores reuse the last step's pages
    with user_errors(parser):
        if args.window < 1:
            raise ValueError(f"--window must be a positive number of lines, got {args.window}")
        if args.output:
            if not args.input:
                raise ValueError("--output needs --input: a resumable translation reads a file, not stdin")
            _translate_file(args)
        elif int(os.environ.get("WORLD_SIZE", 1)) > 1:
            raise ValueError("several processes share a file only with --input and --output")
        elif args.input:
            _stream(args, iter_lines(args.input, allow_empty=True))
        else:
            _stream(args, decode_lines(sys.stdin.buffer, "<stdin>"))


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
    keep_freed_memory_for_reuse()  # as in translate_main
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
