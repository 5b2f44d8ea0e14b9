"""Frame sources: the camera behind one small interface, real or simulated.

A :class:`FrameSource` hands out frames as ``numpy`` arrays (``uint8``, BGR ``HxWx3`` or grayscale ``HxW``).
The same scanning code runs on a Pi camera, a USB camera, a folder of photos or the simulator
(:mod:`drivers.sim_camera`)::

    >>> with FileFrameSource("tests/data/frames") as cam:        # doctest: +SKIP
    ...     frame = cam.read()

OpenCV and picamera2 are optional; they are imported only when such a source is opened, so this
module imports on a box that has neither.

Live cameras should be read through :class:`LatestFrameGrabber`: one thread owns the device, keeps only
the newest frame (a slow consumer never works on stale frames), counts the frames it dropped, and
reopens the device with exponential backoff when it fails.
"""

from __future__ import annotations

import abc
import enum
import logging
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm"})


class CameraError(RuntimeError):
    """The frame source cannot be opened or read (device missing, unplugged, driver not installed)."""


class FrameSource(abc.ABC):
    """A camera-like source of frames.

    Subclasses implement :meth:`_open`, :meth:`_read` and :meth:`_close`; the public methods make
    ``open``/``close`` idempotent and let the source be used as a context manager.

    :meth:`read` returns the next frame, or ``None`` when no frame is available: either the source has
    run out (then :attr:`finished` is true) or a live source had none within its timeout.
    It raises :class:`CameraError` when the device fails.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._is_open = False

    @property
    def name(self) -> str:
        """Short human-readable name for logs and health reports (never personal data)."""
        return self._name

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._is_open

    @property
    def finished(self) -> bool:
        """True when a finite source will never return another frame."""
        return False

    @property
    def dropped_frames(self) -> int:
        """Frames the source discarded because the consumer was behind (0 for sources that never drop)."""
        return 0

    def open(self) -> None:
        """Open the device; does nothing if already open. Raises :class:`CameraError`."""
        if not self._is_open:
            self._open()
            self._is_open = True

    def read(self) -> np.ndarray | None:
        """The next frame (``uint8`` BGR or grayscale), or ``None`` if none is available."""
        if not self._is_open:
            raise CameraError(f"{self.name}: read() before open()")
        return self._read()

    def close(self) -> None:
        """Release the device; safe to call more than once."""
        if self._is_open:
            self._is_open = False
            self._close()

    def __enter__(self) -> "FrameSource":
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    @abc.abstractmethod
    def _open(self) -> None: ...

    @abc.abstractmethod
    def _read(self) -> np.ndarray | None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...


def load_image(path: Path) -> np.ndarray:
    """Read an image file as a BGR ``uint8`` array (grayscale files stay ``HxW``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in ("L", "1", "I;16", "I"):
                return np.ascontiguousarray(np.asarray(im.convert("L")))
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise CameraError(f"cannot read image {path}: {exc}") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


class FileFrameSource(FrameSource):
    """Frames from one image file or a folder of images (sorted by name), optionally looping.

    Unreadable files in a folder are skipped with a warning; a folder without a single readable image
    raises :class:`CameraError`.

    >>> cam = FileFrameSource("/srv/samples", loop=True, fps=5)   # doctest: +SKIP
    """

    def __init__(self, path: str | Path, *, loop: bool = False, fps: float | None = None) -> None:
        self.path = Path(path)
        super().__init__(f"file:{self.path.name or self.path}")
        self.loop = loop
        self.interval = 1.0 / fps if fps else 0.0
        self._files: list[Path] = []
        self._index = 0
        self._next_at = 0.0

    def _open(self) -> None:
        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise CameraError(f"{self.path}: folder holds no images")
        elif self.path.is_file():
            files = [self.path]
        else:
            raise CameraError(f"{self.path}: no such file or folder")
        self._files = files
        self._index = 0
        self._next_at = time.monotonic()

    @property
    def finished(self) -> bool:
        return self._is_open and not self.loop and self._index >= len(self._files)

    def _read(self) -> np.ndarray | None:
        failures = 0
        while True:
            if self._index >= len(self._files):
                if not self.loop:
                    return None
                self._index = 0
            path = self._files[self._index]
            self._index += 1
            try:
                frame = load_image(path)
                break
            except CameraError as exc:
                failures += 1
                logger.warning("%s: skipping %s", self.name, exc)
                if failures >= len(self._files):
                    raise CameraError(f"{self.path}: no readable image") from None
        if self.interval:
            self._next_at = pace(self._next_at, self.interval)
        return frame

    def _close(self) -> None:
        self._files = []


def pace(next_at: float, interval: float) -> float:
    """Sleep until ``next_at``; return the following deadline (never scheduling into the past)."""
    now = time.monotonic()
    if next_at > now:
        time.sleep(next_at - now)
        now = next_at
    return now + interval


class OpenCVFrameSource(FrameSource):
    """A V4L2 / USB camera through ``cv2.VideoCapture`` (needs ``opencv-python-headless``).

    >>> cam = OpenCVFrameSource("/dev/video0", width=1280, height=720, fps=30)   # doctest: +SKIP
    """

    def __init__(self, device: int | str = 0, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, fourcc: str | None = "MJPG", buffer_size: int = 1) -> None:
        super().__init__(f"v4l2:{device}")
        self.device = device
        self.width, self.height, self.fps = width, height, fps
        self.fourcc = fourcc
        self.buffer_size = buffer_size
        self._cap: Any = None

    def _open(self) -> None:
        try:
            import cv2  # type: ignore[import-not-found]
        except ImportError:
            raise CameraError("OpenCV is not installed (pip install opencv-python-headless)") from None
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = cv2.VideoCapture(self.device, api)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"{self.name}: cannot open camera")
        if self.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.fps:
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, self.buffer_size)
        self._cap = cap
        logger.info("%s open at %dx%d", self.name, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                    int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def _read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise CameraError(f"{self.name}: no frame from camera (unplugged?)")
        return frame

    def _close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


class Picamera2FrameSource(FrameSource):
    """A Raspberry Pi camera module through ``picamera2`` (Debian package ``python3-picamera2``).

    Frames are requested in picamera2's ``"RGB888"`` format, whose arrays are laid out B, G, R per pixel,
    which is the BGR order the decoders expect; no conversion is needed.

    >>> cam = Picamera2FrameSource(width=1280, height=720, fps=30)   # doctest: +SKIP
    """

    def __init__(self, *, camera_num: int = 0, width: int = 1280, height: int = 720,
                 fps: float | None = None) -> None:
        super().__init__(f"picamera2:{camera_num}")
        self.camera_num = camera_num
        self.width, self.height, self.fps = width, height, fps
        self._cam: Any = None

    def _open(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError:
            raise CameraError("picamera2 is not installed (apt install python3-picamera2)") from None
        try:
            cam = Picamera2(self.camera_num)
            controls = {"FrameRate": float(self.fps)} if self.fps else {}
            config = cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "RGB888"}, controls=controls)
            cam.configure(config)
            cam.start()
        except Exception as exc:  # libcamera raises RuntimeError, IndexError, OSError ...
            raise CameraError(f"{self.name}: cannot start camera: {exc}") from None
        self._cam = cam

    def _read(self) -> np.ndarray | None:
        try:
            return self._cam.capture_array("main")
        except Exception as exc:
            raise CameraError(f"{self.name}: capture failed: {exc}") from None

    def _close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.stop()
            finally:
                cam.close()


