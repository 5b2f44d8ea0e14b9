"""The durable outbox: boot and sequence numbering, the size bound, delivery bookkeeping, crash safety.

Crash safety is tested with a real ``kill -9`` of a writer process: every result the writer reported as
stored must be in the file afterwards, and the file must pass SQLite's integrity check.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from foundation import keyfiles
from mqtt import envelope, outbox, topics
from mqtt.outbox import DeviceIdentity, Outbox, OutboxError, OutboxFull

REPO = Path(__file__).resolve().parents[2]
DEVICE, CLINIC = "box-0001", "clinic-a"


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("key") / "device.key"
    keyfiles.write_private_key(path, keyfiles.generate_key())
    return path


@pytest.fixture
def ident(key_file) -> DeviceIdentity:
    return DeviceIdentity(DEVICE, CLINIC, keyfiles.load_private_key(key_file))


@pytest.fixture
def box(tmp_path, ident):
    b = Outbox(tmp_path / "state" / "outbox.db", ident, max_bytes=1024 * 1024)
    yield b
    b.close()


def decode(ident: DeviceIdentity, p: outbox.Pending) -> envelope.Message:
    """A stored row, verified the way the central service will."""
    return envelope.verify(p.payload, p.topic, ident.key.public_key())


def all_pending(b: Outbox) -> list[outbox.Pending]:
    return b.pending(limit=1_000_000)


# -- boots and sequence numbers --------------------------------------------------------------------------

def test_boot_counter_persists_and_seq_restarts(tmp_path, ident):
    path = tmp_path / "outbox.db"
    before = int(time.time())
    b = Outbox(path, ident)
    b0 = b.boot
    assert before - 1 <= b0 <= int(time.time())  # a new outbox starts its counter at the clock
    assert b.start_boot() == b0 + 1
    assert [b.enqueue("scan", {"i": i}).seq for i in range(3)] == [1, 2, 3]
    b.close()

    b = Outbox(path, ident)
    assert b.boot == b0 + 1
    assert b.start_boot() == b0 + 2
    m = b.enqueue("scan", {"i": 3})
    assert (m.boot, m.seq) == (b0 + 2, 1)
    b.close()

    b = Outbox(path, ident)
    assert b.start_boot() == b0 + 3
    assert b.enqueue("scan", {}).seq == 1
    msgs = [decode(ident, p) for p in all_pending(b)]
    assert [(m.boot - b0, m.seq) for m in msgs] == [(1, 1), (1, 2), (1, 3), (2, 1), (3, 1)]
    assert b.stats().boot == b0 + 3
    b.close()


def test_a_wiped_outbox_does_not_reuse_boot_ids(tmp_path, ident):
    """A box whose storage was replaced must not repeat (boot, seq) pairs the centre already holds."""
    old = Outbox(tmp_path / "old.db", ident)
    first = old.start_boot()
    old.close()
    time.sleep(1.1)
    new = Outbox(tmp_path / "new.db", ident)
    assert new.start_boot() > first
    new.close()


def test_enqueue_without_start_boot_is_refused(tmp_path, ident):
    b = Outbox(tmp_path / "outbox.db", ident)
    with pytest.raises(OutboxError, match="start_boot"):
        b.enqueue("scan", {"x": 1})
    assert b.stats().depth == 0
    b.close()


def test_enqueue_without_identity_is_refused(tmp_path):
    b = Outbox(tmp_path / "outbox.db")
    b.start_boot()
    with pytest.raises(OutboxError, match="identity"):
        b.enqueue("scan", {})
    b.close()


def test_enqueued_rows_are_signed_for_their_topic(box, ident):
    box.start_boot()
    sent = box.enqueue("scan", {"outcome": "green", "名": "扫码"})
    (row,) = all_pending(box)
    assert row.topic == topics.event(CLINIC, DEVICE, "scan")
    assert row.msg_id == sent.msg_id.bytes
    assert outbox.msg_uuid(row.msg_id) == sent.msg_id
    assert decode(ident, row) == sent


def test_a_refused_body_stores_nothing_and_burns_no_seq(box):
    box.start_boot()
    with pytest.raises(envelope.MalformedMessage):
        box.enqueue_many([("scan", {"ok": 1}), ("scan", {"bad": b"bytes"})])
    assert box.stats().depth == 0 and box.stats().bytes == 0
    assert box.enqueue("scan", {}).seq == 1


# -- enqueue_many and the bound -----------------------------------------------------------------------------

def test_enqueue_many_numbers_consecutively(box, ident):
    box.start_boot()
    msgs = box.enqueue_many([("scan", {"i": i}) for i in range(10)])
    assert [m.seq for m in msgs] == list(range(1, 11))
    assert len({m.msg_id for m in msgs}) == 10
    assert [decode(ident, p).body["i"] for p in all_pending(box)] == list(range(10))


def test_enqueue_many_is_all_or_nothing_when_the_bound_is_hit(tmp_path, ident):
    b = Outbox(tmp_path / "outbox.db", ident, max_bytes=8 * 1024)
    b.start_boot()
    first = b.enqueue_many([("scan", {"pad": "x" * 500}) for _ in range(4)])
    before = b.stats()
    assert before.depth == 4
    with pytest.raises(OutboxFull):
        b.enqueue_many([("scan", {"pad": "y" * 500}) for _ in range(20)])
    after = b.stats()
    assert (after.depth, after.bytes) == (before.depth, before.bytes)
    assert [decode(ident, p).msg_id for p in all_pending(b)] == [m.msg_id for m in first]
    # The refused batch burned no sequence numbers: the central service sees no gap.
    assert b.enqueue("scan", {}).seq == 5
    b.close()


def test_outbox_full_is_an_outbox_error(tmp_path, ident):
    b = Outbox(tmp_path / "outbox.db", ident, max_bytes=1024)
    b.start_boot()
    with pytest.raises(OutboxError):
        b.enqueue("scan", {"pad": "z" * 2000})
    b.close()


def test_bound_accounting_returns_to_zero_after_delete(box):
    box.start_boot()
    msgs = box.enqueue_many([("scan", {"pad": "p" * (i * 10)}) for i in range(30)])
    st = box.stats()
    payload_bytes = sum(len(p.payload) for p in all_pending(box))
    assert st.bytes == payload_bytes + outbox.ROW_OVERHEAD * 30
    assert st.fill == pytest.approx(st.bytes / box.max_bytes)
    assert box.delete([m.msg_id.bytes for m in msgs[:10]]) == 10
    assert box.delete([m.msg_id.bytes for m in msgs[10:]]) == 20
    st = box.stats()
    assert (st.depth, st.bytes) == (0, 0)


def test_space_is_reusable_after_delete(tmp_path, ident):
    b = Outbox(tmp_path / "outbox.db", ident, max_bytes=8 * 1024)
    b.start_boot()
    for _ in range(5):
        msgs = []
        while True:
            try:
                msgs.append(b.enqueue("scan", {"pad": "q" * 300}))
            except OutboxFull:
                break
        assert len(msgs) >= 10
        assert b.delete(m.msg_id.bytes for m in msgs) == len(msgs)
        assert b.stats().bytes == 0
    b.close()


def test_bytes_accounting_survives_reopen(tmp_path, ident):
    path = tmp_path / "outbox.db"
    b = Outbox(path, ident)
    b.start_boot()
    msgs = b.enqueue_many([("scan", {"n": i}) for i in range(5)])
    used = b.stats().bytes
    b.close()
    b = Outbox(path, ident)
    assert b.stats().bytes == used and used > 0
    b.delete(m.msg_id.bytes for m in msgs)
    assert b.stats().bytes == 0
    b.close()


# -- pending / get / delete ------------------------------------------------------------------------------

def test_pending_pages_in_row_order(box):
    box.start_boot()
    box.enqueue_many([("scan", {"i": i}) for i in range(25)])
    page1 = box.pending(limit=10)
    page2 = box.pending(after_row=page1[-1].row_id, limit=10)
    page3 = box.pending(after_row=page2[-1].row_id, limit=10)
    rows = page1 + page2 + page3
    assert [len(page1), len(page2), len(page3)] == [10, 10, 5]
    assert [r.row_id for r in rows] == sorted({r.row_id for r in rows})
    assert box.pending(after_row=rows[-1].row_id) == []


def test_get_skips_delivered_rows(box):
    box.start_boot()
    msgs = box.enqueue_many([("scan", {"i": i}) for i in range(5)])
    rows = all_pending(box)
    ids = [r.row_id for r in rows]
    assert box.delete([msgs[1].msg_id.bytes, msgs[3].msg_id.bytes]) == 2
    got = box.get(list(reversed(ids)) + [10_000])
    assert [g.row_id for g in got] == [ids[0], ids[2], ids[4]]
    assert got[0] == rows[0]
    assert box.get([]) == []


def test_delete_counts_only_rows_still_present(box):
    box.start_boot()
    msgs = box.enqueue_many([("scan", {"i": i}) for i in range(3)])
    ids = [m.msg_id.bytes for m in msgs]
    assert box.delete([]) == 0
    assert box.delete([b"\x00" * 16]) == 0
    assert box.delete(ids[:2]) == 2
    assert box.delete(ids) == 1  # a repeated receipt
    assert box.delete(ids) == 0
    assert box.stats().bytes == 0


def test_delete_of_many_ids_in_chunks(box):
    box.start_boot()
    msgs = box.enqueue_many([("scan", {"i": i}) for i in range(1200)])
    ids = [m.msg_id.bytes for m in msgs]
    assert box.delete(ids[::-1] + [b"\x01" * 16] * 50) == 1200
    assert (box.stats().depth, box.stats().bytes) == (0, 0)


def test_stats_oldest_age(box, monkeypatch):
    box.start_boot()
    assert box.stats().oldest_age is None
    clock = [1_000_000.0]
    monkeypatch.setattr(outbox.time, "time", lambda: clock[0])
    first = box.enqueue("scan", {})
    clock[0] += 30
    box.enqueue("scan", {})
    clock[0] += 12.5
    st = box.stats()
    assert st.depth == 2
    assert st.oldest_age == pytest.approx(42.5)
    box.delete([first.msg_id.bytes])
    assert box.stats().oldest_age == pytest.approx(12.5)


def test_data_version_changes_when_another_connection_commits(box, ident):
    box.start_boot()
    other = Outbox(box.path, ident)
    v0 = box.data_version()
    assert box.data_version() == v0
    other.enqueue("scan", {})
    v1 = box.data_version()
    assert v1 != v0
    assert len(all_pending(box)) == 1
    other.close()


def test_alert_is_logged_once_when_crossing_the_fraction(tmp_path, ident, caplog):
    b = Outbox(tmp_path / "outbox.db", ident, max_bytes=4096, alert_fraction=0.5)
    b.start_boot()
    with caplog.at_level("WARNING", logger="mqtt.outbox"):
        msgs = [b.enqueue("scan", {"pad": "a" * 50}) for _ in range(6)]
    warnings = [r for r in caplog.records if "above" in r.getMessage()]
    assert len(warnings) == 1
    b.close()
    assert len(msgs) == 6


# -- processes ---------------------------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from mqtt.outbox import DeviceIdentity, Outbox
    from foundation.keyfiles import load_private_key

    path, key, mode, count = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    box = Outbox(path, DeviceIdentity("box-0001", "clinic-a", load_private_key(key)))
    if mode == "boot":
        print("boot", box.start_boot(), flush=True)
    else:
        print("ready", flush=True)
        sys.stdin.readline()  # start together with the other writer
    n = 0
    while count == 0 or n < count:
        batch = box.enqueue_many([(mode if mode != "boot" else "scan", {"n": n + i, "pad": "x" * 100})
                                  for i in range(5)])
        n += 5
        print(" ".join(f"{m.seq}:{m.msg_id.hex}" for m in batch), flush=True)
""")


