"""The scanning station: frames in, one signed ``scan`` result per card held up, out to the outbox.

For every frame the station decodes QR codes (:mod:`edge.qrscan`), classifies each payload, suppresses
re-reads of a code seen within ``dedupe_window`` seconds (a phone held in front of the camera for a
while is one scan), and stores a result with :meth:`mqtt.outbox.Outbox.enqueue`. Only when the outbox has
the result on disk may the person be shown success: :attr:`ScanResult.indication` is
:attr:`Indication.NOT_RECORDED` whenever storing failed.

The ``scan`` body never holds the payload text. Its fields:

==============  ==============================================================================
outcome         ``"green"`` (well-formed health-card token) or ``"red"``
reason          why red: a :class:`~edge.qrscan.Malformed` name, ``"unknown_format"`` or
                ``"unsupported_format"`` (recognised but not accepted yet); null when green
kind            :class:`~edge.qrscan.PayloadKind` value
card_ref        first 16 hex digits of SHA-256 over the whole token text (ehc_token only, else null)
code_type       the token's code type (ehc_token only, else null)
verified        false: this version checks the token's form only
pending         ``"online_lookup"`` when green (verification with the platform comes later), else null
decoder         ``"zxing-cpp"`` or ``"zbar"``
decode_ms       time to decode the frame, in milliseconds
==============  ==============================================================================

Live cameras should be wrapped in :class:`~drivers.camera.LatestFrameGrabber`, which keeps the newest
frame and reopens a failing device; a :class:`~drivers.camera.CameraError` from an unwrapped source ends
:meth:`Station.run`.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from drivers.camera import FrameSource
from edge.qrscan import DecodedCode, DecodeOptions, Payload, PayloadKind, decode_frame, classify_payload
from mqtt import envelope
from mqtt.outbox import OutboxError, OutboxFull

logger = logging.getLogger(__name__)

SCAN_KIND = "scan"
DEFAULT_DEDUPE_WINDOW = 3.0


class ResultSink(Protocol):
    """What the station stores results in (:class:`mqtt.outbox.Outbox`)."""

    def enqueue(self, kind: str, body: dict[str, Any]) -> envelope.Message: ...


class Outcome(enum.StrEnum):
    """The verdict stored in the result."""

    GREEN = "green"
    RED = "red"


class Indication(enum.StrEnum):
    """What the station shows the person (LED, buzzer, screen)."""

    GREEN = "green"                # accepted and recorded
    RED = "red"                    # refused, and the refusal is recorded
    NOT_RECORDED = "not_recorded"  # the result could not be stored: ask the person to try again / staff


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One scan as handed to ``on_result``; carries no payload text."""

    outcome: Outcome
    kind: PayloadKind
    reason: str | None
    card_ref: str | None
    code_type: int | None
    decoder: str
    decode_ms: float
    stored: bool
    message_id: str | None = None
    store_error: str | None = None

    @property
    def indication(self) -> Indication:
        """Green only for a green result that is safely stored."""
        if not self.stored:
            return Indication.NOT_RECORDED
        return Indication.GREEN if self.outcome is Outcome.GREEN else Indication.RED

    def body(self) -> dict[str, Any]:
        """The ``scan`` message body (JSON types only)."""
        return {
            "outcome": self.outcome.value,
            "reason": self.reason,
            "kind": self.kind.value,
            "card_ref": self.card_ref,
            "code_type": self.code_type,
            "verified": False,
            "pending": "online_lookup" if self.outcome is Outcome.GREEN else None,
            "decoder": self.decoder,
            "decode_ms": round(self.decode_ms, 2),
        }


@dataclass(frozen=True, slots=True)
class StationStats:
    """Counters since the station was created.

    ``decoded`` counts codes read (including re-reads), ``scans`` results stored, ``rejected`` red results
    (stored or not), ``store_failures`` results the outbox refused, ``dropped_frames`` frames the source
    discarded because the station was behind.
    """

    frames: int = 0
    decoded: int = 0
    scans: int = 0
    duplicates_suppressed: int = 0
    rejected: int = 0
    store_failures: int = 0
    dropped_frames: int = 0


