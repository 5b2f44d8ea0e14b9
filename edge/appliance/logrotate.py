"""The ``rotate_logs`` remote command: rotate the journal and drop old entries, on request.

The box logs to journald. Rotating and vacuuming the journal needs root, and the uplink that receives the
command runs as the unprivileged ``ehc`` user in a sandbox, so the work is split:

1. the uplink writes a request file (``rotate-logs.request`` in the state folder: a request id and how many
   days of journal to keep) and waits a few seconds for the answer;
2. ``ehc-logrotate.path`` sees the file and starts ``ehc-logrotate.service`` (root, sandboxed, no network),
   which runs ``ehc-edge logs rotate --from-request``: it reads and checks the request, runs
   ``journalctl --rotate`` and ``journalctl --vacuum-time=…``, writes ``rotate-logs.result`` and removes
   the request;
3. the uplink answers with the result, or with ``pending`` when the rotation has not finished in time (the
   last result also shows in the ``diagnostics`` bundle).

A technician at the box runs the same rotation directly: ``sudo ehc-edge logs rotate [--keep-days N]``.

Registration (``edge/runtime.py``, ``build_uplink``)::

    uplink.command_handlers.update(command_handlers(cfg))
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge import config as edge_config
from edge.config import EdgeConfig
from foundation.files import write_atomic

logger = logging.getLogger(__name__)

REQUEST_FILE = "rotate-logs.request"
RESULT_FILE = "rotate-logs.result"
DEFAULT_KEEP_DAYS = 14
MAX_KEEP_DAYS = 365
MAX_REQUEST_BYTES = 1024
ANSWER_WAIT_S = 3.0
COMMAND_TIMEOUT_S = 60.0


class RotateRequestError(ValueError):
    """A rotation request file is missing, too large or malformed."""


@dataclass(frozen=True)
class RotateRequest:
    """What the uplink asks for: a request id and the days of journal to keep."""

    id: str
    keep_days: int


@dataclass(frozen=True)
class RotateResult:
    """What the root helper did. ``error`` is a short reason, null when both steps worked."""

    id: str
    ok: bool
    rotated: bool
    vacuumed: bool
    keep_days: int
    finished_at: float
    error: str | None = None


def parse_keep_days(value: Any) -> int:
    """Days of journal to keep: an integer from 1 to 365 (default 14)."""
    if value is None:
        return DEFAULT_KEEP_DAYS
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_KEEP_DAYS:
        raise RotateRequestError(f"keep_days must be an integer from 1 to {MAX_KEEP_DAYS}")
    return value


def write_request(state_dir: Path, keep_days: int) -> RotateRequest:
    """Ask the root helper for a rotation; returns the request (its id names the answer)."""
    request = RotateRequest(uuid.uuid4().hex, parse_keep_days(keep_days))
    write_atomic(state_dir / REQUEST_FILE, json.dumps(asdict(request)).encode(), mode=0o640)
    return request


def read_request(state_dir: Path) -> RotateRequest:
    """The pending request, checked; raises :class:`RotateRequestError` naming what is wrong."""
    path = state_dir / REQUEST_FILE
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_REQUEST_BYTES + 1)
    except FileNotFoundError:
        raise RotateRequestError("no rotation request") from None
    if len(data) > MAX_REQUEST_BYTES:
        raise RotateRequestError("rotation request too large")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise RotateRequestError("rotation request is not JSON") from None
    if not isinstance(raw, dict) or set(raw) != {"id", "keep_days"}:
        raise RotateRequestError("rotation request must hold exactly id and keep_days")
    rid = raw["id"]
    if not isinstance(rid, str) or not 1 <= len(rid) <= 64 or not rid.isalnum():
        raise RotateRequestError("rotation request id must be 1-64 letters or digits")
    return RotateRequest(rid, parse_keep_days(raw["keep_days"]))


def read_result(state_dir: Path) -> dict[str, Any] | None:
    """The last rotation result, or None when there is none (or it cannot be read)."""
    try:
        raw = json.loads((state_dir / RESULT_FILE).read_bytes()[:MAX_REQUEST_BYTES])
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def _journalctl(journalctl: str, *args: str) -> str | None:
    """Run journalctl; None when it worked, else a short reason (never the journal's contents)."""
    try:
        proc = subprocess.run([journalctl, *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        return "journalctl_missing"
    except subprocess.TimeoutExpired:
        return "journalctl_timeout"
    if proc.returncode != 0:
        logger.warning("journalctl %s exited %s: %s", args[0], proc.returncode, proc.stderr.strip()[:200])
        return f"journalctl_exit_{proc.returncode}"
    return None


def rotate(keep_days: int, *, journalctl: str = "journalctl", request_id: str = "local") -> RotateResult:
    """Rotate the journal files, then delete archived entries older than ``keep_days`` (needs root)."""
    error = _journalctl(journalctl, "--rotate")
    rotated = error is None
    vacuum_error = _journalctl(journalctl, f"--vacuum-time={keep_days}d")
    result = RotateResult(request_id, rotated and vacuum_error is None, rotated, vacuum_error is None, keep_days,
                          time.time(), error or vacuum_error)
    logger.info("journal rotation %s: rotated=%s vacuumed=%s", request_id, result.rotated, result.vacuumed)
    return result


def serve_request(state_dir: Path, *, journalctl: str = "journalctl") -> RotateResult:
    """Do the pending request and write its result (readable by the uplink); the request is removed."""
    try:
        request = read_request(state_dir)
    except RotateRequestError as exc:
        result = RotateResult("invalid", False, False, False, 0, time.time(), str(exc))
    else:
        result = rotate(request.keep_days, journalctl=journalctl, request_id=request.id)
    write_atomic(state_dir / RESULT_FILE, json.dumps(asdict(result)).encode(), mode=0o644)
    (state_dir / REQUEST_FILE).unlink(missing_ok=True)
    return result


def request_rotation(state_dir: Path, args: dict[str, Any], *, wait_s: float = ANSWER_WAIT_S) -> dict[str, Any]:
    """The command's answer: the result when the root helper finishes within ``wait_s``, else pending."""
    try:
        request = write_request(state_dir, args.get("keep_days"))
    except RotateRequestError as exc:
        return {"ok": False, "error": "bad_arguments", "detail": str(exc)}
    deadline = time.monotonic() + wait_s
    while True:
        result = read_result(state_dir)
        if result is not None and result.get("id") == request.id:
            return {**result, "request": request.id}
        if time.monotonic() >= deadline:
            return {"ok": True, "pending": True, "request": request.id, "keep_days": request.keep_days}
        time.sleep(0.05)


def command_handlers(cfg: EdgeConfig) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    """The ``rotate_logs`` handler for ``Uplink.command_handlers``."""
    state_dir = cfg.path(cfg.device.state_dir)
    return {"rotate_logs": lambda args: request_rotation(state_dir, args)}


def logs_main(argv: list[str]) -> int:
    """``ehc-edge logs rotate``: rotate the journal now, or serve the uplink's pending request."""
    p = argparse.ArgumentParser(prog="ehc-edge logs", description="journal maintenance on the box (as root)")
    sub = p.add_subparsers(dest="action", required=True)
    r = sub.add_parser("rotate", help="rotate the journal and delete entries older than --keep-days")
    r.add_argument("--keep-days", type=int, default=DEFAULT_KEEP_DAYS)
    r.add_argument("--from-request", action="store_true",
                   help="serve the uplink's pending rotate_logs request (used by ehc-logrotate.service)")
    r.add_argument("--config", default=str(edge_config.DEFAULT_PATH))
    r.add_argument("--journalctl", default=os.environ.get("EHC_JOURNALCTL", "journalctl"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.from_request:
        cfg = edge_config.load(args.config)
        result = serve_request(cfg.path(cfg.device.state_dir), journalctl=args.journalctl)
    else:
        try:
            keep = parse_keep_days(args.keep_days)
        except RotateRequestError as exc:
            p.error(str(exc))
        result = rotate(keep, journalctl=args.journalctl)
    print(json.dumps(asdict(result)))
    return 0 if result.ok else 1
