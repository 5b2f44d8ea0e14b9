"""The store's plumbing: one connection, SQL written once for SQLite and PostgreSQL, transactions.

:class:`SqlBase` is the public API every record module of :mod:`central.store` (and :mod:`central.audit_check`,
the dashboard, the tests) writes its SQL against:

* :meth:`~SqlBase.execute`, :meth:`~SqlBase.executemany`, :meth:`~SqlBase.query`, :meth:`~SqlBase.query_one`
  take SQL with ``?`` placeholders (rewritten to ``%s`` for PostgreSQL);
* :meth:`~SqlBase.transaction` (a context manager) or :meth:`~SqlBase.begin` / :meth:`~SqlBase.commit` /
  :meth:`~SqlBase.rollback` group writes; :meth:`~SqlBase.end_read` closes the implicit transaction a read opens
  on PostgreSQL (a no-op on SQLite);
* :attr:`~SqlBase.lock_rows` is the row-lock clause of a read-modify-write, :meth:`~SqlBase.blob` wraps bytes
  for a binary column.

:class:`SqliteBackend` and :class:`PostgresBackend` open the connection, create the tables
(:mod:`central.store.schema`) and supply what differs between the two.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from central.store.schema import ADDED_COLUMNS, statements
from foundation.privatedb import private_database

logger = logging.getLogger(__name__)

# Sums over boots and sequence numbers a box chose: as floating point, so that no set of values (each below 2^53,
# but as many as a box likes) overflows a 64-bit integer in SQLite or PostgreSQL. Read back with safe_count.
SAFE_SUM = "COALESCE(SUM(CAST({} AS DOUBLE PRECISION)), 0)"


def safe_count(value: Any) -> int:
    """An integer from a :data:`SAFE_SUM` (exact below 2^53)."""
    return int(value or 0)


class StoreUnavailable(RuntimeError):
    """The database cannot be reached or written; the caller keeps the batch and retries."""


def unreachable(exc: BaseException) -> bool:
    """Whether a database error means the database is down, locked or unreachable (retry the same work later),
    rather than that the data was refused (which retrying will not change)."""
    if isinstance(exc, (StoreUnavailable, sqlite3.OperationalError)):
        return True
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc):  # the connection was closed under us
        return True
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


class SqlBase:
    """Shared SQL plumbing for both back ends; a back end provides the connection and parameter style."""

    param = "?"
    lock_rows = ""  # row-lock clause for read-modify-write (PostgreSQL: FOR UPDATE)

    def __init__(self) -> None:
        self.conn: Any = None

    # -- statements ----------------------------------------------------------------------------------
    def sql(self, text: str) -> str:
        """``text`` (with ``?`` placeholders) in the back end's parameter style."""
        return text if self.param == "?" else text.replace("?", self.param)

    def execute(self, sql: str, params: tuple | list = ()) -> Any:
        """Run one statement (``?`` placeholders); returns the cursor (``fetchone``, ``fetchall``, ``rowcount``)."""
        return self.conn.execute(self.sql(sql), params)

    def executemany(self, sql: str, rows: list[tuple]) -> int:
        """Run ``sql`` for every row; returns the number of rows changed."""
        raise NotImplementedError

    def query(self, sql: str, params: tuple | list = ()) -> list[Any]:
        """Every row a query returns (call :meth:`end_read` after reads outside a transaction)."""
        return self.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple | list = ()) -> Any:
        """The first row a query returns, or None (call :meth:`end_read` after reads outside a transaction)."""
        return self.execute(sql, params).fetchone()

    def blob(self, data: bytes) -> Any:
        """``data`` as a parameter for a binary column."""
        return data

    # -- transactions --------------------------------------------------------------------------------
    def begin(self) -> None:
        """Start a write transaction (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL starts one implicitly)."""
        raise NotImplementedError

    def commit(self) -> None:
        """Commit the current transaction."""
        self.conn.commit()

    def rollback(self) -> None:
        """Roll back the current transaction."""
        self.conn.rollback()

    def end_read(self) -> None:
        """Close an implicit read transaction (PostgreSQL); no-op for SQLite."""

    @contextmanager
    def transaction(self) -> Iterator[SqlBase]:
        """``with store.transaction():`` begin, and commit when the block ends, or roll back and re-raise when it
        raises. Not nested: one transaction at a time per store."""
        self.begin()
        try:
            yield self
            self.commit()
        except Exception:
            self.rollback()
            raise

    # -- connection ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def reopen(self) -> None:
        """Reconnect after a failure (SQLite needs nothing: the next statement retries the file)."""


class SqliteBackend(SqlBase):
    """Embedded default: one SQLite file in WAL mode."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        private_database(self.path)
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        for stmt in statements("BLOB", "REAL", "INTEGER PRIMARY KEY AUTOINCREMENT"):
            self.conn.execute(stmt)
        for table, column, kind in ADDED_COLUMNS:
            if column not in {r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")}:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind.format(real='REAL')}")

    def begin(self) -> None:
        """Start a write transaction, taking SQLite's write lock now (``BEGIN IMMEDIATE``)."""
        self.conn.execute("BEGIN IMMEDIATE")

    def executemany(self, sql: str, rows: list[tuple]) -> int:
        """Run ``sql`` for every row; returns the number of rows changed."""
        before = self.conn.total_changes
        self.conn.executemany(sql, rows)
        return self.conn.total_changes - before

    def commit(self) -> None:
        """Commit the current transaction."""
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back the current transaction, if one is open."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


class PostgresBackend(SqlBase):
    """PostgreSQL back end through psycopg 3."""

    param = "%s"
    lock_rows = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        super().__init__()
        import psycopg

        self.url = url
        try:
            self.conn = psycopg.connect(url, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
        with self.conn.transaction():
            for stmt in statements("BYTEA", "DOUBLE PRECISION", "BIGSERIAL PRIMARY KEY"):
                self.conn.execute(stmt)
            for table, column, kind in ADDED_COLUMNS:
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} "
                                  f"{kind.format(real='DOUBLE PRECISION')}")

    def begin(self) -> None:
        """psycopg opens a transaction implicitly on the first statement."""

    def executemany(self, sql: str, rows: list[tuple]) -> int:
        """Run ``sql`` for every row, pipelined (one round trip for the batch); returns the rows changed."""
        with self.conn.cursor() as cur:
            cur.executemany(self.sql(sql), rows)  # pipelined: one round trip for the batch
            return cur.rowcount

    def end_read(self) -> None:
        """Close the implicit read transaction."""
        self.conn.rollback()

    def reopen(self) -> None:
        """Replace a broken connection (server restarted, network cut) with a new one."""
        import psycopg

        with contextlib.suppress(Exception):  # already broken
            self.conn.close()
        try:
            self.conn = psycopg.connect(self.url, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc
