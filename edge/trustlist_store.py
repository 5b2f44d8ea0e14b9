"""The box's copy of the trust list: only newer, validly signed lists replace it; it survives restarts.

The uplink offers every trust list it receives (retained topic ``ehc/v1/central/trust``) and enrollment
offers the one in its answer; :meth:`TrustListFile.offer` keeps it only if it verifies with the central
key and its version is newer than the one on disk (a rollback to an older list is refused), and it does not
roll back a DCC value set: each one the held list carries must be there with the same or a later date. The station
reads the file when it changes. The list's age goes into the ``health`` report; a list older than
``max_age`` makes outcomes yellow rather than green (:mod:`edge.credentials.verifier`).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from foundation.files import write_atomic
from mqtt.trustlist import TrustList, TrustListInvalid, open_signed

logger = logging.getLogger(__name__)


class TrustListFile:
    """A signed trust list kept at ``path``, checked with the central key."""

    def __init__(self, path: Path, central: ec.EllipticCurvePublicKey) -> None:
        self.path = Path(path)
        self.central = central
        self._lock = threading.Lock()
        self._cached: tuple[float, TrustList | None] | None = None

    def current(self) -> TrustList | None:
        """The list on disk (re-read when the file changed), or None when there is none or it is bad."""
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:
                return None
            if self._cached is not None and self._cached[0] == mtime:
                return self._cached[1]
            try:
                trust: TrustList | None = open_signed(self.path.read_bytes(), self.central)
            except (OSError, TrustListInvalid) as exc:
                logger.error("trust list %s unusable: %s", self.path, exc)
                trust = None
            self._cached = (mtime, trust)
            return trust

    def offer(self, payload: bytes) -> bool:
        """Keep ``payload`` if it is a validly signed list newer than the current one; True if kept."""
        try:
            trust = open_signed(payload, self.central)
        except TrustListInvalid as exc:
            logger.warning("trust list refused: %s", exc)
            return False
        held = self.current()
        if held is not None and trust.version <= held.version:
            if trust.version < held.version:
                logger.warning("trust list version %d refused: older than version %d held", trust.version,
                               held.version)
            return False
        if held is not None:
            offered = trust.valueset_dates()
            for set_id, date in held.valueset_dates().items():
                if offered.get(set_id, "") < date:
                    logger.warning("trust list version %d refused: value set %s of %s rolls back the one of %s held",
                                   trust.version, set_id, offered.get(set_id, "(absent)"), date)
                    return False
        write_atomic(self.path, payload, 0o644)
        logger.info("trust list version %d kept (%d EHC1, %d DCC, %d SHC issuers, %d revoked cards)", trust.version,
                    len(trust.ehc1), len(trust.dcc), len(trust.shc), len(trust.revoked_cards))
        return True

    def age(self, now: float | None = None) -> float | None:
        """Seconds since the current list was signed, or None without a list."""
        trust = self.current()
        return None if trust is None else (time.time() if now is None else now) - trust.issued
