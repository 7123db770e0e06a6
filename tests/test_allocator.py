"""The allocator settings train.py makes: freed memory kept for the next training step, and handed back to the
kernel once data preparation is over; the translate and evaluate commands keep freed memory too. They change the whole
process, so each check runs in a process of its own."""

import subprocess
import sys

import pytest

from hf_rnn_seq2seq.allocator import _glibc_function

RESIDENT = """
import numpy as np

def resident_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20

def resident_after_a_freed_array():
    before = resident_mb()
    lengths = np.ones(50_000_000, dtype=np.int32)  # 191 MB, as the cleaning's length arrays at millions of pairs
    del lengths
    return before, resident_mb()
"""

CHECK = RESIDENT + """
from hf_rnn_seq2seq.allocator import give_back_freed_memory, keep_freed_memory_for_reuse

assert keep_freed_memory_for_reuse()
before, kept = resident_after_a_freed_array()
assert give_back_freed_memory()
print(before, kept, resident_mb())
"""


@pytest.mark.skipif(_glibc_function("malloc_trim") is None, reason="glibc's allocator only")
def test_freed_memory_is_kept_for_reuse_until_data_preparation_hands_it_back():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    before, kept, after = map(float, result.stdout.split())
    assert kept - before > 150, "a freed 191 MB array should stay resident for the next step to reuse"
    assert kept - after > 150, "give_back_freed_memory should return it to the kernel"


# A command refused for its arguments (a bad --window, a missing file) has set the allocator up by then.
COMMAND = RESIDENT + """
import sys
from hf_rnn_seq2seq import cli

try:
    getattr(cli, sys.argv[1])(sys.argv[2:])
except SystemExit:
    pass
print(*resident_after_a_freed_array())
"""


@pytest.mark.skipif(_glibc_function("mallopt") is None, reason="glibc's allocator only")
@pytest.mark.parametrize("command, args", [
    ("translate_main", ["no-model", "--window", "0"]),
    ("evaluate_main", ["no-model", "--source", "missing.de", "--reference", "missing.en"]),
    ("plot_attention_main", ["--help"]),  # the control: a command that does not decode keeps glibc's defaults
])
def test_the_translate_and_evaluate_commands_keep_freed_memory_for_reuse(command, args, tmp_path):
    result = subprocess.run([sys.executable, "-c", COMMAND, command, *args], capture_output=True, text=True,
                            check=True, cwd=tmp_path)
    before, after = map(float, result.stdout.split()[-2:])
    assert (after - before > 150) == (command != "plot_attention_main")
