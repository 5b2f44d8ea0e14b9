"""foundation/heap.py: large blocks go back to the system when freed (glibc)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from foundation.heap import return_large_blocks

# Frames freed between small allocations that stay: with glibc's defaults the threshold rises after the
# first free and the later frames come from the heap, whose freed space the small objects pin.
PROBE = """
import sys
from foundation.heap import return_large_blocks
if sys.argv[1] == "set":
    assert return_large_blocks()
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
base = rss()
keep = []
for _ in range(12):
    frame = bytearray(20 * 1024 * 1024)
    frame[::4096] = b"x" * len(frame[::4096])
    keep.append(bytearray(64 * 1024))
    del frame
print(rss() - base)
"""


def _grown_mb(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return float(out.stdout)


def test_a_non_positive_threshold_is_refused() -> None:
    with pytest.raises(ValueError):
        return_large_blocks(0)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_MMAP_THRESHOLD) is glibc's")
def test_freed_frames_leave_no_resident_memory_behind() -> None:
    assert _grown_mb("set") < 8  # the 20 MB frames went back; only the small blocks stay
