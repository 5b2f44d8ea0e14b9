"""Vaccination room: who the child is, what is due today, each package scanned, the next-dose slip.

States::

    idle --child's code or ID--> child (record loaded, "due today" slip printed)
    child --package's traceability code--> dose checked --ok--> recorded (signed ``vaccination`` result)
                                                       \\--not due / too early--> waiting for override
    waiting --button--> recorded with ``override: true``      (any other event drops the proposal)
    child --button / next child--> next-dose slip printed --> idle

The child is named by a pseudonym (``child_ref``: the health card's reference, or the ID number's keyed
pseudonym), never by name in what leaves the box. The birth date comes from the child's signed EHC1
credential or ID document, or from the central record. The record comes from the central service
(:meth:`edge.lookup.LookupClient.record`); offline, the box uses what it cached of the child and marks
the slip "record not confirmed". Administrations are signed results in the outbox, so they reach the
central record once, when the box is back online.

A package's traceability code (20 digits, Code 128) is looked up in the product table (longest matching
prefix → vaccine, product, lot, expiry). Refused with a red signal: a code already used on this box, an
unknown product, an expired lot. Shown amber and held for the nurse's override: a dose the schedule says
is not due or too early (:func:`edge.vaccination.schedule.check_administration`).

``vaccination`` body: ``flow``, ``child_ref``, ``vaccine``, ``product``, ``dose``, ``trace_code``, ``lot``,
``expiry``, ``given_on`` (ISO date), ``room`` (clinic), ``override``, ``check`` (the schedule's reason),
``record_confirmed``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.feedback import Signal
from edge.flows.base import ButtonPress, Event, FlowContext, FlowOutcome, IdPresented
from edge.identity import mask_name
from edge.payloads import classify_payload
from edge.vaccination.schedule import GivenDose, Schedule, Status, check_administration, load_schedule, next_doses
from edge.verify import Outcome

logger = logging.getLogger(__name__)

VACCINATION_KIND = "vaccination"
TRACE_CODE = re.compile(r"[0-9]{20}")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vacc_children (child_ref TEXT PRIMARY KEY, birth_date TEXT NOT NULL, doses TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vacc_used (trace_code TEXT PRIMARY KEY, used_at REAL NOT NULL)
"""


@dataclass(frozen=True, slots=True)
class Product:
    """A vaccine package line of the product table."""

    prefix: str
    vaccine: str
    product: str
    lot: str = ""
    expiry: str | None = None  # ISO date


@dataclass
class _Child:
    ref: str
    birth: dt.date
    doses: list[GivenDose]
    confirmed: bool
    name: str = field(default="", repr=False)
    pending: tuple[str, Product, Any] | None = None
    given_today: list[str] = field(default_factory=list)


