"""Process-wide tuning of glibc's allocator for CPU training.

Every training step allocates tensors of (target tokens x vocabulary) floats, a hundred megabytes and more. glibc
serves allocations that large with fresh `mmap`s and unmaps them when freed, so each step pays a page fault (and
the kernel zeroing a page) for every 4 KiB of them again: on a 2-core machine a 5,888 x 8,000 fill took 390 ms, ten
times its memory-bandwidth cost. Serving everything from the heap, and not handing freed heap back to the kernel,
lets each step reuse the pages of the last (the remedy PyTorch's CPU performance guide gets with jemalloc or
tcmalloc). What data preparation freed is handed back once, before training (`give_back_freed_memory`). Decoding
gains too: a beam-5 step of the default model allocates three float32 (320 x 8,000) score tensors in generate(),
and bfloat16 translation of Multi30k's test set got 7-18% faster (benchmarks/results/translate_speed.md). Called by
the training, translate and evaluate entry points only, never on import: it changes the whole process.
"""

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

# mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def _glibc_function(name: str):
    """The C library's function `name`, or None where the C library is not glibc (or has no such function)."""
    library = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(library), name) if library else None
    except (OSError, AttributeError):
        return None


def keep_freed_memory_for_reuse() -> bool:
    """Make glibc keep freed memory for the next allocation instead of returning it; False where there is no glibc."""
    mallopt = _glibc_function("mallopt")
    if mallopt is None:
        logger.info("no glibc mallopt here: the allocator keeps its defaults")
        return False
    # mallopt returns 1 on success. Largest int: never trim the heap's top.
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def give_back_freed_memory() -> bool:
    """Return the heap's free pages to the kernel now (glibc's malloc_trim); False where there is no glibc.

    For the end of data preparation: its arrays of a few bytes a pair (the cleaning's lengths) are freed by then,
    but a heap that is never trimmed keeps their pages, and the training steps' buffers are then allocated above
    them: peak memory would grow with the corpus (0.24 GB at 10M pairs) though nothing of it is in use.
    """
    malloc_trim = _glibc_function("malloc_trim")
    return malloc_trim is not None and bool(malloc_trim(0))
