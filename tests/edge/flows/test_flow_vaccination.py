"""The vaccination room: child identified, dose checks, override, next-dose slip, central record, offline."""

from __future__ import annotations

import datetime as dt

import pytest

from edge.credentials.ehc1 import Card, issue
from edge.feedback import Signal
from edge.flows.base import ButtonPress
from edge.flows.vaccination import Product, VaccinationFlow
from mqtt.lookup import ChildRecord
from tests.support.flow_helpers import FakeWallClock, make_ctx, qr, stored, tube

TODAY = dt.date(2026, 11, 25)
BIRTH = dt.date(2026, 5, 20)  # six months old: HepB 3, IPV/bOPV, DTaP due around now
HEPB = Product("8600001", "HepB", "HepB-10ug", "L2026A", "2027-06-30")
OLD = Product("8600002", "HepB", "HepB-10ug", "L2020X", "2021-01-01")
MMR = Product("8600003", "MMR", "MMR", "L2026M", "2027-06-30")


def code(prefix: str, n: int) -> str:
    return prefix + str(n).rjust(20 - len(prefix), "0")


class Records:
    """The central service's answers, or None (offline)."""

    def __init__(self, record: ChildRecord | None) -> None:
        self.answer = record
        self.asked: list[str] = []

    def record(self, child_ref: str) -> ChildRecord | None:
        self.asked.append(child_ref)
        return self.answer


@pytest.fixture
def ctx(box):
    from edge.credentials.verifier import TrustedVerifier  # noqa: F401  (the EHC1 verifier is set per test)

    c = make_ctx(box, FakeWallClock(dt.datetime(2026, 11, 25, 9).timestamp()))
    return c


def _child_card(verifier_issuer) -> str:
    return issue(Card(card_id="0c" * 16, name="王小明", birth_date=BIRTH.isoformat(), sex="M", guardian="1b" * 16),
                 verifier_issuer, "EHC-TEST", now=dt.datetime(2026, 11, 25, 9).timestamp())


@pytest.fixture
def child_verifier(tmp_path):
    from cryptography.hazmat.primitives import serialization

    from edge.credentials.verifier import TrustedVerifier
    from edge.trustlist_store import TrustListFile
    from foundation.keyfiles import generate_key
    from mqtt.trustlist import TrustList, public_key_kid, sign

    central, issuer = generate_key(), generate_key()
    pem = issuer.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    held = TrustListFile(tmp_path / "t.cose", central.public_key())
    held.offer(sign(TrustList(1, ehc1=({"kid": public_key_kid(issuer.public_key()), "iss": "EHC-TEST", "key": pem},)),
                    central))
    return TrustedVerifier(held, clock=lambda: dt.datetime(2026, 11, 25, 9).timestamp()), issuer


def _flow(ctx, records, products=(HEPB, OLD, MMR)) -> VaccinationFlow:
    return VaccinationFlow(ctx, list(products), records=records, today=lambda: TODAY)


def test_a_visit_prints_due_doses_records_each_package_and_the_next_dates(ctx, box, key, child_verifier) -> None:
    verifier, issuer = child_verifier
    ctx.verifier = verifier
    records = Records(ChildRecord(True, BIRTH.isoformat(), (
        {"vaccine": "HepB", "product": "HepB", "dose": 1, "date": "2026-05-20"},
        {"vaccine": "HepB", "product": "HepB", "dose": 2, "date": "2026-06-20"})))
    flow = _flow(ctx, records)
    opened = flow.handle(qr(_child_card(issuer)))
    assert opened.signal is Signal.ACCEPTED and opened.detail["record_confirmed"]  # type: ignore[union-attr]
    kind, due = ctx.tickets.tickets[0]
    assert kind == "vaccination" and due["child"] == "王*明" and "HepB" in str(due["items"])
    given = flow.handle(tube(code("8600001", 1)))
    assert given.signal is Signal.ACCEPTED  # type: ignore[union-attr]
    assert flow.handle(tube(code("8600001", 1))).reason == "code_used"  # type: ignore[union-attr]
    assert flow.handle(tube(code("8600002", 7))).reason == "lot_expired"  # type: ignore[union-attr]
    assert flow.handle(tube(code("9999999", 7))).reason == "unknown_product"  # type: ignore[union-attr]
    # MMR at six months is too young: amber, held for the nurse, recorded with the override
    early = flow.handle(tube(code("8600003", 1)))
    assert (early.signal, early.reason) == (Signal.ATTENTION, "too_young")  # type: ignore[union-attr]
    overridden = flow.handle(ButtonPress())
    assert overridden.signal is Signal.ACCEPTED and overridden.detail["override"]  # type: ignore[union-attr]
    closed = flow.handle(ButtonPress())
    assert closed.detail["closed"] and flow.child is None  # type: ignore[union-attr]
    kind, nxt = ctx.tickets.tickets[-1]
    assert nxt["title"].startswith("下次接种") and nxt["items"] and nxt["note"] == ""
    bodies = [m.body for m in stored(box, key)]
    assert [(b["vaccine"], b["dose"], b["override"]) for b in bodies] == [("HepB", 3, False), ("MMR", 1, True)]
    assert all("王" not in str(b) and b["child_ref"] == bodies[0]["child_ref"] for b in bodies)


