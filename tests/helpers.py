"""Helpers shared by several test files (fixtures live in conftest.py)."""

import gzip
import io
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hf_rnn_seq2seq import ATTENTION_TYPES, RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration
from hf_rnn_seq2seq.arguments import CONDITIONAL_GRU_SETTINGS
from hf_rnn_seq2seq.translation import cut_at_eos

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPAT_MATRIX = REPO_ROOT / "compat-matrix.toml"
PYPROJECT = REPO_ROOT / "pyproject.toml"
CONSTRAINTS = REPO_ROOT / "constraints.txt"
TRAIN_PY = REPO_ROOT / "train.py"
REMOTE_CODE_WORKER = REPO_ROOT / "tests" / "remote_code_worker.py"
FRESH_PROCESS = REPO_ROOT / "tests" / "fresh_process.py"
# What every variant computed before a refactor meant to change no computation (tests/test_reference_outputs.py).
REFERENCE_OUTPUTS = REPO_ROOT / "tests" / "data" / "reference_outputs.json"
TOKEN = "hf_test_token"  # the local Hub stand-in's
MAX_NEW_TOKENS = 12  # the generation limit of the model_folder fixture's model
COMPAT_CACHE = REPO_ROOT / ".cache" / "compat"
JOEYNMT_PYTHON = REPO_ROOT / ".cache" / "joeynmt-venv" / "bin" / "python"  # JoeyNMT's own environment (.ci/run)


# A model small enough for a few seconds of training on two cores.
TINY = [
    "--vocab_size", "400",
    "--embedding_dim", "32",
    "--hidden_size", "64",
    "--encoder_hidden_size", "32",
    "--per_device_train_batch_size", "32",
    "--per_device_eval_batch_size", "64",
    "--max_source_length", "128",  # no pair of the slices is longer: none is dropped
    "--max_target_length", "128",
    "--val_max_target_length", "48",
    "--num_beams", "2",
    "--disable_tqdm", "True",
    "--seed", "0",
]  # fmt: skip


def run(command, cwd, env=None, timeout=300):
    """Run a command (by default with the test environment: offline, temporary HF_HOME); fail with its output."""
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ) if env is None else env,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        pytest.fail(f"{command[:3]} exited with {result.returncode}\n--- stdout\n{result.stdout[-6000:]}\n"
                    f"--- stderr\n{result.stderr[-6000:]}")
    return result


def in_fresh_process(command: str, *args, cwd, env=None):
    """Run one of tests/fresh_process.py's commands; returns (its result, read from its last line of output, and the
    finished process)."""
    result = run([sys.executable, str(FRESH_PROCESS), command, *map(str, args)], cwd=cwd, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1]), result


def train(args, cwd):
    return run([sys.executable, str(TRAIN_PY), *args], cwd)


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def hub_env(hub, tmp_path, name, token=None):
    """The environment of a Hub client process: this server, online, its own empty HF_HOME, and the pinned
    huggingface_hub (no PYTHONPATH: the stand-in server speaks the upload protocol of the pinned release)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "PYTHONPATH")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / f"hf_home_{name}"), HF_HUB_DISABLE_TELEMETRY="1")
    if token:
        env["HF_TOKEN"] = token
    return env


def call_script(main, *args, stdin="", monkeypatch=None, capsys=None):
    """Run a console script's function in-process; returns (exit status, stdout, stderr). The scripts' allocator
    settings are left out: they would outlive the call in the test process (tests/test_allocator.py checks them)."""
    monkeypatch.setattr("hf_rnn_seq2seq.cli.keep_freed_memory_for_reuse", lambda: True)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8"))
    try:
        main(list(map(str, args)))
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


def read(path, count):
    """The first `count` lines of a gzipped text file, without their line ends."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [next(handle).rstrip("\n") for _ in range(count)]


def compat_releases() -> list[dict[str, str]]:
    """The rows of compat-matrix.toml, oldest transformers first."""
    return tomllib.loads(COMPAT_MATRIX.read_text())["release"]


