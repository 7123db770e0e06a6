"""What the benchmark scripts share: where the repository and the default corpus are, and what they do with a table.

The scripts run as `python benchmarks/NAME.py`, which puts this folder first on Python's import path: they import
this module as `common`.
"""

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from hf_rnn_seq2seq.corpus import default_data_dir
from hf_rnn_seq2seq.data import load_parallel_dir
from hf_rnn_seq2seq.text_files import normalize

REPO = Path(__file__).resolve().parents[1]


def add_corpus_argument(parser, languages: bool = False) -> None:
    """`--data_dir`: a folder of {split}.{lang}[.gz] files (Multi30k layout), by default train.py's; with
    `languages`, `--source_lang` and `--target_lang` too (default: the default job's de→en)."""
    default = default_data_dir()  # None outside a checkout without $HF_RNN_SEQ2SEQ_DATA: then it must be given
    parser.add_argument(
        "--data_dir", default=default and str(default), required=default is None, help="Multi30k-layout corpus folder"
    )
    if languages:
        parser.add_argument("--source_lang", default="de")
        parser.add_argument("--target_lang", default="en")


def test_pairs(data_dir, source_lang: str = "de", target_lang: str = "en") -> tuple[list[str], list[str]]:
    """The test split's sources, and its references normalised as the training data (`text_files.normalize`)."""
    test = load_parallel_dir(data_dir, source_lang, target_lang, splits=["test"])["test"]
    pairs = test["translation"]
    return [pair[source_lang] for pair in pairs], [normalize(pair[target_lang]) for pair in pairs]


@contextlib.contextmanager
def work_folder(given: str | Path | None, prefix: str) -> Iterator[Path]:
    """The folder given, kept after the run (to look into, or to continue from), or else a temporary one removed
    after it."""
    if given:
        yield Path(given)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        yield Path(folder)


def machine() -> str:
    """The CPUs as the tables name them: their count, model and bfloat16 units. Float32 results differ between CPU
    models in the last bits (and so, after training, in BLEU), and bfloat16 speed depends on the units."""
    fields = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags", "").split()
    units = [name for flag, name in (("avx512_bf16", "AVX-512 BF16"), ("amx_bf16", "AMX")) if flag in flags]
    return f"{os.cpu_count()} CPUs ({', '.join([fields.get('model name', 'model unknown'), *units])})"


def emit(lines: list[str], out: str | Path | None) -> str:
    """Print the results table, and write it to `out` when given."""
    table = "\n".join(lines) + "\n"
    print(table)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(table)
    return table


def run_measured(command: list[str], env: dict) -> tuple[float, float]:
    """(seconds, peak MiB of the summed resident memory of the command and its children, sampled every 0.2 s)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            tree = [watched, *watched.children(recursive=True)]
            peak = max(peak, sum(member.memory_info().rss for member in tree))
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.2)
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} exited with {process.returncode}")
    return time.perf_counter() - start, peak / 2**20
