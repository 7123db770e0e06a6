"""An interactive attention demo (Gradio): `hf-rnn-seq2seq-demo MODEL [MODEL ...]`, or `app.py` on a Hub Space.

Gradio comes with the `demo` extra: `pip install "hf-rnn-seq2seq[demo]"`.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the app must run offline

import torch  # noqa: E402

from ..cli import user_errors  # noqa: E402
from ..precision import DTYPE_CHOICES, resolve_dtype  # noqa: E402
from .heatmap import CSS  # noqa: E402
from .page import ModelShelf, build_demo  # noqa: E402

__all__ = ["ModelShelf", "build_demo", "launch", "main", "read_examples"]


def read_examples(path: str) -> list[str]:
    """Example source sentences: the file's non-blank lines."""
    with open(path, encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def launch(models: list[str], examples: list[str] | None = None, dtype: torch.dtype | None = None, **launch_kwargs):
    """Load `models` (folders or Hub ids; the first is the page's default) in `dtype`, build the page and serve it."""
    shelf = ModelShelf(models, dtype=dtype)
    for name in models:  # fail at start, not on a visitor's first request
        shelf.get(name)
    demo = build_demo(shelf, examples)
    demo.launch(css=CSS, **launch_kwargs)
    return demo


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="hf-rnn-seq2seq-demo",
        description="Serve a page that translates with the models and shows their attention; the first model is "
        "the default, two or more can be compared side by side.",
    )
    parser.add_argument("models", nargs="+", help="folders written by train.py, or Hub model ids")
    parser.add_argument("--examples", help="a text file of example source sentences, one a line")
    parser.add_argument("--host", help="0.0.0.0 to serve other machines (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="default: $GRADIO_SERVER_PORT or 7860")
    parser.add_argument(
        "--dtype", choices=DTYPE_CHOICES, default="float32",
        help="compute in this type; auto: bfloat16 where the CPU computes it natively, else float32",
    )
    args = parser.parse_args(argv)
    with user_errors(parser):
        examples = read_examples(args.examples) if args.examples else None
        dtype = resolve_dtype(args.dtype, torch.device("cpu"))
        launch(args.models, examples, dtype=dtype, server_name=args.host, server_port=args.port)
