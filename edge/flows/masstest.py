"""Mass testing with pooled sampling: one tube, up to N people, one signed binding.

The operator scans a tube's barcode (Code 128, Data Matrix ...) to open it, then each person's health-card code; the tube closes
with the operator button or when the next tube's barcode is scanned, and a signed ``pool`` result
binds the tube to its people. States::

    no_tube --tube--> open(0) --person--> open(k) --person--> full(N)
       ^                 |                  |                   |
       +---- button / next tube: close, publish ``pool`` (an empty tube is discarded) ---+

Every decision has a clear signal and loses nothing:

====================================  =========  ===============================================
event                                 signal     reason
====================================  =========  ===============================================
tube scanned, none open               accepted   (tube opened)
the open tube scanned again           attention  ``tube_already_open``
a tube that was already used          rejected   ``tube_used`` (the open tube stays open)
another tube while one is open        accepted   (the open one is closed and published first)
person added                          accepted   (``attention`` / ``tube_now_full`` for the N-th)
person already in this tube           attention  ``duplicate``
person bound to another tube          rejected   ``already_in_tube`` (within ``rebind_window``)
person while the tube is full         rejected   ``tube_full``
person with no tube open              rejected   ``no_open_tube``
not a health-card code                rejected   the payload's reason, or ``not_a_health_card``
button, tube open                     accepted   (closed, published, ticket printed)
button, tube empty                    attention  ``tube_discarded_empty``
button, no tube                       attention  ``no_open_tube``
the outbox cannot store               not_recorded  ``outbox_full`` / ``outbox_error``
health card on a box without the      not_recorded  ``no_seal_key`` (the tube stays open for ID cards)
central sealing key
====================================  =========  ===============================================

The open tube and its members live in the outbox database, so a restart resumes the tube; closing
writes the ``pool`` result and marks the tube closed in one transaction, so a crash can neither lose
the binding nor publish it twice. Once a tube is closed its members' card indexes are erased from the
box; only their pseudonymous references stay, for ``rebind_window`` seconds, to catch a second tube.

People may also show an ID card (an :class:`~edge.flows.base.IdPresented` event): they are bound by the
keyed pseudonym of their number (refused with ``no_pseudonym_key`` when the box has no key, and with the
validation code when the number does not validate).

A rack photo (a :class:`~edge.rackscan.RackRead`, the operator button held) becomes one signed ``rack``
result: every tube with its position and the ``pool`` result that closed it on this box, the unreadable and
the missing wells (body rules in :mod:`mqtt.rackbody`); the rack ticket is printed. Every well read and the
grid anchored is ``accepted``; unreadable wells are ``attention`` / ``rack_unreadable``, an assumed grid
place ``attention`` / ``rack_edge_assumed``; a photo with no rack is ``rejected`` with the reason
(``too_few_codes``, ``not_a_grid``, ``rack_turned``, ``does_not_fit``), one tube at two positions
``rejected`` / ``duplicate_tube``.

``pool`` body: ``flow`` (``"masstest"``), ``tube``, ``tube_format``,
``id_members`` (the ID pseudonyms of people who showed an ID card), ``count``, ``capacity``, ``opened_at``, ``closed_at`` (ISO 8601 UTC), ``closed_by`` (``"button"`` or
``"next_tube"``). The health cards' 64-hex card indexes, which the central service needs to recall the
people of a positive pool, go in the sealed ``personal`` part as ``{"members": [...]}`` (only when there
are any), never in clear; a box without the central sealing key therefore binds no health card.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from edge.feedback import Signal
from edge.flows.base import ButtonPress, Event, FlowContext, FlowOutcome, IdPresented, Scan
from edge.identity import PresentedId
from edge.payloads import PayloadKind, classify_payload
from edge.rackscan import RackRead
from edge.symbology import Symbology
from edge.verify import card_index, card_ref
from mqtt.outbox import OutboxError
from mqtt.rackbody import RACK_KIND, RackInvalid, check_rack

logger = logging.getLogger(__name__)

POOL_KIND = "pool"
DEFAULT_TUBE_PATTERN = r"[A-Za-z0-9\-]{6,40}"
DEFAULT_RACK_PATTERN = r"RACK-[A-Za-z0-9\-]{1,40}"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pool_tubes (
    tube TEXT PRIMARY KEY, format TEXT NOT NULL, state TEXT NOT NULL, opened REAL NOT NULL, closed REAL,
    capacity INTEGER NOT NULL, message_id TEXT);
CREATE TABLE IF NOT EXISTS pool_members (
    tube TEXT NOT NULL, person TEXT NOT NULL, card_index TEXT, id_ref TEXT, added REAL NOT NULL,
    PRIMARY KEY (tube, person));
CREATE INDEX IF NOT EXISTS pool_members_person ON pool_members (person, added);
"""


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """``capacity``: people per tube (10-in-1, 20-in-1 ...); ``tube_pattern``: what a tube barcode looks
    like (a full-match regular expression over the 1D code's text); ``rebind_window``: seconds during
    which a person bound to one tube is refused for another (0 disables the check); ``rack_pattern``: what a
    rack's own label looks like (a code off the grid of a rack photo that matches it names the rack)."""

    capacity: int = 10
    tube_pattern: str = DEFAULT_TUBE_PATTERN
    rebind_window: float = 12 * 3600.0
    rack_pattern: str = DEFAULT_RACK_PATTERN

    def __post_init__(self) -> None:
        if not 1 <= self.capacity <= 100:
            raise ValueError("capacity must be 1..100")
        re.compile(self.tube_pattern)
        re.compile(self.rack_pattern)


