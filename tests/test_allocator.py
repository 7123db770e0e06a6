"""The allocator settings train.py makes: freed memory kept for the next training step, and handed back to the
kernel once data preparation is over. They change the whole process, so each check runs in a process of its own."""

import subprocess
import sys

import pytest

from hf_rnn_seq2seq.allocator import _glibc_function

CHECK = """
import numpy as np
from hf_rnn_seq2seq.allocator import give_back_freed_memory, keep_freed_memory_for_reuse

def resident_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20

assert keep_freed_memory_for_reuse()
before = resident_mb()
lengths = np.ones(50_000_000, dtype=np.int32)  # 191 MB, as the cleaning's length arrays at millions of pairs
del lengths
kept = resident_mb()
assert give_back_freed_memory()
print(before, kept, resident_mb())
"""


@pytest.mark.skipif(_glibc_function("malloc_trim") is None, reason="glibc's allocator only")
def test_freed_memory_is_kept_for_reuse_until_data_preparation_hands_it_back():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    before, kept, after = map(float, result.stdout.split())
    assert kept - before > 150, "a freed 191 MB array should stay resident for the next step to reuse"
    assert kept - after > 150, "give_back_freed_memory should return it to the kernel"
