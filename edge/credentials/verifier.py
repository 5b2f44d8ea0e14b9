"""The box's credential verifier: every code a person can show, checked against the signed trust list.

:class:`TrustedVerifier` implements :class:`edge.verify.Verifier` for the flows:

==============  ===============================================================================
kind            verdict
==============  ===============================================================================
ehc_token       online through the central service (:mod:`edge.lookup`): active card → the card's
                health colour; unknown → red ``card_unknown``; suspended / revoked → red; no
                answer within 1.5 s → yellow ``lookup_unavailable`` (recorded with the card index,
                for the central service to resolve later). Without a lookup client: green,
                ``pending = "online_lookup"``
ehc1            offline: signature by a trusted issuer, dynamic-code time window, revocation
                (:mod:`edge.credentials.ehc1`); green / yellow / red as the card's status says
hc1, shc        offline: EU DCC / WHO DDCC and SMART Health Card verifiers over the trust list
other kinds     as :class:`edge.verify.FormVerifier`
==============  ===============================================================================

A verified credential is shown **yellow** (``trust_list_stale``) rather than green when the trust list is
older than ``max_age``, and every credential is yellow ``no_trust_list`` when the box holds none: the box
cannot know about revocations it never received.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from edge.credentials import ehc1
from edge.payloads import Payload, PayloadKind
from edge.trustlist_store import TrustListFile
from edge.verify import FormVerifier, Outcome, Verdict, card_index, card_ref
from mqtt.trustlist import TrustList

logger = logging.getLogger(__name__)

_STATUS = {"green": Outcome.GREEN, "yellow": Outcome.YELLOW, "red": Outcome.RED}


class TrustedVerifier:
    """Verifies offline credentials with the box's trust list (see the module docstring)."""

    def __init__(self, trust: TrustListFile, *, max_age: float = 7 * 86400.0, skew: float = 30.0,
                 clock: Callable[[], float] = time.time, lookup: Any = None, ref_key: bytes | None = None) -> None:
        self.trust = trust
        self.ref_key = ref_key
        self.lookup = lookup
        self.max_age = max_age
        self.skew = skew
        self.clock = clock
        self._form = FormVerifier(ref_key)
        self._stores: tuple[int, object] | None = None

    def verify(self, payload: Payload) -> Verdict:
        if payload.kind is PayloadKind.EHC_TOKEN and self.lookup is not None:
            return self._online(payload)
        if payload.kind not in (PayloadKind.EHC1, PayloadKind.HC1, PayloadKind.SHC):
            return self._form.verify(payload)
        trust = self.trust.current()
        if trust is None:
            return Verdict(Outcome.YELLOW, reason="no_trust_list")
        now = self.clock()
        if payload.kind is PayloadKind.EHC1:
            verdict = self._ehc1(payload.text, trust, now)
        else:
            verdict = self._certificate(payload.text, trust, now)
        if verdict.outcome is Outcome.GREEN and now - trust.issued > self.max_age:
            return Verdict(Outcome.YELLOW, reason="trust_list_stale", verified=True, card_ref=verdict.card_ref,
                           claims=verdict.claims)
        return verdict

    def _online(self, payload: Payload) -> Verdict:
        index = card_index(payload)
        assert index is not None and payload.code_type is not None
        ref = card_ref(payload.text, self.ref_key)
        answer = self.lookup.lookup(index, payload.code_type)
        if answer is None:
            return Verdict(Outcome.YELLOW, reason="lookup_unavailable", pending="online_lookup", card_ref=ref,
                           code_type=payload.code_type, claims={"card_index": index})
        if not answer.found:
            return Verdict(Outcome.RED, reason="card_unknown", verified=True, card_ref=ref, code_type=payload.code_type)
        if answer.status != "active":
            return Verdict(Outcome.RED, reason=f"card_{answer.status}", verified=True, card_ref=ref,
                           code_type=payload.code_type)
        outcome = _STATUS[answer.health or "green"]
        return Verdict(outcome, reason=None if outcome is Outcome.GREEN else f"status_{answer.health}", verified=True,
                       card_ref=ref, code_type=payload.code_type)

    def verify_identity(self, id_ref: str, authenticated: bool) -> Verdict:
        """The health card of a person who showed a valid identity document, found by the number's pseudonym.

        ``authenticated``: the document itself was checked (an ID card through the reader's SAM module).
        """
        if self.lookup is None:
            return Verdict(Outcome.GREEN, pending="online_lookup", verified=authenticated)
        answer = self.lookup.lookup_id(id_ref)
        if answer is None:
            return Verdict(Outcome.YELLOW, reason="lookup_unavailable", pending="online_lookup")
        if not answer.found:
            return Verdict(Outcome.YELLOW, reason="no_health_card", verified=authenticated)
        if answer.status != "active":
            return Verdict(Outcome.RED, reason=f"card_{answer.status}", verified=authenticated)
        outcome = _STATUS[answer.health or "green"]
        return Verdict(outcome, reason=None if outcome is Outcome.GREEN else f"status_{answer.health}",
                       verified=authenticated)

    def _ehc1(self, text: str, trust: TrustList, now: float) -> Verdict:
        result = ehc1.verify(text, trust.ehc1_keys(), trust.revoked_cards, at=now, skew=self.skew)
        if not result.valid:
            return Verdict(Outcome.RED, reason=result.reason)
        claims = result.claims
        outcome = _STATUS[claims["status"]]
        return Verdict(outcome, reason=None if outcome is Outcome.GREEN else f"status_{claims['status']}",
                       verified=True, card_ref=card_ref(claims["card_id"], self.ref_key),
                       claims={"guardian": claims["guardian"] is not None, "issuer": claims["issuer"],
                               "birth_date": claims["birth_date"], "name": claims["name"]})

    def _certificate(self, text: str, trust: TrustList, now: float) -> Verdict:
        from edge.credentials import verify_credential
        from edge.credentials.anchors import TrustStore

        if self._stores is None or self._stores[0] != trust.version:
            self._stores = (trust.version, TrustStore.from_trust_list(trust))
        import datetime as dt

        result = verify_credential(text, self._stores[1], dt.datetime.fromtimestamp(now, dt.UTC))  # type: ignore[arg-type]
        if not result.valid:
            return Verdict(Outcome.RED, reason=result.reason)
        return Verdict(Outcome.GREEN, verified=True, claims={"format": result.format, "kid": result.kid})
