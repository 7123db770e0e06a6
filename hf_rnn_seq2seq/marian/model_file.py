"""Reading a Marian model: its `.npz` (numpy arrays only, never a pickle), the options it carries, its vocabularies.

Marian saves a model as one `.npz`: every parameter an array (matrices `[in, out]`, biases `[1, n]`), and the options
that define the architecture as YAML text in the entry `special:model.yml` (an int8 array, NUL-terminated). Beside it,
`MODEL.npz.decoder.yml` lists the vocabularies and the decoding options that `marian-decoder` uses with it.
Vocabularies are YAML (or JSON) maps `token: id` over pre-segmented text (tokens such as `no` or `30` are strings),
or a SentencePiece model (`.spm`) whose pieces are the vocabulary, in its own id order, and which segments the text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from .settings import MarianImportError

OPTIONS_ENTRY = "special:model.yml"


@dataclass
class MarianModel:
    options: dict  # special:model.yml
    tensors: dict[str, torch.Tensor]  # float32, biases as vectors
    decoder_options: dict = field(default_factory=dict)  # MODEL.npz.decoder.yml, where it exists
    vocabularies: list[Path] = field(default_factory=list)  # as that file lists them, resolved beside the model


def read_model(path: Path) -> MarianModel:
    """The arrays of `path` and the options they carry (`allow_pickle=False`: an object array is refused)."""
    if not path.is_file():
        raise MarianImportError(f"Marian model {path} not found")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            entries = {name: arrays[name] for name in arrays.files}
    except (ValueError, OSError) as error:  # numpy's refusal of pickled arrays is a ValueError
        raise MarianImportError(f"{path} is not a Marian .npz model without pickles ({error})") from error
    if OPTIONS_ENTRY not in entries:
        raise MarianImportError(
            f"{path} has no '{OPTIONS_ENTRY}' entry: not a model saved by Marian (Nematus's own .npz files keep their "
            "options in a .json file, which this importer does not read yet; Marian's `--type nematus` models work)"
        )
    options = yaml.safe_load(entries.pop(OPTIONS_ENTRY).tobytes().decode("utf-8").rstrip("\x00"))
    tensors = {}
    for name, array in entries.items():
        if array.dtype != np.float32:
            raise MarianImportError(f"{path}: {name} is {array.dtype}, not float32 (quantised or packed models are not "
                                    "supported)")  # fmt: skip
        tensor = torch.from_numpy(array.copy())
        tensors[name] = tensor[0] if tensor.dim() == 2 and tensor.shape[0] == 1 else tensor
    decoder_options, vocabularies = _decoder_file(path)
    return MarianModel(options, tensors, decoder_options, vocabularies)


def _decoder_file(path: Path) -> tuple[dict, list[Path]]:
    """MODEL.npz.decoder.yml's options and vocabularies (relative paths read as relative to the model's folder, where
    marian writes them as it was given them), or nothing where the file is absent."""
    decoder_file = path.with_name(path.name + ".decoder.yml")
    if not decoder_file.is_file():
        return {}, []
    options = yaml.safe_load(decoder_file.read_text(encoding="utf-8")) or {}
    named = [Path(name) for name in options.get("vocabs", [])]
    vocabularies = [name if name.is_absolute() else path.parent / name for name in named]
    return options, vocabularies


def read_vocabularies(source: Path, target: Path):
    """The source and target vocabularies as lists of tokens by id, and the segmentation they imply: words split at
    spaces for YAML/JSON ones, the model's for one SentencePiece model serving both sides."""
    from ..joeynmt.segmentation import read_sentencepiece_model
    from ..joeynmt.settings import Segmentation

    for path in (source, target):
        if not path.is_file():
            raise MarianImportError(f"vocabulary file {path} not found")
    if source.suffix == ".spm" or target.suffix == ".spm":
        if source.read_bytes() != target.read_bytes():
            raise MarianImportError(
                f"{source} and {target}: SentencePiece vocabularies are supported where one model serves both sides "
                "(one tokenizer segments sources and targets here)"
            )
        pieces = [piece for piece, _, _ in read_sentencepiece_model(source).pieces]
        segmentation = Segmentation(level="bpe", lowercase=False, tokenizer_type="sentencepiece", model_file=source)
        return pieces, pieces, segmentation
    return read_vocabulary(source), read_vocabulary(target), Segmentation(level="word", lowercase=False)


def read_vocabulary(path: Path) -> list[str]:
    """A Marian vocabulary file (`.yml`/`.yaml`/`.json`: token -> id) as the list of tokens by id."""
    if path.suffix not in (".yml", ".yaml", ".json"):
        raise MarianImportError(f"{path}: not a YAML or JSON vocabulary (factored vocabularies are not supported)")
    text = path.read_text(encoding="utf-8")
    # Every key and value a string (BaseLoader): `no`, `true` or `30` are tokens, not YAML's booleans and numbers.
    entries = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=yaml.BaseLoader)
    ids = {str(token): int(token_id) for token, token_id in entries.items()}
    tokens = sorted(ids, key=ids.get)
    if [ids[token] for token in tokens] != list(range(len(tokens))):
        raise MarianImportError(f"{path}: the ids are not 0..{len(tokens) - 1}, each once")
    return tokens