@dataclass(frozen=True, slots=True)
class OpenTube:
    """The tube being filled."""

    tube: str
    format: str
    opened: float
    capacity: int
    count: int


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")


class MassTestFlow:
    """The pooled-sampling state machine (see the module docstring)."""

    name = "masstest"

    def __init__(self, ctx: FlowContext, settings: PoolSettings = PoolSettings()) -> None:
        self.ctx = ctx
        self.settings = settings
        self._tube_re = re.compile(settings.tube_pattern)
        self._rack_re = re.compile(settings.rack_pattern)
        ctx.outbox.state(lambda conn: [conn.execute(stmt) for stmt in _SCHEMA.split(";") if stmt.strip()])
        tube = self.open_tube
        if tube is not None:
            logger.info("resuming open tube with %d of %d people", tube.count, tube.capacity)

    # -- state --------------------------------------------------------------------------------------------

    @property
    def open_tube(self) -> OpenTube | None:
        """The tube being filled, if any (read from the database, so it survives restarts)."""
        def read(conn: sqlite3.Connection) -> OpenTube | None:
            row = conn.execute("SELECT tube, format, opened, capacity FROM pool_tubes WHERE state = 'open'").fetchone()
            if row is None:
                return None
            count = conn.execute("SELECT COUNT(*) FROM pool_members WHERE tube = ?", (row[0],)).fetchone()[0]
            return OpenTube(row[0], row[1], row[2], row[3], count)
        return self.ctx.outbox.state(read)

    # -- events -------------------------------------------------------------------------------------------

    def handle(self, event: Event | RackRead) -> FlowOutcome | None:
        if isinstance(event, RackRead):
            return self._rack(event)
        if isinstance(event, ButtonPress):
            return self._button(event) if event.button == "close" else None
        if isinstance(event, IdPresented):
            return self._person_by_id(event.identity)
        if event.symbology is not Symbology.QR:  # a tube label: Code 128, Data Matrix ...
            return self._tube(event)
        return self._person(event)

    def _tube(self, event: Scan) -> FlowOutcome:
        code = event.text
        if not self._tube_re.fullmatch(code):
            return FlowOutcome(Signal.REJECTED, reason="bad_tube_code")
        current = self.open_tube
        if current is not None and current.tube == code:
            return FlowOutcome(Signal.ATTENTION, reason="tube_already_open", detail=self._detail(current))
        used = self.ctx.outbox.state(lambda conn: conn.execute(
            "SELECT 1 FROM pool_tubes WHERE tube = ?", (code,)).fetchone())
        if used:
            return FlowOutcome(Signal.REJECTED, reason="tube_used",
                               detail=self._detail(current) if current else {})
        closed_id = None
        if current is not None:
            closing = self._close(current, "next_tube")
            if closing.signal is Signal.NOT_RECORDED:
                return closing
            closed_id = closing.message_id
        now = self.ctx.wall_clock()
        self.ctx.outbox.state(lambda conn: conn.execute(
            "INSERT INTO pool_tubes (tube, format, state, opened, capacity) VALUES (?, ?, 'open', ?, ?)",
            (code, event.symbology.value, now, self.settings.capacity)))
        logger.info("tube opened (capacity %d)", self.settings.capacity)
        tube = OpenTube(code, event.symbology.value, now, self.settings.capacity, 0)
        return FlowOutcome(Signal.ACCEPTED, message_id=closed_id, detail={**self._detail(tube), "opened": True})

    def _person(self, event: Scan) -> FlowOutcome:
        payload = classify_payload(event.text)
        if payload.kind is not PayloadKind.EHC_TOKEN:
            reason = str(payload.reason) if payload.kind is PayloadKind.MALFORMED else "not_a_health_card"
            return FlowOutcome(Signal.REJECTED, reason=reason)
        index = card_index(payload)
        assert index is not None
        if getattr(self.ctx.outbox, "seal_key", None) is None:  # the index could never leave the box sealed
            return FlowOutcome(Signal.NOT_RECORDED, reason="no_seal_key")
        return self._bind(card_ref(index), index, None)

    def _person_by_id(self, identity: PresentedId) -> FlowOutcome:
        if not identity.valid:
            return FlowOutcome(Signal.REJECTED, reason=identity.code)
        id_ref = self.ctx.identity_ref(identity)["id_ref"]
        if id_ref is None:
            return FlowOutcome(Signal.REJECTED, reason="no_pseudonym_key")
        return self._bind(card_ref("id:" + id_ref), None, id_ref)

    def _bind(self, person: str, index: str | None, id_ref: str | None) -> FlowOutcome:
        current = self.open_tube
        if current is None:
            return FlowOutcome(Signal.REJECTED, reason="no_open_tube")
        now = self.ctx.wall_clock()
        since = now - self.settings.rebind_window

        def add(conn: sqlite3.Connection) -> str | None:
            if conn.execute("SELECT 1 FROM pool_members WHERE tube = ? AND person = ?",
                            (current.tube, person)).fetchone():
                return "duplicate"
            if current.count >= current.capacity:
                return "tube_full"
            if self.settings.rebind_window > 0 and conn.execute(
                    "SELECT 1 FROM pool_members WHERE person = ? AND tube != ? AND added >= ?",
                    (person, current.tube, since)).fetchone():
                return "already_in_tube"
            conn.execute("INSERT INTO pool_members (tube, person, card_index, id_ref, added) VALUES (?, ?, ?, ?, ?)",
                         (current.tube, person, index, id_ref, now))
            return None

        try:
            refused = self.ctx.outbox.state(add)
        except OutboxError as exc:
            logger.error("person NOT bound to the tube (%s)", exc)
            return FlowOutcome(Signal.NOT_RECORDED, reason="outbox_error", detail=self._detail(current))
        if refused == "duplicate":
            return FlowOutcome(Signal.ATTENTION, reason=refused, detail=self._detail(current))
        if refused:
            return FlowOutcome(Signal.REJECTED, reason=refused, detail=self._detail(current))
        tube = OpenTube(current.tube, current.format, current.opened, current.capacity, current.count + 1)
        if tube.count >= tube.capacity:
            return FlowOutcome(Signal.ATTENTION, reason="tube_now_full", detail=self._detail(tube))
        return FlowOutcome(Signal.ACCEPTED, detail=self._detail(tube))

    def _button(self, event: ButtonPress) -> FlowOutcome:
        current = self.open_tube
        if current is None:
            return FlowOutcome(Signal.ATTENTION, reason="no_open_tube")
        return self._close(current, "button")

    # -- closing ------------------------------------------------------------------------------------------

    def _close(self, tube: OpenTube, closed_by: str) -> FlowOutcome:
        now = self.ctx.wall_clock()
        prune_before = now - max(self.settings.rebind_window, 0.0)
        if tube.count == 0:
            self.ctx.outbox.state(lambda conn: conn.execute(
                "UPDATE pool_tubes SET state = 'discarded', closed = ? WHERE tube = ?", (now, tube.tube)))
            logger.info("empty tube discarded")
            return FlowOutcome(Signal.ATTENTION, reason="tube_discarded_empty", detail=self._detail(tube))
        rows = self.ctx.outbox.state(lambda conn: conn.execute(
            "SELECT card_index, id_ref FROM pool_members WHERE tube = ? ORDER BY rowid", (tube.tube,)).fetchall())
        members = [r[0] for r in rows if r[0] is not None]
        id_members = [r[1] for r in rows if r[0] is None]
        body: dict[str, Any] = {
            "flow": "masstest", "tube": tube.tube, "tube_format": tube.format,
            "id_members": id_members, "count": len(rows), "capacity": tube.capacity, "opened_at": _iso(tube.opened),
            "closed_at": _iso(now), "closed_by": closed_by,
        }

        def mark_closed(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE pool_tubes SET state = 'closed', closed = ? WHERE tube = ?", (now, tube.tube))
            conn.execute("UPDATE pool_members SET card_index = NULL, id_ref = NULL WHERE tube = ?", (tube.tube,))
            conn.execute("DELETE FROM pool_members WHERE added < ? AND tube IN "
                         "(SELECT tube FROM pool_tubes WHERE state != 'open')", (prune_before,))

        msg, error = self.ctx.publish(POOL_KIND, body, also=mark_closed,
                                      personal={"members": members} if members else None)
        if msg is None:
            return FlowOutcome(Signal.NOT_RECORDED, reason=error, detail=self._detail(tube))
        self.ctx.outbox.state(lambda conn: conn.execute(
            "UPDATE pool_tubes SET message_id = ? WHERE tube = ?", (str(msg.msg_id), tube.tube)))
        logger.info("tube closed by %s with %d of %d people: %s", closed_by, len(rows), tube.capacity, msg.msg_id)
        ticket = self.ctx.print_ticket("pool", {
            "tube": tube.tube, "count": len(rows), "capacity": tube.capacity, "station": self.ctx.clinic,
            "opened": _iso(tube.opened), "closed": _iso(now)})
        return FlowOutcome(Signal.ACCEPTED, message_id=str(msg.msg_id), ticket=ticket,
                           detail={**self._detail(tube), "closed": True})

    # -- racks ------------------------------------------------------------------------------------------

    def _rack(self, event: RackRead) -> FlowOutcome:
        """One signed ``rack`` result for a rack photo: every tube with its position and its pool."""
        reading = event.reading
        if reading is None:
            return FlowOutcome(Signal.REJECTED, reason=event.problem, detail={"message": event.message})
        unreadable = list(reading.unreadable)
        tubes: list[dict[str, Any]] = []
        where: dict[str, str] = {}
        for t in reading.tubes:
            if not self._tube_re.fullmatch(t.text):  # a code that is no tube label stands in this well
                unreadable.append(t.position)
                continue
            if t.text in where:
                return FlowOutcome(Signal.REJECTED, reason="duplicate_tube",
                                   detail={"positions": [where[t.text], t.position]})
            where[t.text] = t.position
            tubes.append({"position": t.position, "tube": t.text, "format": t.format.value, "pool": None})
        pools = self._pools([t["tube"] for t in tubes])
        for t in tubes:
            t["pool"] = pools.get(t["tube"])
        labels = [c.text for c in reading.off_grid if self._rack_re.fullmatch(c.text)]
        order = {p: i for i, p in enumerate(reading.layout.positions())}
        unreadable.sort(key=order.__getitem__)
        body: dict[str, Any] = {
            "flow": "masstest", "layout": reading.layout.name, "rows": reading.layout.rows,
            "columns": reading.layout.columns, "tubes": tubes, "unreadable": unreadable,
            "missing": list(reading.missing), "count": len(tubes), "anchored": reading.anchored,
            "rack": labels[0] if len(labels) == 1 else None, "read_at": _iso(self.ctx.wall_clock()),
            "decode_ms": round(event.decode_ms, 1),
        }
        try:
            check_rack(body)  # never sign what the central service would refuse
        except RackInvalid as exc:
            logger.error("rack result not recorded: %s", exc)
            return FlowOutcome(Signal.REJECTED, reason=exc.reason)
        msg, error = self.ctx.publish(RACK_KIND, body)
        detail = {"tubes": len(tubes), "unreadable": unreadable, "missing": body["missing"],
                  "pooled": sum(t["pool"] is not None for t in tubes), "anchored": reading.anchored}
        if msg is None:
            return FlowOutcome(Signal.NOT_RECORDED, reason=error, detail=detail)
        logger.info("rack %s recorded: %d tubes, %d unreadable, %d missing: %s", reading.layout.name, len(tubes),
                    len(unreadable), len(body["missing"]), msg.msg_id)
        ticket = self.ctx.print_ticket("rack", {
            "layout": reading.layout.name, "count": len(tubes), "wells": reading.layout.wells,
            "unreadable": ", ".join(unreadable) or "-", "missing": ", ".join(body["missing"]) or "-",
            "rack": body["rack"] or "-", "station": self.ctx.clinic, "read": body["read_at"]})
        reason = "rack_unreadable" if unreadable else None if reading.anchored else "rack_edge_assumed"
        return FlowOutcome(Signal.ATTENTION if reason else Signal.ACCEPTED, reason=reason,
                           message_id=str(msg.msg_id), ticket=ticket, detail=detail)

    def _pools(self, tubes: list[str]) -> dict[str, str]:
        """The ``pool`` result id of each of ``tubes`` closed on this box."""
        if not tubes:
            return {}
        marks = ",".join("?" * len(tubes))
        rows = self.ctx.outbox.state(lambda conn: conn.execute(
            f"SELECT tube, message_id FROM pool_tubes WHERE state = 'closed' AND message_id IS NOT NULL "
            f"AND tube IN ({marks})", tubes).fetchall())
        return {r[0]: r[1] for r in rows}

    @staticmethod
    def _detail(tube: OpenTube) -> dict[str, Any]:
        return {"count": tube.count, "capacity": tube.capacity}
