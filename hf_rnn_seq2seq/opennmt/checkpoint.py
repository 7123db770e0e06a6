"""Reading an OpenNMT-py 3.x checkpoint without running pickled code.

`onmt_train` saves `torch.save({"model", "generator", "vocab", "opt", "optim"})`: tensors, the vocabularies as lists
of tokens, and `opt`, an `argparse.Namespace` of the training options. The globals the pickle names are listed first,
without unpickling (`torch.serialization.get_unsafe_globals_in_checkpoint`): a checkpoint that needs any beyond
`argparse.Namespace` (rebuilt from its attribute dict, no code of the checkpoint runs) is refused, naming them; then
`torch.load(weights_only=True)` reads tensors, plain containers and that one class. OpenNMT-py 1.x/2.x
checkpoints pickle torchtext `Field` objects as their vocabularies: those are refused with that explanation.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from .settings import OpenNMTImportError

ALLOWED = {"argparse.Namespace": argparse.Namespace}  # the globals a 3.x checkpoint needs, by their pickled names


@dataclass
class OpenNMTCheckpoint:
    options: dict  # `opt` as a dict
    vocab: dict  # "src", "tgt": lists of tokens (index = id); "decoder_start_token", "data_task"
    state: dict[str, torch.Tensor]  # the model's tensors, the generator's as "generator.*"
    toolkit: str = "OpenNMT-py"  # or "eole" (eole.py)


def read_checkpoint(path: Path) -> OpenNMTCheckpoint:
    if not path.is_file():
        raise OpenNMTImportError(f"OpenNMT-py checkpoint {path} not found")
    try:  # the globals the pickle names beyond torch's own allow-list, read without unpickling anything
        unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - set(ALLOWED)
    except Exception as error:  # not a torch checkpoint, or a truncated one
        raise OpenNMTImportError(f"{path} cannot be read as a torch checkpoint: {error}") from error
    if any(name.startswith("torchtext.") for name in unsafe):
        raise OpenNMTImportError(
            f"{path} is an OpenNMT-py 1.x/2.x checkpoint (its vocabulary is pickled torchtext objects), which is not "
            "read: convert it to a 3.x checkpoint with OpenNMT-py's tools/convertv2_v3.py first"
        )
    if unsafe:
        raise OpenNMTImportError(
            f"{path} pickles {sorted(unsafe)}, beyond tensors, plain values and argparse.Namespace; the importer never "
            "runs a checkpoint's pickled code"
        )
    with torch.serialization.safe_globals(list(ALLOWED.values())):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    missing = [key for key in ("vocab", "opt") if key not in checkpoint]
    if not isinstance(checkpoint, dict) or missing:
        raise OpenNMTImportError(f"{path} is not an OpenNMT-py 3.x checkpoint (it lacks {missing or 'a dict'})")
    if not isinstance(checkpoint["opt"], argparse.Namespace):
        raise OpenNMTImportError(f"{path}: 'opt' is a {type(checkpoint['opt']).__name__}, not OpenNMT's options")
    vocab = checkpoint["vocab"]
    if not (isinstance(vocab, dict) and all(isinstance(vocab.get(side), list) for side in ("src", "tgt"))):
        raise OpenNMTImportError(f"{path}: 'vocab' is not OpenNMT-py 3.x's (lists of source and target tokens)")
    return OpenNMTCheckpoint(vars(checkpoint["opt"]), vocab, _tensors(checkpoint, path))


def _tensors(checkpoint: dict, path: Path) -> dict[str, torch.Tensor]:
    """The model's and the generator's tensors: in the checkpoint, or (`save_format: safetensors`) in the
    MODEL_step_N.safetensors file that onmt_train writes beside it, the generator's among them."""
    if "model" in checkpoint and "generator" in checkpoint:
        generator = {f"generator.{name}": tensor for name, tensor in checkpoint["generator"].items()}
        return dict(checkpoint["model"]) | generator
    weights = path.with_suffix(".safetensors")
    if not weights.is_file():
        raise OpenNMTImportError(
            f"{path} holds no weights ('model' and 'generator'), and {weights.name}, where onmt_train's save_format "
            "safetensors puts them, is not beside it"
        )
    from safetensors.torch import load_file

    return load_file(weights)
