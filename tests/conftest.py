"""Shared test setup: no Hub access, a throwaway HF_HOME, the real data beside the repository."""

import os
import tempfile
from pathlib import Path

# huggingface_hub reads these when it is imported, so they are set before any test module imports transformers.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hf_home_")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("HF_RNN_SEQ2SEQ_DATA", REPO_ROOT.parent / "shared" / "data"))
MULTI30K = DATA_DIR / "multi30k"


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    if not (MULTI30K / "train.de.gz").exists():
        pytest.fail(f"the real Multi30k data is expected at {MULTI30K} (set HF_RNN_SEQ2SEQ_DATA to its parent)")
    return MULTI30K
