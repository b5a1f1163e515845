"""Keep the memory torch frees for the next tensor instead of handing it back to the operating system.

Why: an attack step or a training step allocates and frees the same large tensors (activations of a batch, their
gradients, a few MB each) over and over. glibc's malloc serves blocks of that size with ``mmap`` and returns them
with ``munmap`` when freed (it raises that threshold as it sees blocks freed, up to 32 MB, and often not far
enough for a step's mix of sizes), so a step can fault in fresh, zeroed pages for its large tensors: hundreds of
page faults per step, expensive on a virtual machine (``benchmarks/bench_throughput.py --system-malloc`` measures
the difference). Raising malloc's mmap and trim thresholds makes freed blocks stay in the heap and be reused,
already mapped. Results do not change: only where tensors live does.

The price is memory: free heap kept after a peak (up to :data:`KEEP_BYTES`), and the heap's fragmentation, which
torch's aligned allocations can make grow for a while before freed blocks are reused. So the command line and the
evaluation workers call :func:`reuse_freed_memory`, and a library user chooses to
(``dim.reuse_freed_memory()``). ``DIM_SYSTEM_MALLOC=1`` turns it off. Other C libraries (musl, macOS,
Windows) have no such setting: there it does nothing and says so.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

ENV = "DIM_SYSTEM_MALLOC"
MMAP_BYTES = 64 << 20         # blocks below this come from the heap (glibc adapts its own threshold up to 32 MB)
KEEP_BYTES = 256 << 20        # free memory at the top of the heap kept rather than returned
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3       # mallopt parameters (malloc.h)
_applied: bool | None = None


def reuse_freed_memory() -> bool:
    """Set glibc's malloc to keep and reuse freed blocks (once per process; later calls return the first answer).
    Returns whether it is in effect: False where ``$DIM_SYSTEM_MALLOC`` is set or the C library is not glibc."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get(ENV, "").strip() not in ("", "0"):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    # mallopt returns 1 on success; both must hold, or the heap would still be trimmed back after every step
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
