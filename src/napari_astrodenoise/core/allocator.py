"""glibc's malloc told to keep the network's freed blocks while tiles run, not hand them back.

Every batch of tiles allocates the network's activations afresh (torch's CPU allocator does
not cache): for four 256 px tiles each is 16 MiB, and a dozen are alive at once. glibc's
malloc serves large blocks with their own ``mmap`` and hands freed memory at the top of its
heap back to the system; its thresholds adapt, but only up to 32 MiB (mmap) and twice that
(trim). So after each batch much of the activations went back to the system, and the next
batch faulted them in again, zeroed, page by page: 6000-9000 page faults per fine-tuning
step, and about a quarter of the tiler's time.

Within :func:`batch_memory_kept` the mmap threshold is :data:`MMAP_THRESHOLD` and the trim
threshold :data:`TRIM_THRESHOLD` (``mallopt(3)``), so the freed blocks are reused. On leaving,
glibc's initial thresholds (:data:`GLIBC_DEFAULT`) are set again and the free pages are handed
back (``malloc_trim(0)``): the safeguards that follow, and the rest of the process (in napari,
the viewer), do not keep what the batches left free. Measured on a 2-core CPU
(``benchmarks/bench_tiling.py``, ``benchmarks/memory.py``): the tiler on a 4096² mono frame
takes 0.76 of the time (7.7 s against 10.2 s), and ``denoise`` on a 6000 x 4000 colour frame
peaks 150 MB lower than with glibc's adaptive thresholds, in the same time within the
machine's run-to-run spread. Linux with glibc only (elsewhere nothing changes);
``ASTRODENOISE_TUNE_MALLOC=0`` in the environment leaves glibc alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
import threading
from collections.abc import Iterator

#: blocks up to this size come from the heap, not from their own ``mmap``
MMAP_THRESHOLD = 64 << 20
#: free memory at the top of the heap is handed back to the system above this
TRIM_THRESHOLD = 256 << 20
#: glibc's initial mmap and trim thresholds (``mallopt(3)``), set again on leaving
GLIBC_DEFAULT = 128 << 10
#: environment variable: "0" leaves glibc's malloc as it is
ENV = "ASTRODENOISE_TUNE_MALLOC"
#: mallopt(3) parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_lock = threading.Lock()
_depth = [0]  # runs inside batch_memory_kept now (threads may run tiles side by side)


@contextlib.contextmanager
def batch_memory_kept() -> Iterator[bool]:
    """Keep freed large blocks for reuse while inside (see the module); yields whether it does.

    Nested or concurrent uses (threads running tiles side by side) set the thresholds once,
    when the first enters, and set glibc's defaults again when the last leaves.
    """
    libc = _libc()
    if libc is None:
        yield False
        return
    with _lock:
        _depth[0] += 1
        if _depth[0] == 1:
            _thresholds(libc, TRIM_THRESHOLD, MMAP_THRESHOLD)
    try:
        yield True
    finally:
        with _lock:
            _depth[0] -= 1
            if _depth[0] == 0:
                _thresholds(libc, GLIBC_DEFAULT, GLIBC_DEFAULT)
                libc.malloc_trim(0)


def _thresholds(libc: ctypes.CDLL, trim: int, mmap: int) -> None:
    # both: setting either one stops glibc adapting the other
    libc.mallopt(_M_TRIM_THRESHOLD, trim)
    libc.mallopt(_M_MMAP_THRESHOLD, mmap)


def _libc() -> ctypes.CDLL | None:
    """glibc, where it is the C library and the environment has not turned this off."""
    if os.environ.get(ENV, "1").strip() == "0":
        return None
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    return libc
