"""Process-wide heap setting of the box's daemons: large blocks go back to the system when freed.

Camera frames (20 MB at 2250×3000), corrected pages and the text detector's inputs are allocated and
freed many times a minute. glibc serves a block that large from its own mapping only up to a threshold it
raises after each such free (up to 32 MB), so after a few frames they come from the heap, whose freed
space stays resident and splits. A fixed threshold keeps every block from :data:`LARGE_BLOCK` bytes up in
its own mapping, returned to the system on free: the report reader's peak resident memory fell from 451
to 408 MB at no measurable cost in speed (bench/ocr.py, docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

LARGE_BLOCK = 4 * 1024 * 1024
"""Blocks from this size up get their own mapping (bytes)."""

_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>


def return_large_blocks(threshold: int = LARGE_BLOCK) -> bool:
    """Have the C library map blocks of ``threshold`` bytes or more on their own and unmap them when freed
    (glibc ``mallopt(M_MMAP_THRESHOLD)``, which also stops the threshold from rising). Call once at the
    start of a daemon. False, changing nothing, where the C library is not glibc or refuses the value."""
    if threshold <= 0:
        raise ValueError("threshold must be positive")
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        logger.info("C library without mallopt; the heap keeps its defaults")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if mallopt(_M_MMAP_THRESHOLD, int(threshold)) != 1:
        logger.warning("mallopt refused an mmap threshold of %s bytes; the heap keeps its defaults", threshold)
        return False
    logger.debug("blocks from %s bytes up are mapped on their own", threshold)
    return True
