"""Retention: printed tickets, finished tubes and stale files go; undelivered results and open tubes stay."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import tomli_w

from central.site import add_device
from drivers.print_queue import PrintQueue
from edge import config as edge_config
from edge.appliance.retention import retention_main, run_retention
from edge.boxfiles import load_identity, open_outbox, station_status_path
from edge.config import RetentionSection
from edge.flows.masstest import _SCHEMA as POOL_SCHEMA
from edge.station_status import write_status

HOUR = 3600.0


@pytest.fixture
def cfg(site, store, tmp_path):
    path = add_device(site, store, "box-0007", "clinic-7", tmp_path / "box")
    import tomllib

    data = tomllib.loads(path.read_text())
    data["station"] = {"flow": "masstest", "rebind_window": 2 * HOUR}
    path.write_text(tomli_w.dumps(data))
    return edge_config.load(path)


def queue(cfg) -> PrintQueue:
    return PrintQueue(cfg.printer.queue_file(cfg.path(cfg.device.state_dir)))


def test_printed_and_failed_tickets_older_than_max_age_go_waiting_ones_stay(cfg):
    q = queue(cfg)
    printed = q.add("queue", {"name": "张*"})
    q.mark_printing(printed.id)
    q.mark_printed(printed.id)
    failed = q.add("queue", {"name": "李*"})
    q.mark_failed(failed.id)
    waiting = q.add("queue", {"name": "王*"})
    q.close()
    assert run_retention(cfg, max_age=HOUR).total == 0  # all younger than an hour
    result = run_retention(cfg, max_age=HOUR, now=time.time() + 2 * HOUR)
    assert (result.printed_jobs, result.failed_jobs) == (1, 1)
    q = queue(cfg)
    assert [j.id for j in q.jobs()] == [waiting.id]  # never printed: never deleted
    q.close()


def _pools(cfg):
    outbox = open_outbox(cfg, load_identity(cfg))
    outbox.start_boot()
    outbox.state(lambda conn: [conn.execute(s) for s in POOL_SCHEMA.split(";") if s.strip()])
    return outbox


def test_finished_tubes_go_after_the_rebind_window_and_delivery(cfg):
    now = time.time()
    outbox = _pools(cfg)
    undelivered = outbox.enqueue("pool", {"tube": "TUBE-B"})
    gone = "018f0000-0000-7000-8000-000000000000"  # its pool result was receipted: no longer in the outbox

    def fill(conn):
        rows = [("TUBE-A", "closed", now - 3 * HOUR, now - 3 * HOUR, gone),
                ("TUBE-B", "closed", now - 3 * HOUR, now - 3 * HOUR, str(undelivered.msg_id)),
                ("TUBE-C", "closed", now - 10 * 60, now - 10 * 60, gone),
                ("TUBE-D", "open", now - 3 * HOUR, None, None)]
        for tube, state, opened, closed, mid in rows:
            conn.execute("INSERT INTO pool_tubes VALUES (?, 'Code128', ?, ?, ?, 10, ?)",
                         (tube, state, opened, closed, mid))
            conn.execute("INSERT INTO pool_members VALUES (?, ?, NULL, NULL, ?)", (tube, f"ref-{tube}", opened))
    outbox.state(fill)
    result = run_retention(cfg, max_age=HOUR, now=now)
    assert result.pool_members == 2   # TUBE-A and TUBE-B: closed past the 2 h rebind window
    assert result.pool_tubes == 1     # TUBE-A; TUBE-B's result is still waiting for its receipt
    tubes = outbox.state(lambda conn: [r[0] for r in conn.execute("SELECT tube FROM pool_tubes ORDER BY tube")])
    members = outbox.state(lambda conn: [r[0] for r in conn.execute("SELECT tube FROM pool_members ORDER BY tube")])
    assert tubes == ["TUBE-B", "TUBE-C", "TUBE-D"]
    assert members == ["TUBE-C", "TUBE-D"]   # within the window / still open
    assert outbox.stats().depth == 1         # retention never touches undelivered results
    outbox.delete([undelivered.msg_id.bytes])
    assert run_retention(cfg, max_age=HOUR, now=now).pool_tubes == 1
    outbox.close()


def test_stale_files_go_fresh_ones_stay(cfg):
    state = cfg.path(cfg.device.state_dir)
    status = station_status_path(cfg)
    write_status(status, {"flow": "masstest", "camera": "ok"})
    (state / "diagnostics").mkdir()
    old_bundle = state / "diagnostics" / "old.json"
    old_bundle.write_text("{}")
    new_bundle = state / "diagnostics" / "new.json"
    new_bundle.write_text("{}")
    leftover = state / "device.crt.tmp"
    leftover.write_text("x")
    old = time.time() - 2 * HOUR
    for p in (old_bundle, leftover):
        os.utime(p, (old, old))
    assert run_retention(cfg, max_age=HOUR).files == 2
    assert status.exists() and new_bundle.exists()
    assert not old_bundle.exists() and not leftover.exists()
    os.utime(status, (old, old))
    assert run_retention(cfg, max_age=HOUR).files == 1
    assert not status.exists()
    assert cfg.trust_path.exists()  # the rest of the state folder is untouched


def test_a_box_without_queue_or_pools_is_fine(site, store, tmp_path):
    cfg = edge_config.load(add_device(site, store, "box-0008", "clinic-7", tmp_path / "b8"))
    assert run_retention(cfg).total == 0
    assert not cfg.printer.queue_file(cfg.path(cfg.device.state_dir)).exists()  # not created by retention


def test_command_prints_counts(cfg, capsys):
    path = Path(cfg.base_dir) / "edge.toml"
    assert retention_main(["--config", str(path), "--max-age", "60"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["max_age"] == 60 and doc["printed_jobs"] == 0
    assert retention_main(["--config", str(path), "--max-age", "0"]) == 2


def test_setting_is_strict():
    assert RetentionSection().max_age == 24 * HOUR
    with pytest.raises(ValueError):
        RetentionSection(max_age=0.0)
    with pytest.raises(ValueError):
        RetentionSection.model_validate({"max_age": 10.0, "typo": 1})
