"""Give freed heap memory back to the OS between the chunks of a long input.

glibc's allocator keeps freed blocks in its heap; when a long input is processed chunk by
chunk, each chunk's large temporaries (conv activations, decoded blocks) are freed but the
heap they leave behind is reused only partly, so resident memory grew with the number of
chunks (EnCodec: 1.33 GB peak for a 10-minute input against 0.92 GB for 8 s, measured with
``benchmarks/perf_memory.py``). :func:`trim` after each chunk releases those free pages
(``malloc_trim(0)``), so the peak no longer depends on the input's length. Lowering the
mmap threshold would do the same but made EnCodec's convolutions 2x slower (page faults on
every large temporary); a trim per chunk costs well under a millisecond.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def trim() -> bool:
    """Release free heap pages to the OS; True when the C library could do it."""
    fn = _malloc_trim()
    return bool(fn is not None and fn(0) >= 0)
