"""Shared test setup: no Hub access, a throwaway HF_HOME, the real data beside the repository."""

import os
import tempfile
import textwrap
from pathlib import Path

# huggingface_hub reads these when it is imported, so they are set before any test module imports transformers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hf_home_")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]

# The start of a script run in a fresh interpreter where importing hf_rnn_seq2seq fails, as on a machine that never
# installed it (the package is installed in the test environment, so it must be blocked, not just absent).
WITHOUT_PACKAGE = textwrap.dedent(
    """
    import importlib.abc, sys

    class BlockPackage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "hf_rnn_seq2seq":
                raise ModuleNotFoundError(name)

    sys.meta_path.insert(0, BlockPackage())
    """
)
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
