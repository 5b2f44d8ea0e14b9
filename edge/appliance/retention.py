"""Retention: delete what the box no longer needs, so nothing personal stays longer than needed.

``ehc-edge retention`` (timer ``ehc-retention.timer``, hourly) deletes

* **printed tickets** (``drivers/print_queue.py`` keeps the newest 20 printed jobs for ``reprint``, with
  masked names): those printed more than ``max_age`` ago; tickets set aside as ``failed`` (never printed)
  created more than ``max_age`` ago, counted and logged as a warning;
* **mass-testing pools** (``edge/flows/masstest.py``, tables in the outbox database): the members of a closed
  or discarded tube once ``rebind_window`` has passed (only their pseudonymous references are left by then;
  the flow prunes them itself only when the next tube closes), and the tube rows once both ``rebind_window``
  and ``max_age`` have passed and the tube's ``pool`` result has left the outbox (delivered);
* **stale files** in the state folder: a station status file not rewritten for ``max_age`` (the station is
  not running), leftover ``*.tmp`` files of interrupted atomic writes, and ``diagnostics/*`` bundles.

It never deletes a row of the outbox: the outbox only holds undelivered results, and the uplink deletes each
one when the central receipt names it. Results are therefore gone from the box as soon as they are
acknowledged; ``max_age`` governs what stays around them.

The setting is ``[retention] max_age`` in edge.toml (:class:`RetentionSection`); ``--max-age`` overrides it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from edge import config as edge_config
from edge.boxfiles import station_status_path
from edge.config import DEFAULT_MAX_AGE, EdgeConfig
from foundation.configbase import ConfigError

logger = logging.getLogger(__name__)

DIAGNOSTICS_DIR = "diagnostics"


@dataclass(frozen=True, slots=True)
class RetentionResult:
    """What one pass deleted."""

    printed_jobs: int = 0
    failed_jobs: int = 0
    pool_members: int = 0
    pool_tubes: int = 0
    files: int = 0

    @property
    def total(self) -> int:
        return self.printed_jobs + self.failed_jobs + self.pool_members + self.pool_tubes + self.files


def configured_max_age(cfg: EdgeConfig) -> float:
    """``[retention] max_age`` when the configuration has the section, else the default (24 h)."""
    section = getattr(cfg, "retention", None)
    return float(section.max_age) if section is not None else DEFAULT_MAX_AGE


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def prune_print_queue(path: Path, cutoff: float) -> tuple[int, int]:
    """Delete printed jobs printed before ``cutoff`` and failed jobs created before it: (printed, failed)."""
    if not path.exists():
        return 0, 0
    conn = _connect(path)
    try:
        if not _has_table(conn, "jobs"):
            return 0, 0
        conn.execute("BEGIN IMMEDIATE")
        printed = conn.execute("DELETE FROM jobs WHERE state = 'printed' AND COALESCE(printed, created) < ?",
                               (cutoff,)).rowcount
        failed = conn.execute("DELETE FROM jobs WHERE state = 'failed' AND created < ?", (cutoff,)).rowcount
        conn.execute("COMMIT")
    finally:
        conn.close()
    if failed:
        logger.warning("retention: deleted %d ticket jobs that could never be printed", failed)
    return printed, failed


def prune_pools(outbox_path: Path, members_before: float, tubes_before: float) -> tuple[int, int]:
    """Delete finished tubes' members added before ``members_before``, and finished tubes closed before
    ``tubes_before`` whose ``pool`` result is no longer in the outbox: (members, tubes)."""
    if not outbox_path.exists():
        return 0, 0
    conn = _connect(outbox_path)
    try:
        if not (_has_table(conn, "pool_tubes") and _has_table(conn, "pool_members")):
            return 0, 0
        conn.execute("BEGIN IMMEDIATE")
        members = conn.execute("DELETE FROM pool_members WHERE added < ? AND tube IN "
                               "(SELECT tube FROM pool_tubes WHERE state != 'open')", (members_before,)).rowcount
        tubes = 0
        rows = conn.execute("SELECT tube, message_id FROM pool_tubes WHERE state != 'open' AND closed < ?",
                            (tubes_before,)).fetchall()
        for tube, message_id in rows:
            if message_id and _in_outbox(conn, message_id):
                continue  # not yet delivered: the tube stays until its result has left the box
            if conn.execute("SELECT 1 FROM pool_members WHERE tube = ? LIMIT 1", (tube,)).fetchone():
                continue
            tubes += conn.execute("DELETE FROM pool_tubes WHERE tube = ?", (tube,)).rowcount
        conn.execute("COMMIT")
    finally:
        conn.close()
    return members, tubes


def _in_outbox(conn: sqlite3.Connection, message_id: str) -> bool:
    try:
        key = uuid.UUID(message_id).bytes
    except ValueError:
        return False
    return conn.execute("SELECT 1 FROM outbox WHERE msg_id = ?", (key,)).fetchone() is not None


def prune_files(state_dir: Path, cutoff: float, status_file: Path | None) -> int:
    """Delete stale files in the state folder: an old station status, ``*.tmp`` leftovers, old diagnostics."""
    candidates: list[Path] = []
    if status_file is not None:
        candidates.append(status_file)
    if state_dir.is_dir():
        candidates += state_dir.glob("*.tmp")
    diag = state_dir / DIAGNOSTICS_DIR
    if diag.is_dir():
        candidates += [p for p in diag.iterdir() if p.is_file()]
    removed = 0
    for path in candidates:
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def run_retention(cfg: EdgeConfig, *, max_age: float | None = None, now: float | None = None) -> RetentionResult:
    """One retention pass over the box's state folder; returns what was deleted."""
    age = configured_max_age(cfg) if max_age is None else max_age
    if age <= 0:
        raise ConfigError("retention max_age must be > 0")
    now = time.time() if now is None else now
    cutoff = now - age
    state_dir = cfg.path(cfg.device.state_dir)
    printed, failed = prune_print_queue(cfg.printer.queue_file(state_dir), cutoff)
    rebind = max(cfg.station.rebind_window, 0.0)
    members, tubes = prune_pools(cfg.outbox_path, now - rebind, now - max(rebind, age))
    files = prune_files(state_dir, cutoff, station_status_path(cfg))
    result = RetentionResult(printed, failed, members, tubes, files)
    logger.info("retention (max age %.0f s): %s", age, asdict(result), extra={"EHC_EVENT": "retention"})
    return result


def retention_main(argv: list[str]) -> int:
    """``ehc-edge retention [--config F] [--max-age SECONDS]``: one pass, one JSON line of counts."""
    p = argparse.ArgumentParser(prog="ehc-edge retention",
                                description="Delete printed tickets, finished tubes and stale files older than "
                                            "[retention] max_age (never undelivered results).")
    p.add_argument("--config", default=str(edge_config.DEFAULT_PATH))
    p.add_argument("--max-age", type=float, default=None, help="seconds (default: [retention] max_age, 24 h)")
    args = p.parse_args(argv)
    try:
        cfg = edge_config.load(args.config)
        result = run_retention(cfg, max_age=args.max_age)
    except ConfigError as exc:
        print(f"ehc-edge retention: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"ehc-edge retention: database error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({**asdict(result), "max_age": args.max_age or configured_max_age(cfg)}))
    return 0
