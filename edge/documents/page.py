"""The page a document's machine-readable zone was read on, kept for the identity desk's portrait."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class PageCapture:
    """The camera frame in which a document's zone was read (BGR), where the zone lay in it, and its format.
    Biometric data (the printed portrait): memory only, never logged or stored."""

    frame: Any = field(repr=False)
    corners: Any = field(repr=False)
    format: str = "TD3"
    chars: int = 44
