"""Process-wide CPU settings of torchlab's processes: the allocator and torch's threads.

With glibc's defaults every buffer over 32 MiB is mmap'ed and unmapped on each operation:
large-batch CPU work then spends much of its time in the kernel. Keeping freed memory made
MobileNetV2 batch-32 inference up to 2.7x faster on a 2-core CPU
(``benchmarks/allocator.py`` measures it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_applied = False
_libc: ctypes.CDLL | None = None


def keep_freed_memory(trim_threshold: int = 1 << 30) -> bool:
    """Apply once per process; returns whether glibc accepted it.

    Skipped when ``TORCHLAB_KEEP_FREED_MEMORY=0``.
    """
    global _applied, _libc
    if _applied or os.environ.get("TORCHLAB_KEEP_FREED_MEMORY") == "0":
        return _applied
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False  # not glibc (musl, macOS, Windows): nothing to do
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
    _libc = libc if _applied else None
    return _applied


def release_freed_memory() -> None:
    """Give the kept free pages of the heap back to the system (glibc's ``malloc_trim``).

    Call it before forking (loader workers): a child maps every page of its parent's heap,
    kept free pages included, and keeps them alive while the parent writes elsewhere or
    copies them as it reuses them. A MiniLM training at 512 tokens (14 GB, most of it freed
    activations) ran out of memory on 24 GB once a worker was forked beside it. A no-op
    unless :func:`keep_freed_memory` applied.
    """
    if _libc is not None:
        _libc.malloc_trim(0)


def set_threads(threads: int | None) -> None:
    """Use ``threads`` intra-op CPU threads in this process (``None``: leave torch's choice).

    Torch's default is one thread per core. On a machine shared with other jobs, or with
    several training processes (DDP on CPU), fewer threads avoid oversubscribing the cores.
    """
    import torch

    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