def card_ref(text: str) -> str:
    """Pseudonymous reference of a payload: the first 16 hex digits of SHA-256 over its UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def judge(payload: Payload) -> tuple[Outcome, str | None]:
    """Outcome and reason for a classified payload (form only; online lookup comes later)."""
    if payload.kind is PayloadKind.EHC_TOKEN:
        return Outcome.GREEN, None
    if payload.kind is PayloadKind.MALFORMED:
        return Outcome.RED, str(payload.reason)
    if payload.kind is PayloadKind.UNKNOWN:
        return Outcome.RED, "unknown_format"
    return Outcome.RED, "unsupported_format"


class Station:
    """Reads frames from a camera and stores one signed ``scan`` result per code shown.

    >>> station = Station(LatestFrameGrabber(OpenCVFrameSource(0)), outbox,        # doctest: +SKIP
    ...                   on_result=lambda r: leds.show(r.indication))
    >>> station.run(stop=stop_event)                                              # doctest: +SKIP

    ``on_result`` runs in the station's thread for every new (not suppressed) code; an exception in it is
    logged and does not stop scanning. ``clock`` is monotonic seconds (tests may pass a fake).
    """

    def __init__(self, source: FrameSource, outbox: ResultSink, *,
                 on_result: Callable[[ScanResult], None] | None = None,
                 dedupe_window: float = DEFAULT_DEDUPE_WINDOW, decode_options: DecodeOptions = DecodeOptions(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        if dedupe_window < 0:
            raise ValueError("dedupe_window must be >= 0")
        self.source = source
        self.outbox = outbox
        self.on_result = on_result
        self.dedupe_window = dedupe_window
        self.decode_options = decode_options
        self.clock = clock
        self._stats = StationStats()
        self._last_seen: dict[bytes, float] = {}
        self.heartbeat = time.monotonic()

    @property
    def stats(self) -> StationStats:
        """A snapshot of the counters (safe to read from another thread)."""
        return replace(self._stats, dropped_frames=self.source.dropped_frames)

    def _count(self, **delta: int) -> None:
        s = self._stats
        self._stats = replace(s, **{k: getattr(s, k) + v for k, v in delta.items()})

    def run(self, max_frames: int | None = None, stop: threading.Event | None = None) -> StationStats:
        """Scan until ``stop`` is set, ``max_frames`` frames were processed, or a finite source runs out.

        Opens the source and closes it on return.
        """
        done = 0
        logger.info("station started on %s", self.source.name)
        self.source.open()
        try:
            while (stop is None or not stop.is_set()) and (max_frames is None or done < max_frames):
                self.heartbeat = time.monotonic()
                frame = self.source.read()
                if frame is None:
                    if self.source.finished:
                        break
                    continue
                self.process_frame(frame)
                done += 1
        finally:
            stats = self.stats
            self.source.close()
        logger.info("station stopped: %d frames, %d scans, %d rejected, %d store failures, %d dropped",
                    stats.frames, stats.scans, stats.rejected, stats.store_failures, stats.dropped_frames)
        return stats

    def process_frame(self, frame: np.ndarray) -> list[ScanResult]:
        """Decode one frame and handle every code in it; returns the results of new (not suppressed) codes."""
        started = time.perf_counter()
        codes = decode_frame(frame, self.decode_options)
        decode_ms = (time.perf_counter() - started) * 1000.0
        self._count(frames=1, decoded=len(codes))
        results = []
        for code in codes:
            if self._is_repeat(code.text):
                self._count(duplicates_suppressed=1)
                continue
            results.append(self._handle(code, decode_ms))
        return results

    def _is_repeat(self, text: str) -> bool:
        """True if this code was seen within the window; refreshes its last sighting either way."""
        now = self.clock()
        key = hashlib.sha256(text.encode("utf-8")).digest()
        last = self._last_seen.get(key)
        self._last_seen[key] = now
        if len(self._last_seen) > 64:
            self._last_seen = {k: t for k, t in self._last_seen.items() if now - t <= self.dedupe_window}
        return last is not None and now - last <= self.dedupe_window

    def _handle(self, code: DecodedCode, decode_ms: float) -> ScanResult:
        payload = classify_payload(code.text)
        outcome, reason = judge(payload)
        ehc = payload.kind is PayloadKind.EHC_TOKEN
        result = ScanResult(outcome=outcome, kind=payload.kind, reason=reason,
                            card_ref=card_ref(payload.text) if ehc else None,
                            code_type=payload.code_type, decoder=code.decoder.value, decode_ms=decode_ms,
                            stored=False)
        try:
            msg = self.outbox.enqueue(SCAN_KIND, result.body())
        except OutboxError as exc:
            what = "outbox_full" if isinstance(exc, OutboxFull) else "outbox_error"
            result = replace(result, store_error=what)
            self._count(store_failures=1, rejected=int(outcome is Outcome.RED))
            logger.error("scan NOT recorded (%s: %s); kind=%s outcome=%s", what, exc, payload.kind, outcome)
        else:
            result = replace(result, stored=True, message_id=str(msg.msg_id))
            self._count(scans=1, rejected=int(outcome is Outcome.RED))
            logger.info("scan %s: kind=%s outcome=%s reason=%s decoder=%s %.1f ms", result.message_id,
                        payload.kind, outcome, reason, code.decoder, decode_ms)
        self._notify(result)
        return result

    def _notify(self, result: ScanResult) -> None:
        if self.on_result is None:
            return
        try:
            self.on_result(result)
        except Exception:
            logger.exception("on_result callback failed; scanning continues")
