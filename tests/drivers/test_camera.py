"""Frame sources: optional drivers stay optional, image folders, the simulator, the latest-frame grabber."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drivers.camera import (
    CameraError,
    FileFrameSource,
    FrameSource,
    GrabberState,
    LatestFrameGrabber,
    OpenCVFrameSource,
    Picamera2FrameSource,
)
from tests.conftest import REPO
from tests.hw_sim.camera import FlakySource, SimulatedQrCamera, health_card_tokens


def test_import_does_not_need_opencv_or_picamera2() -> None:
    code = ("import sys, drivers.camera, drivers.sim_camera, edge.station; "
            "assert 'cv2' not in sys.modules and 'picamera2' not in sys.modules, 'optional driver imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


@pytest.mark.parametrize("source, module", [(OpenCVFrameSource(0), "cv2"), (Picamera2FrameSource(), "picamera2")])
def test_missing_driver_is_a_camera_error(monkeypatch: pytest.MonkeyPatch, source: FrameSource, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    with pytest.raises(CameraError, match="not installed"):
        source.open()
    assert not source.is_open


@pytest.mark.parametrize("failure, message", [
    ('raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. Expected 96, got 88")',
     "built for another numpy"),
    ('raise ImportError("numpy.core.multiarray failed to import")', "built for another numpy"),
    ('raise OSError("libcamera.so.0.2: cannot open shared object file")', "failed to load .OSError: libcamera"),
    ('import libcamera_missing_binding', "module 'libcamera_missing_binding' is missing"),
])
def test_picamera2_that_fails_to_load_is_a_clear_camera_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              failure: str, message: str) -> None:
    """apt's picamera2 present but broken (Bookworm's simplejpeg built for numpy 1.x, a missing libcamera)."""
    (tmp_path / "picamera2").mkdir()
    (tmp_path / "picamera2" / "__init__.py").write_text("import simplejpeg\nclass Picamera2: pass\n")
    (tmp_path / "simplejpeg.py").write_text(failure + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("picamera2", "simplejpeg"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    source = Picamera2FrameSource()
    with pytest.raises(CameraError, match=message):
        source.open()
    assert not source.is_open


def _write(path: Path, value: int, mode: str = "RGB") -> None:
    Image.new(mode, (8, 6), value if mode == "L" else (value, 0, 255 - value)).save(path)


def test_file_source_reads_a_folder_in_order_and_loops(tmp_path: Path) -> None:
    for i, name in enumerate(["b.png", "a.png", "c.png"]):
        _write(tmp_path / name, 10 * (i + 1))
    (tmp_path / "notes.txt").write_text("not an image")
    with FileFrameSource(tmp_path) as cam:
        reds = [int(cam.read()[0, 0, 2]) for _ in range(3)]
        assert cam.read() is None and cam.finished
    assert reds == [20, 10, 30]  # a, b, c; BGR order puts red last
    with FileFrameSource(tmp_path, loop=True) as cam:
        assert [int(cam.read()[0, 0, 2]) for _ in range(4)] == [20, 10, 30, 20] and not cam.finished


def test_file_source_single_file_gray_and_bad_files(tmp_path: Path) -> None:
    _write(tmp_path / "gray.png", 77, mode="L")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with FileFrameSource(tmp_path / "gray.png") as cam:
        frame = cam.read()
    assert frame.shape == (6, 8) and frame.dtype == np.uint8 and frame[0, 0] == 77
    with FileFrameSource(tmp_path) as cam:  # broken.png is skipped with a warning
        assert cam.read().shape == (6, 8) and cam.read() is None
    with pytest.raises(CameraError, match="no such file"):
        FileFrameSource(tmp_path / "missing").open()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CameraError, match="no images"):
        FileFrameSource(empty).open()
    with pytest.raises(CameraError, match="before open"):
        FileFrameSource(tmp_path).read()


def test_simulator_is_reproducible_and_finite() -> None:
    tokens = health_card_tokens(2)

    def frames(seed: int) -> list[np.ndarray]:
        with SimulatedQrCamera(tokens, angle=(-30, 30), noise=(0, 8), seed=seed, blank_frames=1) as cam:
            out = []
            while (f := cam.read()) is not None:
                out.append(f)
            assert cam.finished
            return out

    a, b, c = frames(1), frames(1), frames(2)
    assert len(a) == 4 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


class CountingSource(FrameSource):
    """Frames whose first pixel is the frame number; produces as fast as it is read."""

    def __init__(self, limit: int | None = None, delay: float = 0.0) -> None:
        super().__init__("counting")
        self.limit, self.delay, self.n = limit, delay, 0

    @property
    def finished(self) -> bool:
        return self.limit is not None and self.n >= self.limit

    def _open(self) -> None:
        pass

    def _read(self) -> np.ndarray | None:
        if self.finished:
            return None
        time.sleep(self.delay)
        self.n += 1
        return np.full((2, 2), self.n % 256, dtype=np.uint8)

    def _close(self) -> None:
        pass


def test_grabber_keeps_only_the_newest_frame() -> None:
    source = CountingSource(limit=50)
    with LatestFrameGrabber(source) as grab:
        deadline = time.monotonic() + 5
        while grab.state is not GrabberState.FINISHED and time.monotonic() < deadline:
            time.sleep(0.01)
        frame = grab.get(timeout=1)
        assert frame is not None and int(frame[0, 0]) == 50
        assert grab.dropped_frames == 49 and grab.captured_frames == 50
        assert grab.get(timeout=0.05) is None and grab.finished
    assert grab.state is GrabberState.STOPPED


def test_grabber_reopens_with_backoff_after_errors() -> None:
    flaky = FlakySource(CountingSource(delay=0.002), fail_reads={3, 4, 5}, fail_opens={3})
    grab = LatestFrameGrabber(flaky, backoff_min=0.02, backoff_max=0.05)
    states: list[GrabberState] = []
    with grab:
        deadline = time.monotonic() + 5
        while flaky.reads < 30 and time.monotonic() < deadline:
            states.append(grab.state)
            time.sleep(0.002)
        assert grab.get(timeout=1) is not None
    # reads 3, 4, 5 failed, and the reopen after the second failure failed too
    assert grab.errors == 4 and "unplugged" in (grab.last_error or "")
    assert flaky.opens == 5
    assert GrabberState.ERROR in states and states[-1] is GrabberState.RUNNING
    assert not flaky.is_open


def test_grabber_stop_wakes_a_waiting_reader() -> None:
    grab = LatestFrameGrabber(FlakySource(CountingSource(), fail_opens=set(range(1, 1000))), backoff_min=10)
    grab.open()
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(grab.get(timeout=10)))
    reader.start()
    time.sleep(0.05)
    assert grab.state is GrabberState.ERROR
    started = time.monotonic()
    grab.close()
    reader.join(timeout=5)
    assert got == [None] and time.monotonic() - started < 2


def test_animated_image_plays_every_frame(tmp_path: Path) -> None:
    from PIL import Image

    frames = [Image.fromarray(np.full((32, 48), v, dtype=np.uint8)) for v in (10, 120, 240)]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=40)
    with FileFrameSource(tmp_path / "clip.gif") as cam:
        got = []
        while (f := cam.read()) is not None:
            got.append(int(f.mean()))
        assert cam.finished
    assert len(got) == 3 and got[0] < got[1] < got[2]


def test_grabber_reports_a_stalled_camera_until_frames_come_back() -> None:
    import threading

    class Stalling(FrameSource):
        def __init__(self) -> None:
            super().__init__("stalling")
            self.go = threading.Event()

        def _open(self) -> None: ...

        def _read(self):  # type: ignore[no-untyped-def]
            self.go.wait(5)
            return np.zeros((8, 8), dtype=np.uint8)

        def _close(self) -> None: ...

    src = Stalling()
    with LatestFrameGrabber(src, read_timeout=0.05, stall_after=0.1) as cam:
        while cam.read() is None and cam.state is GrabberState.RUNNING:
            pass
        assert cam.state is GrabberState.ERROR and "stalled" in (cam.last_error or "")
        src.go.set()
        while cam.read() is None:
            pass
        assert cam.state is GrabberState.RUNNING and cam.frame_time > 0


def test_picamera2_controls_are_limited_to_what_the_sensor_has() -> None:
    cam = Picamera2FrameSource(fps=30, autofocus=True, exposure_us=8000)
    assert cam.controls({"AfMode": 0, "ExposureTime": 0, "AeEnable": 0}) == {
        "FrameRate": 30.0, "AfMode": 2, "AeEnable": False, "ExposureTime": 8000}
    assert cam.controls({}) == {"FrameRate": 30.0}  # a fixed-focus sensor without manual exposure
