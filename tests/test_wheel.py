"""The package as a user installs it: the wheel, built from these sources, installed with its dependencies from the
pinned set (constraints.txt) into a fresh virtual environment outside the checkout, and its console scripts run from
a folder that is not the checkout, with the checkout on no import path: a tiny training run to a complete model
folder, a translation with it, the demo's help, and the message where no corpus is given and none is found."""

import os
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from packaging.requirements import Requirement

from hf_rnn_seq2seq.arguments import DEFAULT_MODEL_CARD_TEMPLATE
from hf_rnn_seq2seq.corpus import DATA_ENV_VARIABLE
from hf_rnn_seq2seq.data import normalize
from helpers import CONSTRAINTS, PYPROJECT, REPO_ROOT, TINY, read_json, run

PACKAGE = "hf_rnn_seq2seq"
# A fresh environment's dependencies (torch, gradio and the rest, mostly from pip's cache) take minutes to unpack on a
# loaded 2-core machine; a tiny training run takes about one.
INSTALL_TIMEOUT = 1800
RUN_TIMEOUT = 900


def user_env(hf_home: Path) -> dict[str, str]:
    """A user's environment: offline, an empty HF_HOME, nothing that points at the checkout or its data."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV", DATA_ENV_VARIABLE)}  # fmt: skip
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(hf_home))
    return env


def build_wheel(work: Path) -> Path:
    """The wheel of these sources, built from a copy of them (setuptools writes build/ and an .egg-info beside the
    sources it builds) with this environment's setuptools, which constraints.txt pins (no download)."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    for requirement in map(Requirement, project["build-system"]["requires"]):
        try:
            installed = version(requirement.name)
        except PackageNotFoundError:
            installed = None
        if installed is None or installed not in requirement.specifier:
            pytest.fail(f"building the wheel needs {requirement} in this environment, which has {installed}")
    sources = work / "sources"
    sources.mkdir()
    for name in ("pyproject.toml", project["project"]["readme"]):
        shutil.copy(REPO_ROOT / name, sources / name)
    shutil.copytree(REPO_ROOT / PACKAGE, sources / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    dist = work / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dist),
         str(sources)], cwd=work, timeout=RUN_TIMEOUT)  # fmt: skip
    (wheel,) = dist.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin/ folder of a fresh virtual environment, outside the checkout, holding the wheel with the demo extra
    and their dependencies at the pinned versions."""
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work)
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=work, timeout=RUN_TIMEOUT)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    # --no-compile: byte-compiling every module of torch, gradio and the rest is most of the install's CPU time; the
    # few modules the tests import are compiled as they are imported.
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile", "-c", str(CONSTRAINTS),
         f"{wheel}[demo]"], cwd=work, env=env, timeout=INSTALL_TIMEOUT)  # fmt: skip
    return venv / "bin"


def user_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An empty folder outside the checkout to run commands in, and the user's environment there."""
    folder = tmp_path / "user"
    folder.mkdir()
    return folder, user_env(tmp_path / "hf_home")


def test_the_installed_package_is_the_wheels_and_holds_the_model_card_template(installed, tmp_path):
    folder, env = user_folder(tmp_path)
    code = ("import importlib.resources, hf_rnn_seq2seq; print(hf_rnn_seq2seq.__file__); "
            "print(importlib.resources.files('hf_rnn_seq2seq').joinpath('model_card.md').read_text('utf-8'), "
            "end='')")  # fmt: skip
    result = run([str(installed / "python"), "-c", code], cwd=folder, env=env)
    location, template = result.stdout.split("\n", 1)
    assert Path(location).is_relative_to(installed.parent) and not Path(location).is_relative_to(REPO_ROOT)
    assert template == DEFAULT_MODEL_CARD_TEMPLATE.read_text(encoding="utf-8")


def test_train_translate_and_the_demo_run_from_the_installed_package(installed, multi30k_slice, tmp_path):
    """An LSTM with Bahdanau attention trained to a complete folder whose card says so; the installed translate
    script reproduces the run's test translations; the demo script, with the demo extra, starts and helps."""
    data_dir = multi30k_slice(train=200, validation=24, test=24)
    folder, env = user_folder(tmp_path)
    run([str(installed / "hf-rnn-seq2seq-train"), "--data_dir", str(data_dir), "--output_dir", "lstm-bahdanau", *TINY,
         "--rnn_type", "lstm", "--attention_type", "bahdanau", "--do_train", "--do_eval", "--do_predict",
         "--eval_strategy", "no", "--save_strategy", "no", "--max_steps", "4"], cwd=folder, env=env,
        timeout=RUN_TIMEOUT)  # fmt: skip
    out = folder / "lstm-bahdanau"
    for name in (
        "config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "configuration_rnn_seq2seq.py", "modeling_rnn_seq2seq.py", "README.md",
        "test_results.json", "generated_predictions.txt", "train_results.json", "eval_results.json",
    ):  # fmt: skip
        assert (out / name).is_file(), name
    card = ModelCard.load(out / "README.md")
    title = next(line for line in card.text.splitlines() if line.startswith("# "))
    assert title.endswith("LSTM translation model") and "GRU" not in card.text and "lstm" in card.data.tags
    assert "Bahdanau (additive) attention" in card.text
    assert f"| BLEU | {read_json(out / 'test_results.json')['bleu']:.2f} |" in card.text

    sources = (data_dir / "test_2016_flickr.de").read_text(encoding="utf-8").splitlines()
    (folder / "sources.txt").write_text("".join(normalize(line) + "\n" for line in sources), encoding="utf-8")
    translated = run([str(installed / "hf-rnn-seq2seq-translate"), "lstm-bahdanau", "--input", "sources.txt",
                      "--no_progress"], cwd=folder, env=env, timeout=RUN_TIMEOUT)  # fmt: skip
    predicted = (out / "generated_predictions.txt").read_text(encoding="utf-8").splitlines()
    assert translated.stdout.splitlines() == predicted and len(predicted) == len(sources)

    # The demo script loads its page, and with it gradio (the demo extra), before it reads its arguments.
    helped = run([str(installed / "hf-rnn-seq2seq-demo"), "--help"], cwd=folder, env=env, timeout=RUN_TIMEOUT)
    assert helped.stdout.startswith("usage: hf-rnn-seq2seq-demo")


def test_without_a_corpus_the_installed_train_script_says_what_to_pass(installed, tmp_path):
    """No data argument, no $HF_RNN_SEQ2SEQ_DATA, no source checkout, offline: a message, not a traceback."""
    folder, env = user_folder(tmp_path)
    result = subprocess.run([str(installed / "hf-rnn-seq2seq-train"), "--output_dir", "out", "--max_steps", "1"],
                            cwd=folder, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                            stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode != 0
    assert "hf-rnn-seq2seq-train: error: no corpus given: pass --data_dir" in result.stderr, result.stderr[-3000:]
    assert "--dataset_name" in result.stderr and "--train_file" in result.stderr
    assert "Traceback" not in result.stderr
