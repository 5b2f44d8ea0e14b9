"""``--threads N`` for every benchmark (default 1): the native libraries' worker threads, so a figure is per core.

Each script imports this module before numpy, OpenCV, Tesseract or LiteRT load. It takes ``--threads N``
(or ``--threads=N``) out of ``sys.argv`` (so the script's own parser never sees it), caps OpenMP (Tesseract),
OpenBLAS and OpenCV at N threads, and gives N as :data:`THREADS` to what builds LiteRT interpreters. With the
default of 1 a benchmark's figures are per core: a Pi's cost is the figure scaled by its per-core speed
(docs/benchmarks.md, "Pi budget"). Benchmarks made of processes (delivery, central, chaos) count those
themselves; there the cap only keeps each process's libraries to N threads.
"""

from __future__ import annotations

import os
import sys


def take_threads(argv: list[str]) -> int:
    """Remove ``--threads N`` / ``--threads=N`` from ``argv`` and return N (1 when absent)."""
    threads = 1
    for i in range(len(argv) - 1, -1, -1):
        arg = argv[i]
        if arg == "--threads" and i + 1 < len(argv):
            threads = int(argv[i + 1])
            del argv[i:i + 2]
        elif arg.startswith("--threads="):
            threads = int(arg.split("=", 1)[1])
            del argv[i]
    if threads < 1:
        raise SystemExit("--threads must be at least 1")
    return threads


THREADS = take_threads(sys.argv)
for _var in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(THREADS)
try:
    import cv2

    cv2.setNumThreads(THREADS)
except ImportError:  # OpenCV is a box dependency; a bench that does not need it still runs
    pass
