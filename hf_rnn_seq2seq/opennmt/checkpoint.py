"""Reading an OpenNMT-py 3.x checkpoint without running pickled code.

`onmt_train` saves `torch.save({"model", "generator", "vocab", "opt", "optim"})`: tensors, the vocabularies as lists
of tokens, and `opt`, an `argparse.Namespace` of the training options. `torch.load(weights_only=True)` reads tensors
and plain containers only; `argparse.Namespace` is allowed besides (it is rebuilt from its attribute dict, no code of
the checkpoint runs), and a checkpoint that needs any other global is refused, naming it. OpenNMT-py 1.x/2.x
checkpoints pickle torchtext `Field` objects as their vocabularies: those are refused with that explanation.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from .settings import OpenNMTImportError

ALLOWED_GLOBALS = (argparse.Namespace,)


@dataclass
class OpenNMTCheckpoint:
    options: dict  # `opt` as a dict
    vocab: dict  # "src", "tgt": lists of tokens (index = id); "decoder_start_token", "data_task"
    state: dict[str, torch.Tensor]  # the model's tensors, the generator's as "generator.*"


def read_checkpoint(path: Path) -> OpenNMTCheckpoint:
    if not path.is_file():
        raise OpenNMTImportError(f"OpenNMT-py checkpoint {path} not found")
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # UnpicklingError for an unsafe global; others for a broken file
        message = str(error)
        if "torchtext" in message:
            raise OpenNMTImportError(
                f"{path} is an OpenNMT-py 1.x/2.x checkpoint (its vocabulary is pickled torchtext objects), which is "
                "not read: convert it to a 3.x checkpoint with OpenNMT-py's tools/convertv2_v3.py first"
            ) from error
        raise OpenNMTImportError(
            f"{path} cannot be read as tensors, plain values and argparse.Namespace only (torch.load(weights_only="
            f"True)): {message.splitlines()[0] if message else type(error).__name__}. The importer never runs a "
            "checkpoint's pickled code."
        ) from error
    missing = [key for key in ("model", "generator", "vocab", "opt") if key not in checkpoint]
    if not isinstance(checkpoint, dict) or missing:
        raise OpenNMTImportError(f"{path} is not an OpenNMT-py 3.x checkpoint (it lacks {missing or 'a dict'})")
    if not isinstance(checkpoint["opt"], argparse.Namespace):
        raise OpenNMTImportError(f"{path}: 'opt' is a {type(checkpoint['opt']).__name__}, not OpenNMT's options")
    vocab = checkpoint["vocab"]
    if not (isinstance(vocab, dict) and all(isinstance(vocab.get(side), list) for side in ("src", "tgt"))):
        raise OpenNMTImportError(f"{path}: 'vocab' is not OpenNMT-py 3.x's (lists of source and target tokens)")
    state = dict(checkpoint["model"]) | {f"generator.{name}": tensor for name, tensor in checkpoint["generator"].items()}
    return OpenNMTCheckpoint(vars(checkpoint["opt"]), vocab, state)