def pinned_versions() -> dict[str, str]:
    """constraints.txt as {normalised package name: version}."""
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def package_transformers_range() -> tuple[str, str]:
    """The oldest transformers pyproject.toml admits (its >= bound) and the newest tested, which constraints.txt pins."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    requirement = next(Requirement(line) for line in dependencies if Requirement(line).name == "transformers")
    oldest = next(spec.version for spec in requirement.specifier if spec.operator == ">=")
    return oldest, pinned_versions()["transformers"]


def _pins(release: dict[str, str]) -> list[str]:
    return [f"{name}=={version}" for name, version in release.items()]


def _compat_folder(release: dict[str, str]) -> tuple[Path, bool]:
    """Where `release` is installed, and whether its install there finished (with these pins)."""
    folder = COMPAT_CACHE / f"transformers-{release['transformers']}"
    done = folder / ".installed"
    return folder, done.exists() and done.read_text().split() == _pins(release)


def transformers_folder(release: dict[str, str]) -> Path:
    """The folder holding `release`'s transformers, tokenizers and huggingface_hub with what they require (not torch,
    which transformers does not require: it comes from the running environment). Put it first on PYTHONPATH."""
    folder, installed = _compat_folder(release)
    if not installed:
        raise FileNotFoundError(
            f"transformers {release['transformers']} is not installed in {folder}: run "
            "`.venv/bin/python tests/helpers.py install-compat` (.ci/run does)"
        )
    return folder


def install_compat_releases() -> None:
    """Install every release of compat-matrix.toml in its own folder under .cache/compat/ (those not there yet),
    four at a time: each install mostly waits on downloads and unpacking."""
    from concurrent.futures import ThreadPoolExecutor

    def install(release):
        folder, installed = _compat_folder(release)
        if not installed:
            pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-warn-conflicts", "--upgrade"]
            subprocess.run([*pip, "--target", str(folder), *_pins(release)], check=True)
            (folder / ".installed").write_text(" ".join(_pins(release)) + "\n")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(install, compat_releases()))  # list(): re-raises the first failed install


PAD, BOS, EOS = 0, 1, 2
VOCAB = 40

# Decoders that tests name as an attention type: the settings they stand for.
DECODERS = {
    # The conditional GRU as Marian's s2s and Nematus build it: additive attention, deep output, mean bridge.
    "cgru": dict(decoder_type="cgru", **CONDITIONAL_GRU_SETTINGS),
    # With Marian's layer normalisation (whose keys' normalisation carries the scorer's bias).
    "cgru_layer_norm": dict(decoder_type="cgru", **CONDITIONAL_GRU_SETTINGS, layer_norm=True,
                            attention_query_bias=False),
}
# Every attention type; input feeding where it changes the computation path; the LSTM cell on both paths; the
# conditional GRU.
VARIANTS = [(attention, False, "gru") for attention in ATTENTION_TYPES] + [
    ("luong_general", True, "gru"),
    ("bahdanau", True, "gru"),
    ("luong_general", False, "lstm"),
    ("bahdanau", True, "lstm"),
    ("cgru", False, "gru"),
    ("cgru_layer_norm", False, "gru"),
]


def variant_name(attention_type, input_feeding, rnn_type) -> str:
    return f"{attention_type}-{'feeding' if input_feeding else 'plain'}-{rnn_type}"


def tiny_config(attention_type="luong_general", input_feeding=False, **overrides) -> RNNSeq2SeqConfig:
    """A small config; `attention_type` is the config's or a name in DECODERS."""
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
    values.update(DECODERS.get(attention_type, {}))
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


def as_lists(sequences: torch.Tensor) -> list[list[int]]:
    """Generated rows up to their first EOS, to compare."""
    return [cut_at_eos(row, EOS) for row in sequences.tolist()]


def run_remote_code_worker(inputs: dict, folders: list[Path], workdir: Path, pythonpath: Path | None = None,
                           save_to: Path | None = None) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """Run tests/remote_code_worker.py on `folders` in a fresh process in `workdir` (offline, an empty HF_HOME, the
    package blocked), with `pythonpath` first on the path or none at all; return its metadata and outputs."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    save_file(inputs, workdir / "inputs.safetensors")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(workdir / "hf_home"))  # empty: remote code is copied in anew
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    command = [sys.executable, str(REMOTE_CODE_WORKER), "inputs.safetensors", "outputs.safetensors", *map(str, folders)]
    if save_to is not None:
        command += ["--save-to", str(save_to)]
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{pythonpath or 'this environment'}:\n{done.stderr[-4000:]}"
    with safe_open(workdir / "outputs.safetensors", "pt") as f:
        return f.metadata(), {key: f.get_tensor(key) for key in f.keys()}


def saved_reference_outputs() -> dict[str, torch.Tensor]:
    """REFERENCE_OUTPUTS as tensors (exact: JSON holds each float32 as the float64 it widens to)."""
    saved = json.loads(REFERENCE_OUTPUTS.read_text())
    return {key: torch.tensor(entry["values"], dtype=getattr(torch, entry["dtype"])) for key, entry in saved.items()}


def reference_outputs() -> dict[str, torch.Tensor]:
    """Logits, base-model states, greedy and beam-4 ids and cross-attentions of every variant (seeded tiny models),
    saved as `outputs_of` computes them, as VARIANT.QUANTITY."""
    from remote_code_worker import outputs_of

    ids, mask = padded_batch(seed=21)
    inputs = {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": ids[:, :5].clone()}
    outputs = {}
    for variant in VARIANTS:
        attention_type, input_feeding, rnn_type = variant
        model = tiny_model(attention_type, input_feeding, rnn_type=rnn_type)
        computed = outputs_of(model, model.model, inputs)
        outputs.update({f"{variant_name(*variant)}.{key}": value for key, value in computed.items()})
    return outputs


if __name__ == "__main__":  # for .ci/run, and by hand
    if sys.argv[1:] == ["install-compat"]:
        install_compat_releases()
    elif sys.argv[1:] in (["write-reference"], ["add-new-variants-to-reference"]):
        # write-reference: only for a change that is meant to change what the model computes; the other command adds
        # the variants that the file does not hold yet and leaves every saved value as it is.
        saved = json.loads(REFERENCE_OUTPUTS.read_text()) if sys.argv[1] == "add-new-variants-to-reference" else {}
        saved.update({key: {"dtype": str(value.dtype).removeprefix("torch."), "values": value.tolist()}
                      for key, value in reference_outputs().items() if key not in saved})  # fmt: skip
        REFERENCE_OUTPUTS.write_text(json.dumps(saved, separators=(",", ":")) + "\n")
    elif sys.argv[1:] == ["oldest-package-transformers"]:  # the folder for the package's second test run
        oldest = package_transformers_range()[0]
        print(transformers_folder(next(release for release in compat_releases() if release["transformers"] == oldest)))
    else:
        raise SystemExit(
            "usage: python tests/helpers.py install-compat | oldest-package-transformers | write-reference | "
            "add-new-variants-to-reference"
        )
