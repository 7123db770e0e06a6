"""Process-wide tuning of glibc's allocator for CPU training.

Every training step allocates tensors of (target tokens x vocabulary) floats, a hundred megabytes and more. glibc
serves allocations that large with fresh `mmap`s and unmaps them when freed, so each step pays a page fault (and
the kernel zeroing a page) for every 4 KiB of them again: on a 2-core machine a 5,888 x 8,000 fill took 390 ms, ten
times its memory-bandwidth cost. Serving everything from the heap, and not handing freed heap back to the kernel,
lets each step reuse the pages of the last (the remedy PyTorch's CPU performance guide gets with jemalloc or
tcmalloc). Called by the training entry point only, never on import: it changes the whole process.
"""

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

# mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory_for_reuse() -> bool:
    """Make glibc keep freed memory for the next allocation instead of returning it; False where there is no glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        logger.info("no glibc mallopt here: the allocator keeps its defaults")
        return False
    # mallopt returns 1 on success. Largest int: never trim the heap's top.
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
