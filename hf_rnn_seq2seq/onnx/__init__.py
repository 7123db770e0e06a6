"""Deploy without PyTorch: export a model to ONNX and translate with onnxruntime.

    hf-rnn-seq2seq-export-onnx MODEL OUTPUT_DIR [--int8]

writes OUTPUT_DIR with the encoder and decoder-step graphs (graphs.py), the tokenizer, onnx_config.json and
onnx_translator.py (translator.py), which translates with onnxruntime, numpy and tokenizers only (export.py).
"""

from __future__ import annotations

import argparse
import logging

from ..cli import user_errors

__all__ = ["export_onnx", "main"]


def export_onnx(model_name_or_path, output_dir, int8: bool = False):
    """Export a model folder or Hub id to an ONNX translator folder at `output_dir`; returns it."""
    try:
        from .export import export_onnx as export
    except ImportError as error:
        raise ImportError(
            f"the ONNX export needs onnx and onnxruntime ({error}): pip install 'hf-rnn-seq2seq[onnx]'"
        ) from error
    return export(model_name_or_path, output_dir, int8=int8)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a folder written by train.py or an importer, or a Hub model id")
    parser.add_argument("output_dir")
    parser.add_argument("--int8", action="store_true", help="quantise the matrix products to int8 (dynamic)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with user_errors(parser):
        folder = export_onnx(args.model, args.output_dir, int8=args.int8)
    print(f"wrote {folder}: its onnx_translator.py translates (OnnxTranslator({str(folder)!r}).translate([...]))")
