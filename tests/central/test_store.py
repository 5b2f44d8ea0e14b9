"""The central store on both back ends: registry, exactly-once results, sequence gaps, rejections.

Every test runs on SQLite and on PostgreSQL (a fresh database per test, see ``pg_url`` in conftest).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization

from central import ca
from central.store import (
    DUPLICATE,
    SEQ_CONFLICT,
    STORED,
    DeviceRecord,
    Rejection,
    SqliteStore,
    SqlStore,
    StoreUnavailable,
    VerifiedResult,
    open_store,
)
from foundation import keyfiles
from mqtt import envelope, topics

CLINIC = "clinic-a"
def issue_pem(device: str = "box-0001") -> str:
    """A real device certificate (the store records each certificate's serial for revocation lists)."""
    ca_key, ca_cert = _CA
    cert = ca.issue_client_cert(ca_key, ca_cert, keyfiles.generate_key().public_key(), device)
    return cert.public_bytes(serialization.Encoding.PEM).decode()


_CA = ca.create_ca()
PEM = issue_pem()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> SqlStore:
    url = f"sqlite:///{tmp_path}/central.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = open_store(url)
    yield s
    with contextlib.suppress(Exception):
        s.close()


@pytest.fixture(scope="module")
def key():
    return keyfiles.generate_key()


def result(device: str = "box-0001", boot: int = 1, seq: int = 1, body: dict | None = None, key=None,
           kind: str = "scan") -> VerifiedResult:
    msg = envelope.Message(device, boot, seq, kind, body if body is not None else {"seq": seq})
    data = envelope.sign(msg, topics.event(CLINIC, device, kind), key) if key else b"cose:" + msg.msg_id.bytes
    return VerifiedResult(CLINIC, msg, data)


def rejection(reason: str, device: str | None = "box-0001", topic: str = "ehc/v1/clinic-a/box-0001/evt/scan",
              payload: bytes = b"junk") -> Rejection:
    return Rejection(reason, topic, len(payload), device, hashlib.sha256(payload).hexdigest())


def gaps(db: SqlStore) -> list[tuple]:
    rows = db.query("SELECT device_id, boot_id, first_missing, last_missing FROM sequence_gaps "
                    "ORDER BY device_id, boot_id, first_missing")
    db.end_read()
    return [tuple(r) for r in rows]


def device_row(db: SqlStore, device: str) -> dict:
    (row,) = [d for d in db.devices() if d["device_id"] == device]
    return row


def boot_totals(db: SqlStore, device: str) -> tuple[int, int]:
    """(received, missing) summed over the device's boots, read straight from the bookkeeping table."""
    row = db.query_one("SELECT sum(received), sum(max_seq - received) FROM device_boots WHERE device_id = ?",
                       (device,))
    db.end_read()
    return int(row[0]), int(row[1])


# -- registry -----------------------------------------------------------------------------------------------

def test_register_get_revoke(db):
    assert db.get_device("box-0001") is None
    db.register_device("box-0001", CLINIC, PEM)
    assert db.get_device("box-0001") == DeviceRecord("box-0001", CLINIC, PEM, "active")
    assert db.set_device_status("box-0001", "revoked") is True
    assert db.get_device("box-0001").status == "revoked"
    assert db.set_device_status("box-0404", "revoked") is False
    assert db.get_device("box-0404") is None


def test_re_enrollment_replaces_cert_and_reactivates(db):
    db.register_device("box-0001", CLINIC, PEM)
    db.set_device_status("box-0001", "revoked")
    new = issue_pem()
    db.register_device("box-0001", "clinic-b", new)
    assert db.get_device("box-0001") == DeviceRecord("box-0001", "clinic-b", new, "active")
    # Both certificates of the device are remembered: a revocation lists them all.
    db.set_device_status("box-0001", "revoked")
    assert len(db.revoked_serials()) == 2
    assert [d["device_id"] for d in db.devices()] == ["box-0001"]


def test_presence_and_devices_listing(db):
    db.register_device("box-0002", CLINIC, PEM)
    db.register_device("box-0001", CLINIC, PEM)
    db.update_presence("box-0001", presence="online")
    db.update_presence("box-0001", state={"version": "1.0"}, health={"depth": 3})
    db.store_results([result(seq=1), result(seq=2), result(seq=4)])
    rows = db.devices()
    assert [r["device_id"] for r in rows] == ["box-0001", "box-0002"]
    assert rows[0]["presence"] == "online" and rows[0]["last_seen"] is not None
    assert (rows[0]["results"], rows[0]["missing"]) == (3, 1)
    assert (rows[1]["results"], rows[1]["missing"], rows[1]["presence"]) == (0, 0, None)
    # The listing is printed as JSON lines by ``ehc-central devices``: plain JSON values only.
    assert type(rows[0]["results"]) is int and type(rows[0]["missing"]) is int
    assert json.loads(json.dumps(rows)) == rows


# -- exactly once ---------------------------------------------------------------------------------------------

def test_outcomes_stored_duplicate_conflict(db):
    a, b = result(seq=1), result(seq=2)
    assert db.store_results([a, b]) == [STORED, STORED]
    assert db.store_results([b, a]) == [DUPLICATE, DUPLICATE]
    clash = result(seq=1, body={"other": True})
    assert clash.message.msg_id != a.message.msg_id
    assert db.store_results([clash, result(seq=3)]) == [SEQ_CONFLICT, STORED]
    counts = db.counts()
    assert counts["results"] == 3
    assert counts["rejections"] == {SEQ_CONFLICT: 1}
    assert counts["quarantined"] == 1
    # The first message with that (boot, seq) is the one kept.
    kept = [r for r in db.iter_results() if r["seq"] == 1]
    assert [r["msg_id"] for r in kept] == [str(a.message.msg_id)]


def test_same_message_twice_in_one_batch(db):
    a = result(seq=1)
    assert db.store_results([a, a, result(seq=2)]) == [STORED, DUPLICATE, STORED]
    assert db.counts()["results"] == 2
    assert boot_totals(db, "box-0001") == (2, 0)


def test_exactly_once_under_redelivery(db):
    batch = [result(seq=s) for s in range(1, 51)]
    assert db.store_results(batch) == [STORED] * 50
    rng = random.Random(7)
    for _ in range(3):
        again = rng.sample(batch, 30) + rng.sample(batch, 30)
        assert set(db.store_results(again)) == {DUPLICATE}
    assert db.store_results(batch) == [DUPLICATE] * 50
    assert db.counts() == {"results": 50, "rejections": {}, "gaps": 0}
    assert sorted(r["seq"] for r in db.iter_results()) == list(range(1, 51))
    # Sequence bookkeeping counts each result once.
    assert boot_totals(db, "box-0001") == (50, 0)


def test_same_seq_on_other_devices_and_boots_is_not_a_conflict(db):
    batch = [result("box-0001", 1, 1), result("box-0002", 1, 1), result("box-0001", 2, 1)]
    assert db.store_results(batch) == [STORED] * 3


def test_stored_fields_and_audit_copy(db, key):
    res = result(seq=7, body={"outcome": "green", "名": "扫码", "n": [1, 2.5, None, True]}, key=key)
    db.store_results([res])
    (row,) = db.iter_results()
    m = res.message
    assert row["msg_id"] == str(m.msg_id)
    assert (row["device_id"], row["clinic"], row["boot_id"], row["seq"], row["kind"], row["ts_ms"]) == \
           (m.device, CLINIC, m.boot, m.seq, m.kind, m.ts_ms)
    assert row["body"] == m.body
    device, cose = db.envelope(str(m.msg_id))
    assert (device, cose) == (m.device, res.envelope)
    assert type(cose) is bytes
    assert envelope.verify(cose, topics.event(CLINIC, device, "scan"), key.public_key()) == m
    assert db.envelope(str(uuid.uuid4())) is None


# -- sequence gaps ---------------------------------------------------------------------------------------------

def test_gap_recorded_and_late_arrivals_reduce_missing(db):
    db.register_device("box-0001", CLINIC, PEM)
    db.store_results([result(seq=s) for s in (1, 2, 5)])
    assert gaps(db) == [("box-0001", 1, 3, 4)]
    assert db.counts()["gaps"] == 1
    assert device_row(db, "box-0001")["missing"] == 2
    db.store_results([result(seq=3)])
    assert device_row(db, "box-0001")["missing"] == 1
    assert db.counts()["gaps"] == 1  # the gap stays on record as an event
    db.store_results([result(seq=4), result(seq=6)])
    assert device_row(db, "box-0001")["missing"] == 0
    assert device_row(db, "box-0001")["results"] == 6
    assert gaps(db) == [("box-0001", 1, 3, 4)]


def test_gaps_within_one_unordered_batch(db):
    db.store_results([result(seq=s) for s in (9, 1, 2, 5)])
    assert gaps(db) == [("box-0001", 1, 3, 4), ("box-0001", 1, 6, 8)]
    assert boot_totals(db, "box-0001") == (4, 5)


def test_gaps_are_per_boot(db):
    db.store_results([result(boot=1, seq=1), result(boot=1, seq=2)])
    db.store_results([result(boot=2, seq=1)])  # a new boot starts over: no gap
    assert gaps(db) == []
    db.store_results([result(boot=3, seq=3)])
    assert gaps(db) == [("box-0001", 3, 1, 2)]


def test_duplicates_and_conflicts_do_not_move_sequences(db):
    a = result(seq=1)
    db.store_results([a, result(seq=2)])
    db.store_results([a, result(seq=2, body={"x": 1}), result(seq=1, body={"y": 1})])
    assert boot_totals(db, "box-0001") == (2, 0)
    assert gaps(db) == []


# -- queries and rejections --------------------------------------------------------------------------------------

def test_iter_results_filters(db, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    db.store_results([result("box-0001", seq=1), result("box-0002", seq=1)])
    clock[0] = 2000.0
    db.store_results([result("box-0001", seq=2), result("box-0002", seq=2), result("box-0001", seq=3)])
    rows = list(db.iter_results())
    assert [(r["device_id"], r["seq"]) for r in rows] == [
        ("box-0001", 1), ("box-0002", 1), ("box-0001", 2), ("box-0001", 3), ("box-0002", 2)]
    assert [r["received_at"] for r in rows] == [1000.0] * 2 + [2000.0] * 3
    assert [(r["device_id"], r["seq"]) for r in db.iter_results(after_received=1000.0)] == [
        ("box-0001", 2), ("box-0001", 3), ("box-0002", 2)]
    assert [r["seq"] for r in db.iter_results(device_id="box-0002")] == [1, 2]
    assert [r["seq"] for r in db.iter_results(1500.0, device_id="box-0001")] == [2, 3]
    assert len(list(db.iter_results(limit=2))) == 2
    assert list(db.iter_results(after_received=2000.0)) == []
    assert list(db.iter_results(device_id="box-0404")) == []


def test_rejections_counted_by_reason(db):
    rej = [rejection("bad_signature"), rejection("bad_signature"), rejection("unknown_device", "ghost"),
           rejection("bad_topic", None, topic="x" * 5000), rejection("oversized", None)]
    assert db.store_results([], rej) == []
    db.store_results([result(seq=1)], [rejection("bad_signature")])
    counts = db.counts()
    assert counts["rejections"] == {"bad_signature": 3, "unknown_device": 1, "bad_topic": 1, "oversized": 1}
    assert counts["results"] == 1
    (topic_len,) = db.query_one("SELECT max(length(topic)) FROM rejections")
    db.end_read()
    assert topic_len == 256


def test_a_failing_batch_stores_nothing(db):
    """A batch the database refuses (not an outage) stores nothing and raises the database's own error, not
    StoreUnavailable: retrying would fail forever, so the ingest takes such a batch apart instead."""
    import sqlite3

    db.store_results([result(seq=1)])
    bad = Rejection(None, "t", 1, None, "h")  # type: ignore[arg-type]  # NOT NULL violated after the inserts
    refused: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)
    try:
        import psycopg

        refused += (psycopg.IntegrityError,)
    except ImportError:
        pass
    with pytest.raises(refused):
        db.store_results([result(seq=2), result(seq=3)], [bad])
    assert db.counts() == {"results": 1, "rejections": {}, "gaps": 0}
    assert boot_totals(db, "box-0001") == (1, 0)
    # The connection is usable again and the retried batch is stored whole.
    assert db.store_results([result(seq=2), result(seq=3)]) == [STORED, STORED]


def test_store_unavailable_when_the_connection_is_gone(db):
    db.store_results([result(seq=1)])
    db.conn.close()
    with pytest.raises(StoreUnavailable, match="store failed"):
        db.store_results([result(seq=2)])
    with pytest.raises(StoreUnavailable):
        db.store_results([], [rejection("bad_signature")])


def test_postgres_unreachable_is_store_unavailable():
    with pytest.raises(StoreUnavailable, match="cannot connect"):
        open_store("postgresql://postgres@127.0.0.1:1/nothing")


def test_open_store_urls(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/a/b.db")
    assert (tmp_path / "a" / "b.db").exists()
    s.close()
    with pytest.raises(ValueError, match="sqlite:///"):
        open_store("mysql://db")


def test_two_workers_storing_one_boot_concurrently_keep_exact_counts(db):
    """Two ingest workers (two connections) interleave batches of the same device and boot."""
    import threading

    url = f"sqlite:///{db.path}" if isinstance(db, SqliteStore) else db.url
    db.register_device("box-0001", CLINIC, PEM)
    seqs = list(range(1, 401))
    halves = [seqs[0::2], seqs[1::2]]  # each worker gets every other result: no gaps overall
    errors: list[Exception] = []

    def worker(part: list[int]) -> None:
        store = open_store(url)
        try:
            for start in range(0, len(part), 20):
                batch = [result(seq=s) for s in part[start:start + 20]]
                for _ in range(20):  # a lost race is a StoreUnavailable the ingest would retry
                    try:
                        store.store_results(batch)
                        break
                    except StoreUnavailable:
                        continue
                else:
                    raise AssertionError("batch never stored")
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=worker, args=(h,)) for h in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert db.counts()["results"] == 400
    device = db.devices()[0]
    assert (device["results"], device["missing"]) == (400, 0)
