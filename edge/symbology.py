"""The barcode families the box reads, and the sets of them its flows and the configuration name."""

from __future__ import annotations

import enum


class Symbology(enum.StrEnum):
    """A barcode family the box reads (values are the names printed by ``ehc-edge decode``)."""

    QR = "QRCode"
    CODE128 = "Code128"
    CODE39 = "Code39"
    EAN13 = "EAN13"
    DATAMATRIX = "DataMatrix"

    @property
    def is_linear(self) -> bool:
        """True for the 1D symbologies."""
        return self not in (Symbology.QR, Symbology.DATAMATRIX)

    @property
    def is_label(self) -> bool:
        """True for the codes printed on tube and wristband labels (everything but QR codes)."""
        return self is not Symbology.QR


ALL_SYMBOLOGIES: frozenset[Symbology] = frozenset(Symbology)
QR_ONLY: frozenset[Symbology] = frozenset({Symbology.QR})
LINEAR: frozenset[Symbology] = frozenset(s for s in Symbology if s.is_linear)
TUBE_LABELS: frozenset[Symbology] = frozenset({Symbology.DATAMATRIX, Symbology.CODE128})
"""What a rack's tubes carry: a Data Matrix on the cap or bottom, or a Code 128 label."""
