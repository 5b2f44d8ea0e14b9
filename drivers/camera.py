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

    def __enter__(self) -> FrameSource:
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


def _as_array(im: Any) -> np.ndarray:
    if im.mode in ("L", "1", "I;16", "I"):
        return np.ascontiguousarray(np.asarray(im.convert("L")))
    return np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])


def load_image(path: Path) -> np.ndarray:
    """Read an image file as a BGR ``uint8`` array (grayscale files stay ``HxW``); first frame only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return _as_array(im)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise CameraError(f"cannot read image {path}: {exc}") from None


def load_frames(path: Path) -> list[np.ndarray]:
    """Every frame of an image file: one for a still, all of them for an animated GIF, WebP or PNG."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return [_as_array(frame) for frame in ImageSequence.Iterator(im)]
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise CameraError(f"cannot read image {path}: {exc}") from None


class FileFrameSource(FrameSource):
    """Frames from one image file or a folder of images (sorted by name), optionally looping.

    An animated image (GIF, WebP, APNG) plays all its frames, like a short video; real video files are
    read by :class:`OpenCVFrameSource`.

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
        self._frames: list[np.ndarray] = []
        self._next_at = 0.0

    def _open(self) -> None:
        self._frames = []
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
        return self._is_open and not self.loop and self._index >= len(self._files) and not self._frames

    def _read(self) -> np.ndarray | None:
        failures = 0
        while not self._frames:
            if self._index >= len(self._files):
                if not self.loop:
                    return None
                self._index = 0
            path = self._files[self._index]
            self._index += 1
            try:
                self._frames = load_frames(path)
            except CameraError as exc:
                failures += 1
                logger.warning("%s: skipping %s", self.name, exc)
                if failures >= len(self._files):
                    raise CameraError(f"{self.path}: no readable image") from None
        frame = self._frames.pop(0)
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


VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".webm", ".mjpeg", ".mjpg"})


class OpenCVFrameSource(FrameSource):
    """A V4L2 / USB camera, or a video file, through ``cv2.VideoCapture``.

    OpenCV is not a default dependency (it would cost a Pi over 100 MB for a USB camera it may not
    have): install Debian's ``python3-opencv`` on a Raspberry Pi (``scripts/install.sh`` does) or
    ``pip install opencv-python-headless`` elsewhere.

    ``autofocus`` and ``exposure`` (the driver's units; V4L2: 100 µs steps) are applied where the camera
    supports them. A video file plays once, paced at ``fps`` if given, and then the source is
    :attr:`finished`.

    >>> cam = OpenCVFrameSource("/dev/video0", width=1280, height=720, fps=30)   # doctest: +SKIP
    """

    def __init__(self, device: int | str = 0, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, fourcc: str | None = "MJPG", buffer_size: int = 1,
                 autofocus: bool | None = None, exposure: float | None = None) -> None:
        self.is_file = isinstance(device, str) and Path(device).suffix.lower() in VIDEO_SUFFIXES
        super().__init__(f"{'video' if self.is_file else 'v4l2'}:{Path(str(device)).name}")
        self.device = device
        self.width, self.height, self.fps = width, height, fps
        self.fourcc = fourcc
        self.buffer_size = buffer_size
        self.autofocus, self.exposure = autofocus, exposure
        self.interval = 1.0 / fps if (fps and self.is_file) else 0.0
        self._cap: Any = None
        self._ended = False
        self._next_at = 0.0

    @property
    def finished(self) -> bool:
        return self._ended

    def _open(self) -> None:
        try:
            import cv2  # type: ignore[import-not-found]
        except ImportError:
            raise CameraError("OpenCV is not installed (apt install python3-opencv, or pip install "
                              "opencv-python-headless)") from None
        self._ended = False
        if self.is_file:
            if not Path(str(self.device)).is_file():
                raise CameraError(f"{self.name}: no such video file")
            cap = cv2.VideoCapture(str(self.device))
        else:
            api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
            cap = cv2.VideoCapture(self.device, api)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"{self.name}: cannot open")
        if not self.is_file:
            self._configure(cv2, cap)
        self._cap = cap
        self._next_at = time.monotonic()
        logger.info("%s open at %dx%d", self.name, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                    int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def _configure(self, cv2: Any, cap: Any) -> None:
        settings = [(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc) if self.fourcc else None),
                    (cv2.CAP_PROP_FRAME_WIDTH, self.width), (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
                    (cv2.CAP_PROP_FPS, self.fps), (cv2.CAP_PROP_BUFFERSIZE, self.buffer_size),
                    (cv2.CAP_PROP_AUTOFOCUS, None if self.autofocus is None else int(self.autofocus))]
        if self.exposure is not None:
            settings += [(cv2.CAP_PROP_AUTO_EXPOSURE, 1), (cv2.CAP_PROP_EXPOSURE, self.exposure)]  # 1 = manual
        for prop, value in settings:
            if value is not None and not cap.set(prop, value):
                logger.warning("%s: camera ignored property %s", self.name, prop)

    def _read(self) -> np.ndarray | None:
        if self._ended:
            return None
        ok, frame = self._cap.read()
        if not ok or frame is None:
            if self.is_file:
                self._ended = True
                return None
            raise CameraError(f"{self.name}: no frame from camera (unplugged?)")
        if self.interval:
            self._next_at = pace(self._next_at, self.interval)
        return frame

    def _close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


def import_picamera2() -> Any:
    """``picamera2.Picamera2``, or a :class:`CameraError` a technician can act on.

    picamera2 comes from apt (Raspberry Pi OS archive) into a venv with system site packages. Missing, it
    is an ImportError; present but built against another numpy (Bookworm's simplejpeg against numpy 1.x
    under the venv's numpy 2) it fails with an ImportError or ValueError naming numpy, or anything else a
    C extension raises while loading. Each becomes one clear message instead of a traceback.
    """
    try:
        from picamera2 import Picamera2  # type: ignore[import-not-found]
    except ModuleNotFoundError as exc:
        if exc.name not in (None, "picamera2"):
            raise CameraError(f"picamera2 is installed but its module {exc.name!r} is missing "
                              "(apt install --reinstall python3-picamera2)") from None
        raise CameraError("picamera2 is not installed: on Raspberry Pi OS run scripts/install.sh "
                          "(apt install python3-picamera2, venv with system site packages)") from None
    except Exception as exc:  # ImportError, ValueError ("numpy.dtype size changed"), AttributeError ...
        detail = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        if "numpy" in str(exc).lower():
            raise CameraError(f"picamera2 cannot load with this venv's numpy {np.__version__}: a module it imports "
                              "was built for another numpy (Bookworm's simplejpeg); re-run scripts/install.sh, "
                              f"which adds a matching simplejpeg to the venv ({detail})") from None
        raise CameraError(f"picamera2 failed to load ({detail})") from None
    return Picamera2


class Picamera2FrameSource(FrameSource):
    """A Raspberry Pi camera module through ``picamera2`` (Debian package ``python3-picamera2``).

    By default frames are requested as ``"YUV420"`` and only the Y (luminance) plane is returned: the
    grayscale the decoders need, at no conversion cost. With ``gray=False`` they come as ``"RGB888"``,
    whose arrays are laid out B, G, R per pixel despite the name, which is the BGR order the rest of the
    box expects (no conversion is needed, and none may be added).

    ``autofocus`` turns on continuous autofocus (Camera Module 3); ``exposure_us`` fixes the exposure
    time (auto exposure otherwise). Controls a sensor does not have are skipped with a warning.

    >>> cam = Picamera2FrameSource(width=1280, height=720, fps=30)   # doctest: +SKIP
    """

    def __init__(self, *, camera_num: int = 0, width: int = 1280, height: int = 720,
                 fps: float | None = None, gray: bool = True, autofocus: bool = True,
                 exposure_us: int | None = None) -> None:
        super().__init__(f"picamera2:{camera_num}")
        self.camera_num = camera_num
        self.width, self.height, self.fps = width, height, fps
        self.gray = gray
        self.autofocus, self.exposure_us = autofocus, exposure_us
        self._cam: Any = None

    def controls(self, available: dict[str, Any]) -> dict[str, Any]:
        """The libcamera controls to set, limited to those the sensor offers."""
        wanted: dict[str, Any] = {}
        if self.fps:
            wanted["FrameRate"] = float(self.fps)
        if self.autofocus:
            wanted["AfMode"] = 2  # controls.AfModeEnum.Continuous
        if self.exposure_us:
            wanted.update(AeEnable=False, ExposureTime=int(self.exposure_us))
        for name in [n for n in wanted if n not in available and n != "FrameRate"]:
            logger.warning("%s: control %s not supported by this sensor", self.name, name)
            del wanted[name]
        return wanted

    def _open(self) -> None:
        Picamera2 = import_picamera2()
        try:
            cam = Picamera2(self.camera_num)
            fmt = "YUV420" if self.gray else "RGB888"
            config = cam.create_video_configuration(main={"size": (self.width, self.height), "format": fmt},
                                                    controls=self.controls(dict(cam.camera_controls)))
            cam.configure(config)
            cam.start()
        except Exception as exc:  # libcamera raises RuntimeError, IndexError, OSError ...
            raise CameraError(f"{self.name}: cannot start camera: {exc}") from None
        self._cam = cam

    def _read(self) -> np.ndarray | None:
        try:
            frame = self._cam.capture_array("main")
        except Exception as exc:
            raise CameraError(f"{self.name}: capture failed: {exc}") from None
        if self.gray:  # YUV420: the first `height` rows are the Y plane (rows may be padded to the stride)
            return frame[:self.height, :self.width]
        return frame

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
                 backoff_max: float = 30.0, stall_after: float = 5.0) -> None:
        super().__init__(f"latest:{source.name}")
        self.source = source
        self.read_timeout = read_timeout
        self.stall_after = stall_after
        self._frame_at = 0.0
        self._handed_at = 0.0
        self._last_capture = time.monotonic()
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

    @property
    def frame_time(self) -> float:
        """``time.perf_counter()`` at which the frame last handed out was captured."""
        return self._handed_at

    def get(self, timeout: float | None = None) -> np.ndarray | None:
        """The newest frame not yet handed out, waiting up to ``timeout`` seconds; ``None`` if none came.

        A running camera that delivered nothing for ``stall_after`` seconds is put in
        :attr:`GrabberState.ERROR` (stalled) until its next frame.
        """
        with self._cond:
            if self._frame is None:
                self._cond.wait_for(lambda: self._frame is not None or self._state is GrabberState.FINISHED
                                    or self._stop.is_set(), timeout)
            frame, self._frame = self._frame, None
            if frame is not None:
                self._handed_at = self._frame_at
            elif (self._state is GrabberState.RUNNING and self.stall_after > 0
                  and time.monotonic() - self._last_capture > self.stall_after):
                self._errors += 1
                self._last_error = f"stalled: no frame for {self.stall_after:.0f} s"
                self._state = GrabberState.ERROR
                logger.warning("%s %s", self.source.name, self._last_error)
            return frame

    def _open(self) -> None:
        self._stop.clear()
        self._frame = None
        self._last_capture = time.monotonic()
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
                self._frame_at = time.perf_counter()
                self._last_capture = time.monotonic()
                self._captured += 1
                self._cond.notify_all()
        self._safe_close()

    def _safe_close(self) -> None:
        try:
            self.source.close()
        except Exception as exc:
            logger.warning("%s: error while closing: %s", self.source.name, exc)
