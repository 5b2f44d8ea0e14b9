"""Verifying what a person shows: the interface the flows use, and the form-only verifier.

A :class:`Verifier` turns a classified payload into a :class:`Verdict` (green, yellow or red, with a
stable reason). The credential verifiers (signed offline credentials, certificates and trust lists)
plug in here; until one is configured for a kind, :class:`FormVerifier` judges by form alone and says
so (``verified`` is false).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge.payloads import Payload, PayloadKind


class Outcome(enum.StrEnum):
    """The verdict shown to the person and stored in the result."""

    GREEN = "green"    # accepted
    YELLOW = "yellow"  # recognised, but staff must look (cannot be verified here, or needs a check)
    RED = "red"        # refused


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a verifier decided. Never holds the payload text.

    ``reason`` is a stable name (null when green); ``pending`` says what is still to be done elsewhere
    (``"online_lookup"``: the platform resolves the token); ``card_ref`` is the pseudonymous reference
    of a health card (:func:`card_ref`).
    """

    outcome: Outcome
    reason: str | None = None
    verified: bool = False
    pending: str | None = None
    card_ref: str | None = None
    code_type: int | None = None
    claims: dict[str, Any] | None = field(default=None, repr=False)


class Verifier(Protocol):
    """Decides on one payload; must not block on the network (use ``pending`` for later checks)."""

    def verify(self, payload: Payload) -> Verdict:
        """The verdict for ``payload``."""
        ...


def card_ref(text: str, key: bytes | None = None) -> str:
    """Pseudonymous reference of a card: the first 16 hex digits of HMAC-SHA-256 under the deployment's
    pseudonym key over ``"card:" + text``, so that someone who has seen a card's code cannot compute its
    reference; on a box without the key, of plain SHA-256 over the text."""
    if key:
        return hmac.new(key, b"card:" + text.encode("utf-8"), hashlib.sha256).hexdigest()[:16]
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def card_index(payload: Payload) -> str | None:
    """The 64-hex card index of a health-card token (upper case), or None for other kinds."""
    if payload.kind is not PayloadKind.EHC_TOKEN:
        return None
    return payload.text.split(":", 1)[0].upper()


class FormVerifier:
    """Judges by form only.

    ======================  =======  ==============================================================
    payload kind            outcome  reason
    ======================  =======  ==============================================================
    ehc_token               green    (none); ``pending = "online_lookup"``: the platform resolves it
    hc1, shc, ehc1          yellow   ``not_verifiable_here``: a credential this box cannot check yet
    provisioning            red      ``provisioning_code``: a technician's code, not a patient's
    unknown                 red      ``unknown_format``
    malformed               red      the :class:`~edge.payloads.Malformed` name
    ======================  =======  ==============================================================

    ``ref_key``: the deployment's pseudonym key, which keys :func:`card_ref`.
    """

    def __init__(self, ref_key: bytes | None = None) -> None:
        self.ref_key = ref_key

    def verify(self, payload: Payload) -> Verdict:
        kind = payload.kind
        if kind is PayloadKind.EHC_TOKEN:
            return Verdict(Outcome.GREEN, pending="online_lookup", card_ref=card_ref(payload.text, self.ref_key),
                           code_type=payload.code_type)
        if kind in (PayloadKind.HC1, PayloadKind.SHC, PayloadKind.EHC1):
            return Verdict(Outcome.YELLOW, reason="not_verifiable_here")
        if kind is PayloadKind.PROVISIONING:
            return Verdict(Outcome.RED, reason="provisioning_code")
        if kind is PayloadKind.MALFORMED:
            return Verdict(Outcome.RED, reason=str(payload.reason))
        return Verdict(Outcome.RED, reason="unknown_format")