class VaccinationFlow:
    """The vaccination-room state machine (see the module docstring)."""

    name = "vaccination"

    def __init__(self, ctx: FlowContext, products: list[Product], *, records: Any = None,
                 schedule: Schedule | None = None, today: Any = None) -> None:
        self.ctx = ctx
        self.products = sorted(products, key=lambda p: -len(p.prefix))
        self.records = records
        self.schedule = schedule or load_schedule()
        self.today = today or (lambda: dt.datetime.fromtimestamp(ctx.wall_clock()).date())
        self.child: _Child | None = None
        ctx.outbox.state(lambda conn: [conn.execute(s) for s in _SCHEMA.split(";") if s.strip()])

    # -- events -------------------------------------------------------------------------------------------

    def handle(self, event: Event) -> FlowOutcome | None:
        if isinstance(event, ButtonPress):
            return self._button()
        if isinstance(event, IdPresented):
            ident = event.identity
            if not ident.valid:
                return FlowOutcome(Signal.REJECTED, reason=ident.code)
            ref = self.ctx.identity_ref(ident)["id_ref"]
            if ref is None:
                return FlowOutcome(Signal.REJECTED, reason="no_pseudonym_key")
            return self._open_child(ref, ident.birth_date, ident.name)
        if TRACE_CODE.fullmatch(event.text):
            return self._package(event.text)
        verdict = self.ctx.verifier.verify(classify_payload(event.text))
        if verdict.outcome is Outcome.RED or verdict.card_ref is None:
            return FlowOutcome(Signal.REJECTED, reason=verdict.reason or "not_a_child_credential")
        claims = verdict.claims or {}
        birth = dt.date.fromisoformat(claims["birth_date"]) if claims.get("birth_date") else None
        return self._open_child(verdict.card_ref, birth, claims.get("name", ""))

    # -- the child ----------------------------------------------------------------------------------------

    def _open_child(self, ref: str, birth: dt.date | None, name: str) -> FlowOutcome:
        finished = self._finish() if self.child is not None and self.child.ref != ref else None
        record = self.records.record(ref) if self.records is not None else None
        cached = self.ctx.outbox.state(lambda conn: conn.execute(
            "SELECT birth_date, doses FROM vacc_children WHERE child_ref = ?", (ref,)).fetchone())
        if record is not None and record.found:
            doses = [GivenDose(d["vaccine"], dt.date.fromisoformat(d["date"]) if d.get("date") else None,
                               d.get("dose"), d.get("product")) for d in record.doses]
            birth = birth or (dt.date.fromisoformat(record.birth_date) if record.birth_date else None)
        elif cached is not None:
            doses = [GivenDose(d["vaccine"], dt.date.fromisoformat(d["date"]), d.get("dose"), d.get("product"))
                     for d in json.loads(cached[1])]
            birth = birth or dt.date.fromisoformat(cached[0])
        else:
            doses = []
        if birth is None:
            return FlowOutcome(Signal.ATTENTION, reason="birth_date_unknown")
        confirmed = record is not None
        self.child = _Child(ref, birth, doses, confirmed, name)
        self._cache(self.child)
        due = [n for n in next_doses(self.schedule, birth, doses, self.today())
               if n.status in (Status.DUE, Status.OVERDUE)]
        items = [{"name": _dose_name(n), "when": "逾期 overdue" if n.status is Status.OVERDUE else "今天 today"}
                 for n in due]
        self.ctx.print_ticket(VACCINATION_KIND, self._slip("今日接种 Due today", items, confirmed))
        logger.info("child opened: %d doses due, record %s", len(due), "confirmed" if confirmed else "NOT confirmed")
        signal = Signal.ACCEPTED if confirmed else Signal.ATTENTION
        detail = {"due": len(due), "record_confirmed": confirmed, "closed_previous": finished is not None}
        return FlowOutcome(signal, reason=None if confirmed else "record_not_confirmed", detail=detail)

    def _slip(self, title: str, items: list[dict[str, str]], confirmed: bool) -> dict[str, Any]:
        assert self.child is not None
        return {"title": title, "child": mask_name(self.child.name) or self.child.ref[:8],
                "date": self.today().isoformat(), "items": items or [{"name": "无 none", "when": ""}],
                "note": "" if confirmed else "记录未确认 record not confirmed"}

    def _cache(self, child: _Child) -> None:
        doses = json.dumps([{"vaccine": d.vaccine, "date": d.date.isoformat(), "dose": d.dose_number,
                             "product": d.product} for d in child.doses if d.date is not None])
        self.ctx.outbox.state(lambda conn: conn.execute(
            "INSERT INTO vacc_children (child_ref, birth_date, doses) VALUES (?, ?, ?) ON CONFLICT(child_ref) "
            "DO UPDATE SET birth_date = excluded.birth_date, doses = excluded.doses",
            (child.ref, child.birth.isoformat(), doses)))

    # -- packages -----------------------------------------------------------------------------------------

    def _product(self, code: str) -> Product | None:
        return next((p for p in self.products if code.startswith(p.prefix)), None)

    def _package(self, code: str) -> FlowOutcome:
        child = self.child
        if child is None:
            return FlowOutcome(Signal.REJECTED, reason="no_child")
        child.pending = None
        product = self._product(code)
        if product is None:
            return FlowOutcome(Signal.REJECTED, reason="unknown_product")
        used = self.ctx.outbox.state(lambda conn: conn.execute(
            "SELECT 1 FROM vacc_used WHERE trace_code = ?", (code,)).fetchone())
        if used:
            return FlowOutcome(Signal.REJECTED, reason="code_used")
        if product.expiry and dt.date.fromisoformat(product.expiry) < self.today():
            return FlowOutcome(Signal.REJECTED, reason="lot_expired")
        check = check_administration(self.schedule, child.birth, child.doses, product.vaccine, self.today())
        if not check.ok:
            child.pending = (code, product, check)
            return FlowOutcome(Signal.ATTENTION, reason=str(check.reason.value),
                               detail={"override": "press the button to give it anyway"})
        return self._record(code, product, check, override=False)

    def _record(self, code: str, product: Product, check: Any, override: bool) -> FlowOutcome:
        child = self.child
        assert child is not None
        today = self.today()
        body = {"flow": "vaccination", "child_ref": child.ref, "vaccine": product.vaccine, "product": product.product,
                "dose": check.dose_number, "trace_code": code, "lot": product.lot, "expiry": product.expiry,
                "given_on": today.isoformat(), "room": self.ctx.clinic, "override": override,
                "check": str(check.reason.value), "record_confirmed": child.confirmed}
        dose = GivenDose(product.vaccine, today, check.dose_number, product.product)

        def also(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO vacc_used (trace_code, used_at) VALUES (?, ?)", (code, self.ctx.wall_clock()))

        msg, error = self.ctx.publish(VACCINATION_KIND, body, also=also)
        if msg is None:
            return FlowOutcome(Signal.NOT_RECORDED, reason=error)
        child.doses.append(dose)
        child.given_today.append(product.vaccine)
        child.pending = None
        self._cache(child)
        logger.info("dose recorded: %s dose %s%s", product.vaccine, check.dose_number, " (override)" if override else "")
        return FlowOutcome(Signal.ACCEPTED, message_id=str(msg.msg_id), detail={"override": override})

    # -- the button ---------------------------------------------------------------------------------------

    def _button(self) -> FlowOutcome:
        child = self.child
        if child is None:
            return FlowOutcome(Signal.ATTENTION, reason="no_child")
        if child.pending is not None:
            code, product, check = child.pending
            return self._record(code, product, check, override=True)
        self._finish()
        return FlowOutcome(Signal.ACCEPTED, detail={"closed": True})

    def _finish(self) -> str | None:
        """Print the next-dose slip and forget the child."""
        child = self.child
        if child is None:
            return None
        nxt = [n for n in next_doses(self.schedule, child.birth, child.doses, self.today())
               if n.status not in (Status.COMPLETE,) and n.recommended is not None and n.status.value != "aged_out"]
        items = [{"name": _dose_name(n),
                  "when": (max(n.recommended, self.today()) if n.recommended else self.today()).isoformat()}
                 for n in sorted(nxt, key=lambda n: n.recommended or self.today())[:8]]
        job = self.ctx.print_ticket(VACCINATION_KIND, self._slip("下次接种 Next doses", items, child.confirmed))
        self.child = None
        return job


def _dose_name(n: Any) -> str:
    """``乙肝疫苗 HepB 3``: the Chinese name, the series code and the dose number, short enough for a slip."""
    return f"{n.name_zh.split(' / ')[0]} {n.series} {n.dose_number or ''}".strip()


def load_products(data: Mapping[str, Any]) -> list[Product]:
    """Products from a parsed TOML table ``[[product]] prefix, vaccine, product, lot, expiry``."""
    out = []
    for entry in data.get("product", []):
        prefix = str(entry["prefix"])
        if not prefix.isdigit() or not 1 <= len(prefix) <= 20:
            raise ValueError(f"product prefix {prefix!r} must be 1-20 digits")
        out.append(Product(prefix, entry["vaccine"], entry.get("product", entry["vaccine"]), entry.get("lot", ""),
                           entry.get("expiry")))
    return out
