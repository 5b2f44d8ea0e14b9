"""Camera simulators for tests: the product's QR camera plus named scenes and a failing source."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from drivers.camera import CameraError, FileFrameSource, FrameSource
from drivers.sim_camera import Scene, SimulatedQrCamera, generate_health_card_token, qr_image, render_qr_frame

__all__ = ["SCENES", "FlakySource", "Scene", "SimulatedQrCamera", "generate_health_card_token",
           "health_card_tokens", "qr_image", "render_qr_frame"]

SCENES: dict[str, Scene] = {
    "clear": Scene(size=240),
    "small": Scene(size=110),
    "large": Scene(size=420),
    "tilted": Scene(size=200, angle=30),
    "upside_down": Scene(size=200, angle=180),
    "skewed_45": Scene(size=220, angle=45, noise=4),
    "blurred": Scene(size=240, blur=1.5),
    "noisy": Scene(size=240, noise=14),
    "dim": Scene(size=240, brightness=0.45, noise=3),
    "glare": Scene(size=260, glare=0.5),
    "phone_in_hand": Scene(size=180, angle=-12, blur=1.0, brightness=0.8, noise=6, dx=40, dy=-25),
}
"""Filming conditions every decoder test must handle on a 640x480 frame."""


def health_card_tokens(n: int, seed: int = 0, code_type: int = 1) -> list[str]:
    """``n`` distinct random health-card tokens."""
    rng = random.Random(seed)
    return [generate_health_card_token(rng, code_type) for _ in range(n)]


class FlakySource(FrameSource):
    """Wraps a source and fails on chosen reads (counted across reopenings), like a camera that drops out.

    ``fail_reads`` are 1-based read numbers that raise :class:`CameraError`; ``fail_opens`` the open numbers.
    """

    def __init__(self, inner: FrameSource, *, fail_reads: Iterable[int] = (), fail_opens: Iterable[int] = ()) -> None:
        super().__init__(f"flaky:{inner.name}")
        self.inner = inner
        self.fail_reads, self.fail_opens = set(fail_reads), set(fail_opens)
        self.reads = 0
        self.opens = 0

    @property
    def finished(self) -> bool:
        return self.inner.finished

    def _open(self) -> None:
        self.opens += 1
        if self.opens in self.fail_opens:
            raise CameraError("simulated: camera not found")
        self.inner.open()

    def _read(self) -> np.ndarray | None:
        self.reads += 1
        if self.reads in self.fail_reads:
            raise CameraError("simulated: camera unplugged")
        return self.inner.read()

    def _close(self) -> None:
        self.inner.close()


class MemoryCamera(FileFrameSource):
    """Frames held in memory, delivered once each as a camera would; ``before[i]`` runs just before frame i."""

    def __init__(self, frames: Iterable[np.ndarray], before: Mapping[int, Callable[[], object]] | None = None) -> None:
        super().__init__(Path("."))
        self.frames = list(frames)
        self.before = dict(before or {})
        self.index = 0

    def _open(self) -> None:
        pass

    @property
    def finished(self) -> bool:
        return self.is_open and self.index >= len(self.frames)

    def _read(self) -> np.ndarray | None:
        if self.index >= len(self.frames):
            return None
        hook = self.before.get(self.index)
        if hook is not None:
            hook()
        self.index += 1
        return self.frames[self.index - 1]
