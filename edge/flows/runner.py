"""The flow thread: events in through a bounded queue, outcomes out to the lights, never in the camera loop.

The camera loop only decodes and hands each new code to :meth:`FlowRunner.submit`, which never blocks:
when the flow is behind (a slow disk, a printer hiccup) and ``max_pending`` events wait, the new event is
refused and counted, and the person is shown ``not_recorded``, so nothing is silently dropped.

Device alerts (camera lost or back, printer out of paper or back) go through the same thread and are
stored as signed ``alert`` results: ``{"part": "camera" | "printer", "state": "error" | "warning" | "ok",
"error": <what, or null>}``; ``error`` shows the ``fault`` signal, ``warning`` ``attention``.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edge.feedback import Signal
from edge.flows.base import Event, Flow, FlowContext, FlowOutcome, Scan

logger = logging.getLogger(__name__)

ALERT_KIND = "alert"


@dataclass(frozen=True, slots=True)
class Alert:
    """A device part changed state."""

    part: str
    state: str
    error: str | None = None
    at: float = field(default_factory=time.perf_counter)


OutcomeHook = Callable[[Event, FlowOutcome, float], None]


@dataclass(slots=True)
class RunnerStats:
    """Counters since start; ``latency_ms`` holds the last 4096 frame-to-outcome times."""

    handled: int = 0
    busy_refused: int = 0
    errors: int = 0
    alerts: int = 0
    signals: collections.Counter[str] = field(default_factory=collections.Counter)
    latency_ms: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=4096))


class FlowRunner:
    """Runs one flow in its own thread.

    ``on_outcome(event, outcome, latency_ms)`` is called in the flow thread after the signal was shown;
    an exception in it is logged and ignored.
    """

    def __init__(self, flow: Flow, ctx: FlowContext, *, max_pending: int = 32,
                 on_outcome: OutcomeHook | None = None) -> None:
        self.flow = flow
        self.ctx = ctx
        self.on_outcome = on_outcome
        self.stats = RunnerStats()
        self._queue: queue.Queue[Event | Alert | None] = queue.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._done = threading.Condition()
        self.heartbeat = time.monotonic()

    def start(self) -> FlowRunner:
        """Start the flow thread."""
        self._thread = threading.Thread(target=self._run, name=f"flow-{self.flow.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Handle what is queued, then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    @property
    def alive(self) -> bool:
        """True while the flow thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def submit(self, event: Event | Alert) -> bool:
        """Queue an event without blocking; False (and ``not_recorded`` shown) when the flow is behind."""
        with self._done:
            self._pending += 1
        try:
            self._queue.put_nowait(event)
            return True
        except queue.Full:
            self._finished()
            self.stats.busy_refused += 1
            logger.warning("flow %s is behind (%d events waiting); event refused", self.flow.name,
                           self._queue.qsize())
            if not isinstance(event, Alert):
                self.ctx.feedback.show(Signal.NOT_RECORDED)
            return False

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted event was handled (for tests, benchmarks and shutdown)."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)

    def _finished(self) -> None:
        with self._done:
            self._pending -= 1
            if self._pending == 0:
                self._done.notify_all()

    def _run(self) -> None:
        while True:
            self.heartbeat = time.monotonic()
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if item is None:
                return
            try:
                if isinstance(item, Alert):
                    self._alert(item)
                else:
                    self._handle(item)
            except Exception:  # a failing light or printer driver must not end the flow thread
                self.stats.errors += 1
                logger.exception("flow %s: event handling failed", self.flow.name)
            finally:
                self._finished()

    def _handle(self, event: Event) -> None:
        try:
            outcome = self.flow.handle(event)
        except Exception:
            self.stats.errors += 1
            logger.exception("flow %s failed on an event; shown as not recorded", self.flow.name)
            outcome = FlowOutcome(Signal.NOT_RECORDED, reason="flow_error")
        if outcome is None:
            return
        self.ctx.feedback.show(outcome.signal)
        started = event.frame_at if isinstance(event, Scan) else event.at
        latency = (time.perf_counter() - started) * 1000.0
        self.stats.handled += 1
        self.stats.signals[outcome.signal.value] += 1
        self.stats.latency_ms.append(latency)
        if outcome.message_id is None:  # a stored result is linked by the outbox itself
            self.ctx.audit("outcome", {"flow": self.flow.name, "event": type(event).__name__,
                                       "signal": outcome.signal.value, "reason": outcome.reason})
        if self.on_outcome is not None:
            try:
                self.on_outcome(event, outcome, latency)
            except Exception:
                logger.exception("on_outcome hook failed")

    def _alert(self, alert: Alert) -> None:
        self.stats.alerts += 1
        self.ctx.feedback.show({"error": Signal.FAULT, "warning": Signal.ATTENTION}.get(alert.state, Signal.READY))
        self.ctx.publish(ALERT_KIND, {"part": alert.part, "state": alert.state, "error": alert.error})
