"""The audit chain: the box's log (append, verify, tampering), the audit map results carry, and the central
check of continuity (gaps, late arrivals, forks, resets) with real signed messages from a real outbox."""

from __future__ import annotations

import json
import sqlite3

import pytest

from central import audit_check as central_audit
from central.broker import free_port
from central.cli import main as central_main
from central.ingest import Inbound, Ingest
from central.site import add_device, init_central
from central.store import open_store
from edge import config as edge_config
from edge.boxfiles import load_identity, open_outbox
from edge.cli import main as edge_main
from foundation import keyfiles
from mqtt import auditchain, envelope, topics
from mqtt.outbox import DeviceIdentity, Outbox
from tests.support.mqtt_helpers import TopicRecordingClient


@pytest.fixture
def ident() -> DeviceIdentity:
    return DeviceIdentity("box-0001", "clinic-a", keyfiles.generate_key())




@pytest.fixture(params=["sqlite", "postgresql"])
def central(request, tmp_path):
    """A site, its store and an ingest worker driven without a broker, on SQLite or PostgreSQL."""
    db = "sqlite:central.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    site = init_central(tmp_path / "central", free_port(), db_url=db)
    store = open_store(site.config.database_url)
    ing = Ingest(site.config, store)
    ing.client = TopicRecordingClient()
    yield site, store, ing
    store.close()


def make_box(site, store, tmp_path, device="box-0001") -> Outbox:
    cfg = edge_config.load(add_device(site, store, device, "clinic-a", tmp_path / device))
    box = open_outbox(cfg, load_identity(cfg))
    box.start_boot()
    return box


def deliver(ingest: Ingest, box: Outbox, which: list[int] | None = None) -> dict[str, int]:
    rows = box.pending(limit=10_000)
    picked = rows if which is None else [rows[i] for i in which]
    return ingest.process([Inbound(i, 1, r.topic, r.payload) for i, r in enumerate(picked, start=1)])


def alerts(store, kind: str | None = None) -> list[dict]:
    found = central_audit.report(store)["alerts"]
    return [a for a in found if kind is None or a["kind"] == kind]


# -- the box's log ----------------------------------------------------------------------------------------------

def test_events_and_results_form_one_verifiable_chain(tmp_path, ident):
    box = Outbox(tmp_path / "outbox.db", ident)
    box.start_boot()                                   # entry 1: boot
    box.audit("print", {"template": "queue", "job": "j1"})   # entry 2
    msg = box.enqueue("scan", {"outcome": "green"})    # entry 3: the result
    assert msg.audit is not None and msg.audit["pos"] == 3 and msg.audit["base"][0] == 0
    assert [e[2] for e in msg.audit["log"]] == ["boot", "print"]
    found = box.audit_verify()
    assert found.ok and found.entries == 3 and found.head == msg.audit["head"]
    second = box.enqueue("scan", {"outcome": "red"})
    assert second.audit["base"] == [3, msg.audit["head"]] and second.audit["log"] == []
    # What travels verifies against the message it is in, and only that one.
    seg = auditchain.check(msg.audit, msg.msg_id.bytes, msg.kind, msg.boot, msg.seq, msg.ts_ms, msg.body)
    assert (seg.base_pos, seg.pos, seg.head) == (0, 3, msg.audit["head"])
    with pytest.raises(auditchain.ChainInvalid):
        auditchain.check(msg.audit, msg.msg_id.bytes, msg.kind, msg.boot, msg.seq, msg.ts_ms, {"outcome": "red"})


def test_reserved_and_personal_kinds(tmp_path, ident):
    box = Outbox(tmp_path / "outbox.db", ident)
    box.start_boot()
    with pytest.raises(ValueError):
        box.audit("result", {})
    with pytest.raises(ValueError):
        box.enqueue("scan", {"personal": "smuggled"})


def _tamper(path, sql: str, params=()) -> None:
    conn = sqlite3.connect(path)
    if params:
        conn.execute(sql, params)
    else:
        conn.executescript(sql)
    conn.commit()
    conn.close()


