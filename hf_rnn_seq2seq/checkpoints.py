"""Trainer checkpoints: which are complete, which to resume, and whether their weights fit the model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

logger = logging.getLogger(__name__)


def _checkpoints(output_dir: str | Path) -> dict[int, Path]:
    """`checkpoint-N` folders by step N."""
    return {int(path.name.split("-")[1]): path for path in Path(output_dir).glob("checkpoint-*")
            if path.name.split("-")[1].isdigit()}  # fmt: skip


def is_complete(checkpoint: Path) -> bool:
    """Whether the save of `checkpoint-N` finished.

    The Trainer writes trainer_state.json last, after the weights, optimizer, scheduler and RNG state, so a save that
    a crash cut short leaves a folder without it, with a truncated one, or without weights.
    """
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return state.get("global_step") == int(checkpoint.name.split("-")[1]) and (checkpoint / "model.safetensors").is_file()


def set_aside_incomplete(output_dir: str | Path) -> list[Path]:
    """Rename every cut-short `checkpoint-N` in `output_dir` to `incomplete-checkpoint-N` (kept, but out of the way of
    the Trainer, which would count it among the checkpoints it keeps and delete a good one instead); return them."""
    set_aside = []
    for checkpoint in _checkpoints(output_dir).values():
        if not is_complete(checkpoint):
            set_aside.append(checkpoint.rename(checkpoint.with_name(f"incomplete-{checkpoint.name}")))
            logger.warning("%s was not completely saved (a run stopped while writing it): set aside as %s",
                           checkpoint, set_aside[-1].name)  # fmt: skip
    return set_aside


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest complete `checkpoint-N` in `output_dir`, or None."""
    complete = [path for step, path in sorted(_checkpoints(output_dir).items()) if is_complete(path)]
    return str(complete[-1]) if complete else None


def check_checkpoint_weights(checkpoint: str | Path, model: torch.nn.Module) -> None:
    """Refuse a Trainer checkpoint whose weights would not be read from safetensors, or would not fill `model`.

    The Trainer itself falls back to unpickling `pytorch_model.bin` and loads with `strict=False`, so a missing
    tensor would only be logged and keep its random initial value.
    """
    path = Path(checkpoint) / "model.safetensors"
    if not path.is_file():
        raise ValueError(
            f"checkpoint {checkpoint} has no model.safetensors: weights are read from safetensors only "
            "(a pickle such as pytorch_model.bin is never loaded)"
        )
    try:
        with safe_open(path, framework="pt") as weights:
            saved = {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}
    except SafetensorError as error:
        raise ValueError(
            f"checkpoint weights {path} cannot be read ({error}): the file is truncated or corrupt"
        ) from error
    expected = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    tied = set(model._tied_weights_keys or {}) if model.config.tie_word_embeddings else set()
    problems = [f"missing: {name}" for name in sorted(expected.keys() - saved.keys() - tied)]
    problems += [
        f"wrong shape: {name} {saved[name]} != {expected[name]}"
        for name in sorted(expected.keys() & saved.keys())
        if saved[name] != expected[name]
    ]
    if problems:
        raise ValueError(f"checkpoint {checkpoint} does not fit the model; refusing to resume: " + "; ".join(problems))
