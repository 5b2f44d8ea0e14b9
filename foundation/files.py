"""Replacing a file so that a reader (or a power cut) sees the old or the new content, never a mix."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, and rename it over ``path``.

    The file gets exactly ``mode``, whatever the process umask (a 0077 umask must not hide a public file such
    as the CRL from Mosquitto, and a leftover temporary file must not keep a wider mode)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_secret(path: Path, data: bytes) -> None:
    """Atomically write a secret readable by its owner only (mode 0600)."""
    write_atomic(path, data, 0o600)
