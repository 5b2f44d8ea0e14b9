"""Durable print queue: every ticket job is committed to SQLite (WAL, fsync) before ``submit`` returns.

A job moves ``queued`` → ``printing`` → ``printed``. A job left in ``printing`` (the printer failed during
the job, or the process died) is printed again, so a ticket is never lost; a job marked ``printed`` is
never printed again, also after a restart. A job that can no longer be laid out (its template changed
incompatibly since it was stored) is set aside as ``failed`` and logged, never deleted silently. Printed
jobs are kept only for ``reprint`` and pruned to the newest few, so masked personal data does not pile up
on the box.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation.privatedb import private_database

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    fields TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'printing', 'printed', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    printed REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
"""
WAITING = "state IN ('queued', 'printing')"


class PrintQueueError(RuntimeError):
    """The print queue cannot store or update a job (disk full, database unreadable)."""


class PrintQueueFull(PrintQueueError):
    """The queue already holds its limit of unprinted tickets; fix the printer before printing more."""


class JobState(enum.StrEnum):
    """Where a job is."""

    QUEUED = "queued"
    PRINTING = "printing"
    PRINTED = "printed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Job:
    """One stored ticket job."""

    seq: int
    id: str
    kind: str
    fields: dict[str, Any]
    state: JobState
    attempts: int
    created: float
    printed: float | None


def to_jsonable(value: Any) -> Any:
    """``value`` as JSON data: dataclasses and mappings become objects, sequences lists, dates text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return [to_jsonable(v) for v in value]
    return str(value)


class PrintQueue:
    """A SQLite-backed FIFO of ticket jobs, safe to use from several threads.

    >>> q = PrintQueue(Path("/var/lib/ehc-edge/printer.db"), max_jobs=200)   # doctest: +SKIP
    >>> job = q.add("queue", {"clinic": "clinic-7", "number": "A012", ...})  # doctest: +SKIP
    """

    def __init__(self, path: Path, *, max_jobs: int = 200, keep_printed: int = 20) -> None:
        self.path = Path(path)
        self.max_jobs = max_jobs
        self.keep_printed = keep_printed
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            private_database(self.path)  # tickets carry queue numbers and names
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=10.0, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._conn.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise PrintQueueError(f"cannot open print queue {self.path}: {exc}") from None

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._conn.close()

    def _write(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, args)
        except sqlite3.Error as exc:
            raise PrintQueueError(f"print queue {self.path.name}: {exc}") from None

    def add(self, kind: str, fields: Mapping[str, Any]) -> Job:
        """Store a new job durably and return it; raises :class:`PrintQueueFull` at the limit."""
        data = json.dumps(to_jsonable(fields), ensure_ascii=False, sort_keys=True)
        job_id = uuid.uuid4().hex
        now = time.time()
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                pending = self._conn.execute(f"SELECT COUNT(*) FROM jobs WHERE {WAITING}").fetchone()[0]
                if pending >= self.max_jobs:
                    self._conn.execute("ROLLBACK")
                    raise PrintQueueFull(f"print queue holds {pending} unprinted tickets (limit {self.max_jobs}); "
                                         "check the printer (paper, cover, cable)")
                cur = self._conn.execute("INSERT INTO jobs (id, kind, fields, state, created) VALUES (?, ?, ?, ?, ?)",
                                         (job_id, kind, data, JobState.QUEUED.value, now))
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise PrintQueueError(f"print queue {self.path.name}: cannot store job: {exc}") from None
        return Job(int(cur.lastrowid or 0), job_id, kind, json.loads(data), JobState.QUEUED, 0, now, None)

    def next_pending(self) -> Job | None:
        """The oldest job waiting (``queued`` or ``printing``), or ``None``."""
        with self._lock:
            row = self._conn.execute(f"SELECT * FROM jobs WHERE {WAITING} ORDER BY seq LIMIT 1").fetchone()
        return _job(row) if row else None

    def mark_printing(self, job_id: str) -> None:
        """Record that the job is being sent (counts an attempt)."""
        with self._lock:
            self._write(f"UPDATE jobs SET state = 'printing', attempts = attempts + 1 WHERE id = ? AND {WAITING}",
                        (job_id,))

    def mark_printed(self, job_id: str) -> None:
        """Record that the job came out; it will never be printed again. Prunes old printed jobs."""
        with self._lock:
            self._write("UPDATE jobs SET state = 'printed', printed = ? WHERE id = ?", (time.time(), job_id))
            self._write("DELETE FROM jobs WHERE state = 'printed' AND seq NOT IN "
                        "(SELECT seq FROM jobs WHERE state = 'printed' ORDER BY seq DESC LIMIT ?)",
                        (self.keep_printed,))

    def mark_failed(self, job_id: str) -> None:
        """Set a job aside that cannot be printed; it no longer counts towards the limit."""
        with self._lock:
            self._write("UPDATE jobs SET state = 'failed' WHERE id = ?", (job_id,))

    def get(self, job_id: str) -> Job | None:
        """The job with ``job_id``, or ``None`` if unknown or pruned."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def last_printed(self) -> Job | None:
        """The most recently printed job still kept."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM jobs WHERE state = 'printed' ORDER BY seq DESC LIMIT 1").fetchone()
        return _job(row) if row else None

    def pending_count(self) -> int:
        """Jobs not yet printed."""
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM jobs WHERE {WAITING}").fetchone()[0])

    def jobs(self) -> list[Job]:
        """All kept jobs in queue order."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM jobs ORDER BY seq").fetchall()
        return [_job(r) for r in rows]


def _job(row: tuple[Any, ...]) -> Job:
    seq, job_id, kind, fields, state, attempts, created, printed = row
    return Job(seq, job_id, kind, json.loads(fields), JobState(state), attempts, created, printed)
