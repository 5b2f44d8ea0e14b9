"""The station's sections of edge.toml: ``[station]`` (camera, decoder, flow), ``[masstest]``,
``[vaccination]`` and ``[face]`` (the identity desk)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from edge.symbology import Symbology
from foundation.configbase import StrictModel


def check_regex(v: str) -> str:
    """``v`` if it compiles as a regular expression, else a ValueError saying why."""
    try:
        re.compile(v)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return v


class StationSection(StrictModel):
    """Scanning station settings."""

    camera: str = Field("sim", description="'sim' (generated health-card codes), 'picamera2', a V4L2 device "
                                           "such as /dev/video0, or an image file or folder")
    width: int = Field(1280, ge=160, le=4096, description="Capture width in pixels")
    height: int = Field(720, ge=120, le=3072, description="Capture height in pixels")
    fps: float = Field(15.0, gt=0, le=120, description="Frame rate asked of the camera (and of the simulator)")
    dedupe_window: float = Field(3.0, ge=0, le=60, description="Seconds a re-read of the same code is one scan")
    decode_fallback: str = Field("on_candidate", pattern=r"^(always|on_candidate|never)$",
                                 description="When zbar backs up zxing-cpp: always, on_candidate (a code was "
                                             "located but not read) or never")
    autofocus: bool = Field(True, description="Continuous autofocus where the camera has it")
    exposure: float | None = Field(None, gt=0, description="Fixed exposure (picamera2: microseconds; V4L2: the "
                                                           "driver's units); automatic when unset")
    flow: str = Field("checkin", pattern=r"^(checkin|masstest|vaccination|report|identity)$",
                      description="What the station does: checkin (clinic desk), masstest (pooled sampling), "
                                  "vaccination (vaccination room) or report (medical reports read by the camera, "
                                  "the button takes the photo)")
    symbologies: list[str] | None = Field(None, description="Codes to look for (QRCode, Code128, Code39, EAN13, "
                                                            "DataMatrix); "
                                                            "default: QRCode for checkin, all for masstest")
    pool_capacity: int = Field(10, ge=1, le=100, description="masstest: people per tube (10-in-1, 20-in-1 ...)")
    tube_pattern: str = Field(r"[A-Za-z0-9\-]{6,40}", description="masstest: full-match regular expression "
                                                                   "a tube barcode must satisfy")
    rebind_window: float = Field(12 * 3600.0, ge=0, description="masstest: seconds a person bound to one tube "
                                                                 "is refused for another (0: off)")
    max_pending: int = Field(32, ge=1, le=1000, description="New codes that may wait for the flow thread")
    online_lookup: bool = Field(True, description="Ask the central service about health-card tokens")
    document_every: int = Field(10, ge=1, le=1000, description="With [mrz]: every how many frames without a "
                                                               "barcode one is read for a passport's MRZ")
    report_attach_window: float = Field(300.0, gt=0, le=3600, description="report: seconds after a card is "
                                        "shown during which the pages read belong to its holder")
    report_tessdata: str | None = Field(None, description="report: Tesseract data folder holding chi_sim and eng "
                                                          "(default: the system's)")
    lookup_timeout: float = Field(1.5, gt=0, le=10, description="Seconds to wait for a lookup answer before the "
                                                               "scan is recorded yellow")

    @field_validator("symbologies")
    @classmethod
    def _symbologies(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("symbologies must not be empty")
            for name in v:
                Symbology(name)  # raises ValueError naming the bad value
        return v

    @field_validator("tube_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        return check_regex(v)


class VaccinationSection(StrictModel):
    """The vaccination room."""

    products: str | None = Field(None, description="Product table (TOML, [[product]] prefix, vaccine, product, lot, "
                                                    "expiry): what a package's traceability code is")
    extra_schedules: list[str] = Field(default_factory=list, description="Extra schedule files (self-paid vaccines)")


class MasstestSection(StrictModel):
    """Rack scans at a mass-testing station: the operator holds the button and the next frame is read as a
    photo of a tube rack (every tube label with its position)."""

    rack_rows: int = Field(8, ge=1, le=16, description="Rows of the rack (letters A..): 8 for 96 tubes, 6 for 48")
    rack_columns: int = Field(12, ge=1, le=24, description="Columns of the rack (numbers 1..): 12 for 96 tubes, "
                                                           "8 for 48")
    rack_symbologies: list[str] = Field(["DataMatrix", "Code128"], description="Tube labels looked for in a "
                                        "rack photo (DataMatrix, Code128)")
    rack_pattern: str = Field(r"RACK-[A-Za-z0-9\-]{1,40}", description="Full-match regular expression of the "
                              "rack's own label; a code off the grid that matches it names the rack in the result")
    rack_on_hold: bool = Field(True, description="Holding the operator button (gpio button_hold seconds) reads a "
                                                 "rack; false: racks are not read at this station")

    @field_validator("rack_symbologies")
    @classmethod
    def _rack_symbologies(cls, v: list[str]) -> list[str]:
        if not v or any(name not in ("DataMatrix", "Code128") for name in v):
            raise ValueError("rack_symbologies: one or both of DataMatrix, Code128")
        return v

    @field_validator("rack_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        return check_regex(v)


class FaceSection(StrictModel):
    """The identity desk (``[station] flow = "identity"``): face verification with liveness."""

    mode: str = Field("verify", pattern=r"^(verify|enrol)$", description="'verify': check a person against a "
                      "trusted reference; 'enrol': record a reference template with consent (desk enrolment)")
    model_dir: str | None = Field(None, description="Folder of the MiniFASNet passive-liveness models (the shared "
                                                    "model bundle); absent: active liveness only")
    threshold: float = Field(0.36, gt=0.05, lt=0.95, description="Cosine at or above which the live face is the "
                                                                "reference's person")
    time_limit: float = Field(20.0, ge=5, le=120, description="Seconds from the first challenge to the decision")
    adult_age: int = Field(18, ge=14, le=21, description="Below this age a guardian consents to enrolment")
    guardian_window: float = Field(300.0, ge=30, le=1800, description="Seconds a guardian's passed check stays "
                                                                      "valid for enrolling a child")
    consent_text: str = Field("face-consent-v1", min_length=1, max_length=64,
                              description="Version of the consent text the person (or guardian) agreed to")