def spawn(*args: str, stdin: int | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", WRITER, *args], stdout=subprocess.PIPE, stdin=stdin,
                            text=True, cwd=REPO, env=env)


def test_kill_9_loses_no_committed_result(tmp_path, ident, key_file):
    path = tmp_path / "outbox.db"
    proc = spawn(str(path), str(key_file), "boot", "0")
    try:
        word, first_boot = proc.stdout.readline().split()
        assert word == "boot"
        printed: list[tuple[int, str]] = []
        while len(printed) < 60:
            line = proc.stdout.readline()
            assert line, "writer died early"
            printed += [(int(s), h) for s, h in (w.split(":") for w in line.split())]
        os.kill(proc.pid, signal.SIGKILL)
        # Lines written before the kill are still in the pipe: they were committed too.
        for line in proc.stdout:
            if line.endswith("\n"):
                printed += [(int(s), h) for s, h in (w.split(":") for w in line.split())]
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    b = Outbox(path, ident)
    rows = all_pending(b)
    stored = {outbox.msg_uuid(r.msg_id).hex: decode(ident, r) for r in rows}
    for seq, msg_hex in printed:
        assert msg_hex in stored, f"seq {seq} was reported stored but is gone"
        assert stored[msg_hex].seq == seq
    # Batches are atomic even when killed mid-write, and numbering has no holes.
    seqs = sorted(m.seq for m in stored.values())
    assert len(seqs) % 5 == 0
    assert seqs == list(range(1, len(seqs) + 1))
    assert b.stats().bytes == sum(len(r.payload) for r in rows) + outbox.ROW_OVERHEAD * len(rows)
    # A new boot continues on the same file.
    assert b.start_boot() == int(first_boot) + 1
    m = b.enqueue("scan", {"after": "crash"})
    assert (m.boot, m.seq) == (int(first_boot) + 1, 1)
    assert len(all_pending(b)) == len(rows) + 1
    b.close()


def test_two_writer_processes_get_unique_seqs(tmp_path, ident, key_file):
    path = tmp_path / "outbox.db"
    b = Outbox(path, ident)
    boot = b.start_boot()
    procs = [spawn(str(path), str(key_file), kind, "60", stdin=subprocess.PIPE) for kind in ("scan", "health")]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outputs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
    assert [p.returncode for p in procs] == [0, 0]
    reported = [int(w.split(":")[0]) for out in outputs for w in out.split()]
    assert sorted(reported) == list(range(1, 121))

    rows = all_pending(b)
    msgs = [decode(ident, r) for r in rows]
    assert len(rows) == 120
    assert len({m.msg_id for m in msgs}) == 120
    assert {m.boot for m in msgs} == {boot}
    # Numbers are handed out inside the write transaction, so row order and seq order agree.
    assert [m.seq for m in msgs] == list(range(1, 121))
    assert {m.kind for m in msgs} == {"scan", "health"}
    assert all(r.topic == topics.event(CLINIC, DEVICE, decode(ident, r).kind) for r in rows)
    b.close()
