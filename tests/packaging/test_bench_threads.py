"""Every benchmark takes ``--threads N`` (bench/threadcap.py) and caps the native libraries at N threads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))

import threadcap  # noqa: E402


@pytest.mark.parametrize("argv, threads, rest", [
    (["b.py", "--rounds", "2"], 1, ["b.py", "--rounds", "2"]),
    (["b.py", "--threads", "4", "--rounds", "2"], 4, ["b.py", "--rounds", "2"]),
    (["b.py", "--threads=2"], 2, ["b.py"]),
])
def test_take_threads(argv: list[str], threads: int, rest: list[str]) -> None:
    assert threadcap.take_threads(argv) == threads and argv == rest


def test_zero_threads_is_refused() -> None:
    with pytest.raises(SystemExit):
        threadcap.take_threads(["b.py", "--threads", "0"])


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py") if p.name != "threadcap.py"))
def test_every_bench_takes_threads(script: str) -> None:
    source = (BENCH / script).read_text(encoding="utf-8")
    assert "\nimport threadcap" in source
    done = subprocess.run([sys.executable, str(BENCH / script), "--threads", "2", "--help"], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_cap_reaches_opencv_and_openmp() -> None:
    code = ("import sys; sys.argv[1:] = ['--threads', '3']; sys.path.insert(0, 'bench'); import threadcap, cv2, os; "
            "print(cv2.getNumThreads(), os.environ['OMP_THREAD_LIMIT'], threadcap.THREADS)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.stdout.split() == ["3", "3", "3"], done.stderr
