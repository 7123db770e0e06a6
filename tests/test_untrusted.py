"""Untrusted files: checkpoints and data never make this package run code other than its own.

Weights are read from safetensors only (tests/test_checkpoints.py). What is left is checked here: the Trainer state a
resume reads (pickles, loaded by transformers with torch's restricted `weights_only` unpickler), the code files
that travel with a checkpoint (never imported by the installed package), and the package source itself.
"""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_rnn_seq2seq import cli
from helpers import TINY, TRAIN_PY, call_script

PACKAGE = Path(__file__).resolve().parents[1] / "hf_rnn_seq2seq"


class RunsCommandWhenUnpickled:
    """A pickle that creates `marker` when it is loaded by an unrestricted unpickler."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def checkpoint(tiny_run):
    """The shared run's first checkpoint (step 7 of 14), with its pickled optimizer, scheduler and RNG states."""
    return tiny_run.data_dir, tiny_run.folder / "checkpoint-7"


@pytest.mark.parametrize("state_file", ["optimizer.pt", "scheduler.pt", "rng_state.pth"])
def test_resume_refuses_training_state_that_would_run_code(state_file, checkpoint, tmp_path):
    data_dir, saved = checkpoint
    out = tmp_path / "run"
    shutil.copytree(saved, out / "checkpoint-7")
    marker = tmp_path / "code_ran"
    torch.save(RunsCommandWhenUnpickled(marker), out / "checkpoint-7" / state_file)
    result = subprocess.run(
        [sys.executable, str(TRAIN_PY), "--data_dir", str(data_dir), "--output_dir", str(out), *TINY, "--do_train",
         "--eval_strategy", "no", "--save_strategy", "no", "--max_steps", "9", "--resume_from_checkpoint", "last"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Weights only load failed" in result.stderr and "system" in result.stderr, result.stderr[-3000:]
    assert not marker.exists()


def test_resume_never_reads_pickled_weights(checkpoint, tmp_path):
    """transformers would load pytorch_model.bin where model.safetensors is missing; the resume refuses instead."""
    data_dir, saved = checkpoint
    resumed = tmp_path / "run" / "checkpoint-7"
    shutil.copytree(saved, resumed)
    (resumed / "model.safetensors").unlink()
    marker = tmp_path / "code_ran"
    torch.save(RunsCommandWhenUnpickled(marker), resumed / "pytorch_model.bin")
    result = subprocess.run(
        [sys.executable, str(TRAIN_PY), "--data_dir", str(data_dir), "--output_dir", str(resumed.parent), *TINY,
         "--do_train", "--eval_strategy", "no", "--save_strategy", "no", "--max_steps", "9",
         "--resume_from_checkpoint", str(resumed)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode != 0
    assert "has no model.safetensors: weights are read from safetensors only" in result.stderr, result.stderr[-3000:]
    assert "Weights only load failed" not in result.stderr  # refused before any unpickler saw the file
    assert not marker.exists()


def test_translating_a_folder_never_imports_its_code_files(model_folder, tmp_path, monkeypatch, capsys):
    """The installed package builds the model; the .py files saved beside the weights are for remote-code users."""
    folder, _, _ = model_folder
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    marker = tmp_path / "code_ran"
    for name in ("modeling_rnn_seq2seq.py", "configuration_rnn_seq2seq.py"):
        (copy / name).write_text(f"open({str(marker)!r}, 'w').close()\n")
    status, out, err = call_script(cli.translate_main, copy, "--max_new_tokens", "3", stdin="Ein Hund.\n",
                                   monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert status == 0, err
    assert len(out.splitlines()) == 1
    assert not marker.exists()


# Calls that run code or unpickle: forbidden anywhere in the package. torch.load is allowed only as
# torch.load(..., weights_only=True) (tensors and plain containers; the JoeyNMT importer reads checkpoints so), and
# yaml only through its safe loader.
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "torch.load", "pickle.load", "pickle.loads",
                   "marshal.loads", "yaml.load", "yaml.unsafe_load", "yaml.full_load", "numpy.load", "np.load",
                   "importlib.import_module", "runpy.run_path", "dill.load"}  # fmt: skip
FORBIDDEN_MODULES = {"pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "runpy", "importlib"}
HARMLESS_SUBMODULES = {"importlib.metadata"}  # reads installed packages' metadata, imports nothing


def dotted_name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted_name(node.value)}.{node.attr}"
    return ""


def imported_names(tree: ast.AST) -> dict[str, str]:
    """What each name bound by an import stands for: `from torch import load as l` binds l to torch.load."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update({alias.asname: alias.name for alias in node.names if alias.asname})
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update({alias.asname or alias.name: f"{node.module}.{alias.name}" for alias in node.names})
    return names


def called_names(tree: ast.AST) -> set[str]:
    """Dotted names of every call, with imported aliases resolved."""
    aliases, calls = imported_names(tree), set()
    for node in ast.walk(tree):
        name = dotted_name(node.func) if isinstance(node, ast.Call) else ""
        root, _, rest = name.partition(".")
        if root:  # "" for a call on a call's result, such as f().eval()
            names = {name, ".".join(filter(None, [aliases.get(root, root), rest]))}
            if _restricted(node, names):
                continue
            calls |= names
    return calls


# Loaders that run no code when told so: (the call, the keyword, the value that makes it safe).
RESTRICTED_LOADERS = (("torch.load", "weights_only", True), ("numpy.load", "allow_pickle", False),
                      ("np.load", "allow_pickle", False), ("yaml.load", "Loader", "yaml.BaseLoader"))  # fmt: skip


def _restricted(call: ast.Call, names: set[str]) -> bool:
    """Whether `call` is a loader told to run no code: torch.load(weights_only=True), numpy.load(allow_pickle=False),
    yaml.load(Loader=yaml.BaseLoader) (every value a string)."""
    for loader, keyword, safe in RESTRICTED_LOADERS:
        for k in call.keywords if loader in names else []:
            value = k.value.value if isinstance(k.value, ast.Constant) else dotted_name(k.value)
            if k.arg == keyword and value == safe:
                return True
    return False


def test_the_scan_sees_through_aliases():
    tree = ast.parse("from torch import load as read\nimport pickle as p\nread('x')\np.loads(b'')\n")
    assert {"torch.load", "pickle.loads"} <= called_names(tree)
    assert "torch.load" in called_names(ast.parse("import torch\ntorch.load('x', weights_only=False)\n"))
    assert "torch.load" not in called_names(ast.parse("import torch\ntorch.load('x', weights_only=True)\n"))
    assert "np.load" in called_names(ast.parse("import numpy as np\nnp.load('x', allow_pickle=True)\n"))
    assert "np.load" in called_names(ast.parse("import numpy as np\nnp.load('x')\n"))
    assert "np.load" not in called_names(ast.parse("import numpy as np\nnp.load('x', allow_pickle=False)\n"))
    assert "yaml.load" in called_names(ast.parse("import yaml\nyaml.load(t, Loader=yaml.UnsafeLoader)\n"))
    assert "yaml.load" not in called_names(ast.parse("import yaml\nyaml.load(t, Loader=yaml.BaseLoader)\n"))


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_package_neither_unpickles_nor_evaluates_code(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = called_names(tree)
    assert not calls & FORBIDDEN_CALLS, path
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    forbidden = {name for name in imported - HARMLESS_SUBMODULES if name.split(".")[0] in FORBIDDEN_MODULES}
    assert not forbidden, (path, forbidden)
    trusting = [node for node in ast.walk(tree) if isinstance(node, ast.keyword) and node.arg == "trust_remote_code"]
    assert not trusting, f"{path}: the installed package never needs remote code"


def test_the_hostile_state_file_does_run_code_under_a_plain_unpickler(tmp_path):
    """The file used above is a real exploit: only the restricted loader keeps it from running."""
    marker = tmp_path / "code_ran"
    torch.save(RunsCommandWhenUnpickled(marker), tmp_path / "optimizer.pt")
    torch.load(tmp_path / "optimizer.pt", weights_only=False)  # what a careless loader would do
    assert marker.exists()