def test_offline_the_slip_says_not_confirmed_and_the_cache_carries_on(ctx, box, key, child_verifier) -> None:
    verifier, issuer = child_verifier
    ctx.verifier = verifier
    flow = _flow(ctx, Records(None))
    opened = flow.handle(qr(_child_card(issuer)))
    assert (opened.signal, opened.reason) == (Signal.ATTENTION, "record_not_confirmed")  # type: ignore[union-attr]
    assert ctx.tickets.tickets[0][1]["note"] == "记录未确认 record not confirmed"
    assert flow.handle(tube(code("8600001", 2))).signal is Signal.ACCEPTED  # type: ignore[union-attr]
    flow.handle(ButtonPress())
    # the same child again, still offline: the dose given is known from the box's cache
    flow.handle(qr(_child_card(issuer)))
    assert flow.child is not None and [d.vaccine for d in flow.child.doses] == ["HepB"]
    (msg,) = stored(box, key)
    assert msg.body["record_confirmed"] is False


def test_bad_paths_without_a_child(ctx) -> None:
    flow = _flow(ctx, Records(None))
    assert flow.handle(tube(code("8600001", 3))).reason == "no_child"  # type: ignore[union-attr]
    assert flow.handle(ButtonPress()).reason == "no_child"  # type: ignore[union-attr]
    assert flow.handle(qr("https://example.org")).signal is Signal.REJECTED  # type: ignore[union-attr]


def test_through_the_broker_record_in_and_doses_out_once_even_after_offline(site, store, broker, tmp_path) -> None:
    """The record comes from the central service; administrations made offline are delivered later, once."""
    import tomli_w

    from central.ingest import Ingest
    from central.site import add_device
    from central.store import open_store
    from edge import config as edge_config
    from edge.boxfiles import load_identity, open_outbox
    from edge.runtime import build_station, build_uplink
    from foundation import keyfiles
    from tests.hw_sim.camera import SimulatedQrCamera
    from tests.support.mqtt_helpers import wait_until

    issuer = keyfiles.load_private_key(site.root / "pki" / "ehc1-issuer.key")
    now = dt.datetime.now().timestamp()
    child = issue(Card(card_id="0d" * 16, name="李小红", birth_date=BIRTH.isoformat(), sex="F"), issuer, "EHC-SITE",
                  ttl=300, now=now)
    from edge.verify import card_ref
    ref = card_ref("0d" * 16, (site.root / "pki" / "pseudonym.key").read_bytes())  # keyed, as the boxes do
    store.register_child(ref, BIRTH.isoformat())
    (tmp_path / "products.toml").write_text(tomli_w.dumps({"product": [
        {"prefix": "8600001", "vaccine": "HepB", "product": "HepB-10ug", "lot": "L1", "expiry": "2099-01-01"},
        {"prefix": "8600002", "vaccine": "BCG", "product": "BCG", "lot": "B1", "expiry": "2099-01-01"}]}))
    from tests.hw_sim.printer import PrinterSimulator

    printer = PrinterSimulator()
    cfg_path = add_device(site, store, "box-vac", "clinic-a", tmp_path / "box")
    data = edge_config.load(cfg_path).model_dump()
    cfg = edge_config.EdgeConfig.model_validate({
        **data, "station": {"flow": "vaccination"}, "vaccination": {"products": str(tmp_path / "products.toml")},
        "printer": {"connection": f"serial:{printer.path}", "paper": "58mm", "settle": 0.0, "retry_interval": 0.1}})
    ingest = Ingest(site.config, open_store(site.config.database_url)).start()
    assert ingest.connected.wait(10)
    outbox = open_outbox(cfg, load_identity(cfg))
    outbox.start_boot()
    try:
        # online: the child's (empty) record comes from the centre through the uplink's session; one dose given
        up = build_uplink(cfg).start()
        parts = build_station(cfg, outbox, source=SimulatedQrCamera(
            [child, ("Code128", "86000010000000000001")], frames_per_code=3))
        assert parts.online.connected.wait(10)
        parts.runner.start()
        parts.station.run()
        assert parts.runner.wait_idle(10)
        assert parts.runner.stats.signals["accepted"] == 2, parts.runner.stats.signals
        parts.runner.submit(ButtonPress())  # the nurse ends the visit: the next-dose slip
        assert parts.runner.wait_idle(10) and parts.printer.wait_idle(10)
        parts.close()
        try:
            wait_until(lambda: up.drained() and store.counts()["results"] == 1, 20, "delivery of the first visit")
        finally:
            up.stop()
        # offline (the box, and the ingest is down): the next visit is recorded on the box only
        ingest.stop()
        cfg_off = cfg.model_copy(update={"station": cfg.station.model_copy(update={"online_lookup": False})})
        parts = build_station(cfg_off, outbox, source=SimulatedQrCamera(
            [child, ("Code128", "86000020000000000002")], frames_per_code=3))
        parts.runner.start()
        parts.station.run()
        parts.runner.submit(ButtonPress())
        assert parts.runner.wait_idle(10) and parts.printer.wait_idle(10)
        parts.close()
        assert outbox.stats().depth == 1
        # back online: the uplink delivers everything; the central record holds each dose once
        ingest = Ingest(site.config, open_store(site.config.database_url)).start()
        up = build_uplink(cfg).start()
        try:
            wait_until(lambda: up.drained() and store.counts()["results"] == 2, 20, "delivery")
        finally:
            up.stop()
        birth, doses = store.vaccination_record(ref)
        assert birth == BIRTH.isoformat() and [(d["vaccine"], d["dose"]) for d in doses] == [("HepB", 1), ("BCG", 1)]
        # four slips came out of the printer: due today and next doses for each visit; the offline ones say so
        slips = printer.wait_for_tickets(4)
        assert [any("记录未确认" in line for line in t.texts) for t in slips] == [False, False, True, True]
        assert any("HepB" in line for line in slips[0].texts)
    finally:
        ingest.stop()
        outbox.close()
        printer.close()