class GrabberState(enum.Enum):
    """Where a :class:`LatestFrameGrabber` is."""

    STOPPED = "stopped"
    RUNNING = "running"
    ERROR = "error"       # the source failed; waiting to reopen it
    FINISHED = "finished"  # a finite source ran out


class LatestFrameGrabber(FrameSource):
    """A thread that owns a :class:`FrameSource` and keeps only its newest frame.

    Frames the consumer did not take before the next one arrived are counted in :attr:`dropped_frames`.
    When the source raises, the grabber closes it, enters :attr:`GrabberState.ERROR` and reopens it
    after ``backoff_min`` seconds, doubling up to ``backoff_max`` while it keeps failing.
    It is itself a :class:`FrameSource`, so a station reads it like any camera; :meth:`read` waits up to
    ``read_timeout`` seconds and returns ``None`` if no new frame came.

    >>> with LatestFrameGrabber(OpenCVFrameSource(0)) as cam:   # doctest: +SKIP
    ...     frame = cam.get(timeout=1.0)
    """

    def __init__(self, source: FrameSource, *, read_timeout: float = 0.5, backoff_min: float = 0.5,
                 backoff_max: float = 30.0) -> None:
        super().__init__(f"latest:{source.name}")
        self.source = source
        self.read_timeout = read_timeout
        self.backoff_min, self.backoff_max = backoff_min, backoff_max
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._dropped = 0
        self._captured = 0
        self._errors = 0
        self._state = GrabberState.STOPPED
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> GrabberState:
        """Current state of the capture thread."""
        return self._state

    @property
    def last_error(self) -> str | None:
        """Message of the most recent source failure."""
        return self._last_error

    @property
    def errors(self) -> int:
        """Source failures since start."""
        return self._errors

    @property
    def captured_frames(self) -> int:
        """Frames read from the source since start."""
        return self._captured

    @property
    def dropped_frames(self) -> int:
        return self._dropped

    @property
    def finished(self) -> bool:
        with self._cond:
            return self._state is GrabberState.FINISHED and self._frame is None

    def get(self, timeout: float | None = None) -> np.ndarray | None:
        """The newest frame not yet handed out, waiting up to ``timeout`` seconds; ``None`` if none came."""
        with self._cond:
            if self._frame is None:
                self._cond.wait_for(lambda: self._frame is not None or self._state is GrabberState.FINISHED
                                    or self._stop.is_set(), timeout)
            frame, self._frame = self._frame, None
            return frame

    def _open(self) -> None:
        self._stop.clear()
        self._frame = None
        self._state = GrabberState.RUNNING
        self._thread = threading.Thread(target=self._run, name=f"grab-{self.source.name}", daemon=True)
        self._thread.start()

    def _read(self) -> np.ndarray | None:
        return self.get(self.read_timeout)

    def _close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            if self._thread.is_alive():
                logger.warning("%s: capture thread did not stop within 5 s", self.name)
            self._thread = None
        self._state = GrabberState.STOPPED

    def _set_state(self, state: GrabberState) -> None:
        with self._cond:
            self._state = state
            self._cond.notify_all()

    def _run(self) -> None:
        backoff = self.backoff_min
        while not self._stop.is_set():
            try:
                self.source.open()
                frame = self.source.read()
            except Exception as exc:  # any driver failure puts us in ERROR; reopen below
                self._errors += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                self._set_state(GrabberState.ERROR)
                logger.warning("%s failed (%s); reopening in %.1f s", self.source.name, self._last_error, backoff)
                self._safe_close()
                if self._stop.wait(backoff):
                    break
                backoff = min(backoff * 2, self.backoff_max)
                continue
            if frame is None:
                if self.source.finished:
                    self._set_state(GrabberState.FINISHED)
                    break
                continue
            backoff = self.backoff_min
            with self._cond:
                if self._state is not GrabberState.RUNNING:
                    logger.info("%s running again", self.source.name)
                    self._state = GrabberState.RUNNING
                if self._frame is not None:
                    self._dropped += 1
                self._frame = frame
                self._captured += 1
                self._cond.notify_all()
        self._safe_close()

    def _safe_close(self) -> None:
        try:
            self.source.close()
        except Exception as exc:
            logger.warning("%s: error while closing: %s", self.source.name, exc)
