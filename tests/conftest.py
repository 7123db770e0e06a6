"""Shared test setup: no Hub access, a throwaway HF_HOME and TMPDIR, the real data beside the repository."""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

# huggingface_hub reads these when it is imported, so they are set before any test module imports transformers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hf_home_")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)
# The scratch folders of the commands the tests start (torchrun's torchelastic_* logs, a benchmark's work folder) go
# into one folder removed at exit, instead of piling up in the machine's /tmp.
os.environ["TMPDIR"] = tempfile.mkdtemp(prefix="tests_tmp_")
atexit.register(shutil.rmtree, os.environ["TMPDIR"], ignore_errors=True)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from hf_rnn_seq2seq import RNNSeq2SeqConfig, RNNSeq2SeqForConditionalGeneration  # noqa: E402
from hf_rnn_seq2seq.tokenization import train_bpe_tokenizer  # noqa: E402
from helpers import MAX_NEW_TOKENS, REPO_ROOT, TINY, read, run  # noqa: E402

DATA_DIR = Path(os.environ.get("HF_RNN_SEQ2SEQ_DATA", REPO_ROOT.parent / "shared" / "data"))
MULTI30K = DATA_DIR / "multi30k"


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    if not (MULTI30K / "train.de.gz").exists():
        pytest.fail(f"the real Multi30k data is expected at {MULTI30K} (set HF_RNN_SEQ2SEQ_DATA to its parent)")
    return MULTI30K


@pytest.fixture(scope="session")
def multi30k_slice(multi30k_dir, tmp_path_factory):
    """Factory: a Multi30k-layout directory holding the first lines of the real files (plain text).

    ``multi30k_slice(train=300, validation=40, test=40)``; ``same_splits=True`` writes the first
    `train` pairs as every split (for memorisation). Directories are cached per arguments.
    """
    import gzip

    made = {}

    def make(train=300, validation=40, test=40, langs=("de", "en"), same_splits=False):
        key = (train, validation, test, tuple(langs), same_splits)
        if key not in made:
            out = tmp_path_factory.mktemp("multi30k_slice")
            sizes = {"train": train, "val": validation, "test_2016_flickr": test}
            for stem, size in sizes.items():
                source_stem, size = ("train", train) if same_splits else (stem, size)
                for lang in langs:
                    with gzip.open(multi30k_dir / f"{source_stem}.{lang}.gz", "rt", encoding="utf-8") as f:
                        lines = [next(f) for _ in range(size)]
                    (out / f"{stem}.{lang}").write_text("".join(lines), encoding="utf-8")
            made[key] = out
        return made[key]

    return make


@pytest.fixture(scope="module")
def model_folder(multi30k_dir, tmp_path_factory):
    """A tokenizer trained on real Multi30k lines and a small random model, saved as train.py saves them."""
    texts = read(multi30k_dir / "train.de.gz", 300) + read(multi30k_dir / "train.en.gz", 300)
    tokenizer = train_bpe_tokenizer(texts, vocab_size=400)
    torch.manual_seed(0)
    config = RNNSeq2SeqConfig(vocab_size=len(tokenizer), embedding_dim=16, hidden_size=24, dropout=0.0)
    model = RNNSeq2SeqForConditionalGeneration(config).eval()
    model.generation_config.max_new_tokens = MAX_NEW_TOKENS
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model, tokenizer


class TinyRun(NamedTuple):
    folder: Path  # the output folder: model, tokenizer, model card, results, checkpoint-7 and checkpoint-14
    data_dir: Path  # the slice it trained on: 200 training pairs, 24 validation, 24 test
    args: list[str]  # its arguments, without --output_dir


@pytest.fixture(scope="session")
def tiny_run(multi30k_slice, tmp_path_factory) -> TinyRun:
    """One tiny training run on the 200-pair slice, started as a user starts it (the console script, in a fresh
    process), shared by the CLI, Hub, README and untrusted-file tests: two epochs of 7 steps with a checkpoint
    after each, then the validation and test splits. Tests copy what they change."""
    data_dir = multi30k_slice(train=200, validation=24, test=24)
    folder = tmp_path_factory.mktemp("tiny_run") / "multi30k-tiny"
    args = [
        "--data_dir", str(data_dir), *TINY, "--do_train", "--do_eval", "--do_predict", "--eval_strategy", "no",
        "--save_strategy", "epoch", "--num_train_epochs", "2",
    ]  # fmt: skip
    script = Path(sys.executable).with_name("hf-rnn-seq2seq-train")
    run([str(script), *args, "--output_dir", str(folder)], cwd=folder.parent)
    return TinyRun(folder, data_dir, args)
