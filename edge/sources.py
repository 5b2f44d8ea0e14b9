"""Pick the station's camera and decoder settings from ``[station]`` (and ``[masstest]``) in edge.toml; the flow
is :func:`edge.flows.factory.build_flow`'s."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from drivers.camera import (
    VIDEO_SUFFIXES,
    FileFrameSource,
    FrameSource,
    LatestFrameGrabber,
    OpenCVFrameSource,
    Picamera2FrameSource,
)
from drivers.sim_camera import SimulatedQrCamera, generate_health_card_token
from edge.config import MasstestSection, StationSection
from edge.rack import RackLayout
from edge.scanner import RACK, DecodeOptions, Fallback
from edge.symbology import ALL_SYMBOLOGIES, QR_ONLY, Symbology

FOREIGN_CODES = ("https://example.org/not-a-health-card", "E1D10AAC:1", "HC1:NCFOXN%TS3DH3ZSUZK+.V0ETD%65NL-AH")


def simulated_queue(people: int, seed: int = 1, odd_every: int = 0, shown: dict[int, str] | None = None,
                    **camera: object) -> SimulatedQrCamera:
    """A simulated desk: ``people`` persons each hold up a generated health-card code for 3 frames.

    With ``odd_every`` = n, every n-th person shows something else (a web link, a broken token, a
    certificate this box cannot verify), which must not come out green. ``shown`` puts given codes in
    given places of the queue (0-based), e.g. signed EHC1 credentials.
    """
    rng = random.Random(seed)
    tokens = [FOREIGN_CODES[(i // odd_every) % len(FOREIGN_CODES)] if odd_every and i % odd_every == odd_every - 1
              else generate_health_card_token(rng) for i in range(people)]
    for place, code in (shown or {}).items():
        if 0 <= place < people:
            tokens[place] = code
    options = {"frames_per_code": 3, "blank_frames": 1, "size": (180.0, 300.0), "angle": (-25.0, 25.0),
               "blur": (0.0, 1.2), "noise": (0.0, 6.0), "glare": (0.0, 0.3), "jitter": 0.2, "seed": seed}
    options.update(camera)
    return SimulatedQrCamera(tokens, **options)  # type: ignore[arg-type]


def frame_source(station: StationSection) -> FrameSource:
    """The configured camera; live cameras come wrapped in a :class:`LatestFrameGrabber`."""
    cam = station.camera
    if cam == "sim":
        return simulated_queue(10_000, width=640, height=480, fps=station.fps, loop=True)
    if cam == "picamera2":
        # the identity desk's face models need colour; the scanning flows take the cheaper grey (Y) plane
        return LatestFrameGrabber(Picamera2FrameSource(width=station.width, height=station.height, fps=station.fps,
                                                       gray=station.flow != "identity",
                                                       autofocus=station.autofocus,
                                                       exposure_us=int(station.exposure) if station.exposure else None))
    if cam.startswith("/dev/video") or cam.isdigit():
        device: int | str = int(cam) if cam.isdigit() else cam
        return LatestFrameGrabber(OpenCVFrameSource(device, width=station.width, height=station.height,
                                                    fps=station.fps, autofocus=station.autofocus,
                                                    exposure=station.exposure))
    if Path(cam).suffix.lower() in VIDEO_SUFFIXES:
        return OpenCVFrameSource(cam, fps=station.fps)
    return FileFrameSource(Path(cam), fps=station.fps)


def symbologies(station: StationSection) -> frozenset[Symbology]:
    """The codes the station looks for: configured, or what its flow needs."""
    if station.symbologies:
        return frozenset(Symbology(s) for s in station.symbologies)
    if station.flow == "masstest":
        return ALL_SYMBOLOGIES
    if station.flow == "vaccination":  # trace codes and wristbands: 1D
        return ALL_SYMBOLOGIES - {Symbology.DATAMATRIX}
    return QR_ONLY


def decode_options(station: StationSection) -> DecodeOptions:
    """Decoder settings from the station section."""
    return DecodeOptions(symbologies=symbologies(station), fallback=Fallback(station.decode_fallback))


def rack_options(masstest: MasstestSection) -> tuple[RackLayout, DecodeOptions]:
    """The rack's layout and the decoder settings for a rack photo, from the ``[masstest]`` section."""
    return (RackLayout(masstest.rack_rows, masstest.rack_columns),
            replace(RACK, symbologies=frozenset(Symbology(s) for s in masstest.rack_symbologies)))
