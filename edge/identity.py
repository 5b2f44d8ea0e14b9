"""Identity documents presented at the box (ID card on the reader, passport under the camera).

:class:`PresentedId` is what a flow needs from a document, whatever the source: the number (personal
data, kept out of ``repr``), whether it validated, whether the document has expired, and a name for
the masked receipt. Only a pseudonym of the number leaves the box (:func:`pseudonym`: HMAC-SHA256 with
the deployment's key, which the central service also holds and can use to look the holder up), unless
the clinic's configuration says the number itself must be sent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Any

from drivers.idcard.validate import validate_card

PSEUDONYM_HEX = 32


@dataclass(frozen=True, slots=True)
class PresentedId:
    """A document read by a driver. ``source``: ``id_card`` or ``mrz``; ``document``: the card type or
    MRZ document code; ``code``: the validation code (``ok`` or why not)."""

    source: str
    document: str
    number: str = field(repr=False)
    name: str = field(repr=False)
    valid: bool
    code: str
    expired: bool = False
    birth_date: dt.date | None = field(default=None, repr=False)
    at: float = field(default_factory=time.perf_counter)
    photo: bytes = field(default=b"", repr=False)  # an ID card's WLT photo (opaque; only a licensed plug-in reads it)


def from_id_card(card: Any, today: dt.date | None = None) -> PresentedId:
    """A :class:`PresentedId` from a :class:`drivers.idcard.card.IdCard`, validated."""
    result = validate_card(card, today=today)
    return PresentedId(source="id_card", document=card.card_type.value, number=card.id_number,
                       name=card.display_name, valid=result.valid, code=result.code, expired=card.expired(today),
                       birth_date=card.birth_date, photo=card.photo)


def from_mrz(result: Any, today: dt.date | None = None) -> PresentedId:
    """A :class:`PresentedId` from a parsed machine-readable zone (:class:`edge.documents.mrz.MrzResult`).

    The document is named ``mrz_<type>_<issuing country>`` (``mrz_P_UTO``) so that one number issued by two
    countries gives two pseudonyms; an invalid zone (a check digit failed) is refused with ``mrz_invalid``.
    """
    today = today or dt.date.today()
    name = " ".join(part for part in (result.given_names, result.surname) if part)
    expired = result.expiry_date is not None and result.expiry_date < today
    return PresentedId(source="mrz", document=f"mrz_{result.document_type}_{result.issuing_country}",
                       number=result.document_number, name=name, valid=bool(result.valid),
                       code="ok" if result.valid else "mrz_invalid", expired=expired, birth_date=result.birth_date)


def pseudonym(key: bytes, document: str, number: str) -> str:
    """HMAC-SHA256 over ``document:NUMBER`` with the deployment key, first 32 hex digits."""
    if len(key) < 16:
        raise ValueError("pseudonym key must be at least 16 bytes")
    mac = hmac.new(key, f"{document}:{number.strip().upper()}".encode(), hashlib.sha256)
    return mac.hexdigest()[:PSEUDONYM_HEX]


def mask_number(number: str) -> str:
    """``110105********002X``: the first 4 and last 4 characters kept (fewer for short numbers)."""
    keep = 4 if len(number) >= 12 else max(1, len(number) // 4)
    return number[:keep] + "*" * (len(number) - 2 * keep) + number[-keep:]


def mask_name(name: str) -> str:
    """``张*丰`` / ``王*`` / ``J*** SMITH``: enough for a person to recognise their own receipt."""
    name = name.strip()
    if not name:
        return ""
    if name.isascii():
        parts = name.split()
        return " ".join(p[0] + "*" * (len(p) - 1) for p in parts[:-1]) + (" " if len(parts) > 1 else "") + (
            parts[-1] if len(parts) > 1 else parts[0][0] + "*" * (len(parts[0]) - 1))
    if len(name) <= 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]
