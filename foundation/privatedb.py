"""SQLite database files readable by their owner only.

The box's outbox and print queue, and the central database (results, opened personal fields, the dashboard's
password hashes), are created mode 0600 before SQLite opens them; SQLite gives the ``-wal``, ``-shm`` and
``-journal`` files the permissions of the database file, so they follow. An existing database readable by
others is narrowed when it is opened (and said so in the log).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def private_database(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists; narrow it (and its -wal / -shm) to 0600 if it does."""
    path = Path(path)
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        return
    except FileExistsError:
        pass
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)
                logger.warning("%s was readable by other users; now 0600", file.name)
        except FileNotFoundError:
            continue
        except PermissionError:
            logger.error("%s is readable by other users and is not ours to change: chmod 600 it", file.name)
