"""Helpers shared by several test files (fixtures live in conftest.py)."""

import subprocess
import sys
import tomllib
from pathlib import Path

import torch
from packaging.requirements import Requirement

from hf_rnn_seq2seq import ATTENTION_TYPES, RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPAT_MATRIX = REPO_ROOT / "compat-matrix.toml"
PYPROJECT = REPO_ROOT / "pyproject.toml"
CONSTRAINTS = REPO_ROOT / "constraints.txt"
COMPAT_CACHE = REPO_ROOT / ".cache" / "compat"


def compat_releases() -> list[dict[str, str]]:
    """The rows of compat-matrix.toml, oldest transformers first."""
    return tomllib.loads(COMPAT_MATRIX.read_text())["release"]


def package_transformers_range() -> tuple[str, str]:
    """The oldest transformers pyproject.toml admits (its >= bound) and the newest tested, which constraints.txt pins."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    requirement = next(Requirement(line) for line in dependencies if Requirement(line).name == "transformers")
    oldest = next(spec.version for spec in requirement.specifier if spec.operator == ">=")
    newest = next(line.split("==")[1] for line in CONSTRAINTS.read_text().splitlines() if line.startswith("transformers=="))
    return oldest, newest


def transformers_folder(release: dict[str, str]) -> Path:
    """A folder holding `release`'s transformers, tokenizers and huggingface_hub with what they require (not torch,
    which transformers does not require: it comes from the running environment), installed on first use and reused
    after. Put it first on PYTHONPATH."""
    folder = COMPAT_CACHE / f"transformers-{release['transformers']}"
    pins = [f"{name}=={version}" for name, version in release.items()]
    done = folder / ".installed"
    if not done.exists() or done.read_text().split() != pins:
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-conflicts", "--upgrade"]
        subprocess.run([*pip, "--target", str(folder), *pins], check=True)
        done.write_text(" ".join(pins) + "\n")
    return folder


PAD, BOS, EOS = 0, 1, 2
VOCAB = 40

# Every attention type; input feeding where it changes the computation path; the LSTM cell on both paths.
VARIANTS = [(attention, False, "gru") for attention in ATTENTION_TYPES] + [
    ("luong_general", True, "gru"),
    ("bahdanau", True, "gru"),
    ("luong_general", False, "lstm"),
    ("bahdanau", True, "lstm"),
]


def tiny_config(attention_type="luong_general", input_feeding=False, **overrides) -> RNNSeq2SeqConfig:
    values = dict(
        vocab_size=VOCAB,
        embedding_dim=12,
        hidden_size=16,
        num_encoder_layers=2,
        num_decoder_layers=2,
        attention_type=attention_type,
        input_feeding=input_feeding,
        dropout=0.0,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
    )
    if attention_type == "luong_dot":
        values["encoder_hidden_size"] = 8  # two directions of 8 match the decoder's 16
    values.update(overrides)
    return RNNSeq2SeqConfig(**values)


def tiny_model(attention_type="luong_general", input_feeding=False, seed=0, **overrides):
    torch.manual_seed(seed)
    model = RNNSeq2SeqForConditionalGeneration(tiny_config(attention_type, input_feeding, **overrides)).eval()
    # Random small models favour no token much; a sharper output layer makes EOS appear at varied positions.
    with torch.no_grad():
        model.lm_head.weight.mul_(4.0)
    return model


def padded_batch(seed=0, lengths=(7, 4, 1, 6)):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), max(lengths)), PAD)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(3, VOCAB, (length,), generator=generator)
        mask[row, :length] = 1
    return ids, mask


def cut_at_eos(sequence: list[int]) -> list[int]:
    """Generated rows are filled after EOS (with pad or EOS): compare up to the first EOS."""
    return sequence[: sequence.index(EOS) + 1] if EOS in sequence else sequence


def as_lists(sequences: torch.Tensor) -> list[list[int]]:
    return [cut_at_eos(row) for row in sequences.tolist()]


if __name__ == "__main__":
    # .ci/run: the folder holding the oldest transformers release the package admits, for its second test run.
    oldest = package_transformers_range()[0]
    print(transformers_folder(next(release for release in compat_releases() if release["transformers"] == oldest)))