@pytest.mark.parametrize("sql,broken_at", [
    ("UPDATE audit_log SET digest = zeroblob(32) WHERE pos = 3", 3),          # an entry edited
    ("UPDATE audit_log SET kind = 'print' WHERE pos = 4", 4),                 # a result relabelled
    ("DELETE FROM audit_log WHERE pos = 2", 2),                               # an entry deleted
    ("DELETE FROM audit_log WHERE pos >= 5", 5),                              # the tail cut off
    ("UPDATE audit_log SET pos = 100 WHERE pos = 2; UPDATE audit_log SET pos = 2 WHERE pos = 3;"
     "UPDATE audit_log SET pos = 3 WHERE pos = 100", 2),                      # two entries swapped
])
def test_tampering_with_the_box_database_is_found(tmp_path, ident, sql, broken_at, capsys):
    path = tmp_path / "outbox.db"
    box = Outbox(path, ident)
    box.start_boot()
    for i in range(4):
        box.enqueue("scan", {"n": i})
    box.close()
    _tamper(path, sql)
    found = Outbox(path).audit_verify()
    assert not found.ok and found.broken_at == broken_at, found


def test_ehc_edge_audit_verify_names_the_broken_link(site, store, tmp_path, capsys):
    box = make_box(site, store, tmp_path)
    box.enqueue("scan", {"n": 1})
    box.close()
    config = str(tmp_path / "box-0001" / "edge.toml")
    assert edge_main(["audit", "verify", "--config", config]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    _tamper(tmp_path / "box-0001" / "state" / "outbox.db", "UPDATE audit_log SET ts_ms = ts_ms + 1 WHERE pos = 1")
    assert edge_main(["audit", "verify", "--config", config]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["broken_at"] == 1
    assert edge_main(["audit", "show", "--config", config]) == 0
    assert [json.loads(line)["kind"] for line in capsys.readouterr().out.splitlines()] == ["boot", "result"]


# -- the central check -------------------------------------------------------------------------------------------

def test_results_in_order_leave_no_alert_and_the_head_follows(central, tmp_path):
    site, store, ingest = central
    box = make_box(site, store, tmp_path)
    for i in range(3):
        box.enqueue("scan", {"n": i})
        box.audit("print", {"template": "queue", "job": f"j{i}"})
    box.enqueue("scan", {"n": 3})
    assert deliver(ingest, box)["stored"] == 4
    (head,) = central_audit.report(store)["heads"]
    assert (head["pos"], head["head"]) == (box.audit_verify().head_pos, box.audit_verify().head)
    assert alerts(store) == []


def test_late_results_close_the_gap_they_opened(central, tmp_path):
    site, store, ingest = central
    box = make_box(site, store, tmp_path)
    for i in range(4):
        box.enqueue("scan", {"n": i})
    deliver(ingest, box, [0, 3])                       # 2 and 3 are late (a resend, another worker)
    (gap,) = alerts(store, "gap")
    assert (gap["first_pos"], gap["last_pos"], gap["resolved_at"]) == (3, 4, None)
    deliver(ingest, box, [2])
    assert alerts(store, "gap")[0]["resolved_at"] is None   # half the gap is still missing
    deliver(ingest, box, [1])
    assert alerts(store, "gap")[0]["resolved_at"] is not None
    assert [a["kind"] for a in alerts(store)] == ["gap"]


def test_a_result_deleted_from_a_stolen_box_stays_a_gap(central, tmp_path, capsys):
    site, store, ingest = central
    box = make_box(site, store, tmp_path)
    sent = [box.enqueue("scan", {"n": i}) for i in range(3)]
    _tamper(box.path, "DELETE FROM outbox WHERE msg_id = ?", (sent[1].msg_id.bytes,))
    deliver(ingest, box)
    assert box.audit_verify().ok  # the box's own chain is intact: only the centre can see this
    (gap,) = alerts(store)
    assert (gap["kind"], gap["first_pos"], gap["last_pos"], gap["resolved_at"]) == ("gap", 3, 3, None)
    assert central_main(["audit", "box-0001", "--open", "--config", str(site.config_path)]) == 1
    (alert,) = json.loads(capsys.readouterr().out)["alerts"]
    assert alert["kind"] == "gap"
    # A technician who has dealt with it acknowledges it; the command is then quiet again.
    assert central_main(["audit", "--ack", str(alert["id"]), "--config", str(site.config_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"acknowledged": 1}
    assert central_main(["audit", "box-0001", "--open", "--config", str(site.config_path)]) == 0


def test_a_restored_or_cloned_database_is_a_fork(central, tmp_path):
    site, store, ingest = central
    box = make_box(site, store, tmp_path)
    box.enqueue("scan", {"n": 0})
    clone_path = tmp_path / "clone.db"
    box._conn.execute("VACUUM INTO ?", (str(clone_path),))
    box.enqueue("scan", {"n": 1})
    deliver(ingest, box)
    box.delete([r.msg_id for r in box.pending()])
    # The copy (an old backup put back, or a cloned SD card) goes on from the old position.
    clone = Outbox(clone_path, box.identity, seal_key=box.seal_key)
    clone.delete([r.msg_id for r in clone.pending()])
    clone.start_boot()
    clone.enqueue("scan", {"n": 2})
    assert deliver(ingest, clone)["stored"] == 1
    forks = alerts(store, "fork")
    assert forks and forks[0]["first_pos"] == 3


def test_a_new_chain_for_a_known_device_is_reported(central, tmp_path):
    site, store, ingest = central
    box = make_box(site, store, tmp_path)
    box.enqueue("scan", {"n": 0})
    deliver(ingest, box)
    fresh = Outbox(tmp_path / "reimaged.db", box.identity)
    fresh.start_boot()
    fresh.start_boot()  # its boot counter, seeded from the clock, must pass the old one's within this second
    fresh.enqueue("scan", {"n": 1})
    deliver(ingest, fresh)
    assert [a["kind"] for a in alerts(store)] == ["chain_reset"]
    assert len(central_audit.report(store, "box-0001")["heads"]) == 2


def test_forged_or_missing_links_are_flagged_and_the_result_kept(central, tmp_path):
    site, store, ingest = central
    box = make_box(site, store, tmp_path)
    box.enqueue("scan", {"n": 0})
    deliver(ingest, box)
    ident = box.identity
    topic = topics.event("clinic-a", ident.device, "scan")
    good = box.enqueue("scan", {"n": 1})
    forged = envelope.Message(ident.device, good.boot, 99, "scan", {"n": 1},
                              audit={**good.audit, "head": "00" * 32})
    bare = envelope.Message(ident.device, good.boot, 100, "scan", {"n": 2})
    out = ingest.process([Inbound(1, 1, topic, envelope.sign(forged, topic, ident.key)),
                          Inbound(2, 1, topic, envelope.sign(bare, topic, ident.key))])
    assert out["stored"] == 2
    assert sorted(a["kind"] for a in alerts(store)) == ["bad_chain", "unlinked"]


# -- a stolen box's database, through the real broker -----------------------------------------------------------

def test_stolen_box_database_tampering_is_seen_on_the_box_and_centrally(site, store, broker, tmp_path, capsys):
    """A thief deletes an undelivered result and edits the log: the box's verify names the edited link, and
    the centre, which receives what is left, holds an open gap where the deleted result was."""
    from edge.runtime import build_uplink
    from tests.support.mqtt_helpers import wait_until

    ing = Ingest(site.config, store).start()
    assert ing.connected.wait(10)
    box_dir = tmp_path / "box-0001"
    cfg = edge_config.load(add_device(site, store, "box-0001", "clinic-a", box_dir, {"receipt_timeout": 2.0}))
    station = open_outbox(cfg, load_identity(cfg))
    station.start_boot()
    sent = [station.enqueue("scan", {"n": i}) for i in range(4)]
    station.audit("print", {"template": "queue", "job": "j1"})
    station.close()
    db = cfg.outbox_path
    _tamper(db, "DELETE FROM outbox WHERE msg_id = ?", (sent[1].msg_id.bytes,))
    _tamper(db, "UPDATE audit_log SET digest = zeroblob(32) WHERE pos = 6")   # the print entry
    up = build_uplink(cfg, ["qr"])
    up.start()
    try:
        wait_until(lambda: store.counts()["results"] == 3 and up.drained(), what="the remaining results")
    finally:
        up.stop()
        ing.stop()
    assert edge_main(["audit", "verify", "--config", str(box_dir / "edge.toml")]) == 1
    assert json.loads(capsys.readouterr().out)["broken_at"] == 6
    assert central_main(["audit", "box-0001", "--config", str(site.config_path)]) == 1
    found = json.loads(capsys.readouterr().out)
    assert [(a["kind"], a["first_pos"], a["last_pos"], a["resolved_at"]) for a in found["alerts"]] == \
        [("gap", 3, 3, None)]
    assert found["heads"][0]["pos"] == 5


def test_a_configuration_change_is_linked_without_its_text(site, store, tmp_path):
    from edge.appliance.reconfig import reload_config

    path = add_device(site, store, "box-0001", "clinic-a", tmp_path / "box-0001")
    box = Outbox(edge_config.load(path).outbox_path)
    text = path.read_text() + '\n[logging]\nlevel = "DEBUG"\n'
    assert reload_config(path, text, restart=lambda: True, audit=box.audit)["ok"] is True
    (entry,) = box.audit_tail()
    assert entry.kind == "config" and box.audit_verify().ok
