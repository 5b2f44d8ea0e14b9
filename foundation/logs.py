"""Logging setup: journald with structured fields under systemd, stderr otherwise.

Structured fields are passed as upper-case ``extra`` keys (``EHC_DEVICE``, ``EHC_REASON``, ``EHC_EVENT``)
and become journal fields (``journalctl EHC_REASON=bad_signature``); on stderr only the message shows.
Nothing here formats personal data; callers log identifiers, reasons and counts only.
"""

from __future__ import annotations

import logging
import os
import sys

logger = logging.getLogger(__name__)


def running_under_systemd() -> bool:
    """True when stderr is connected to the journal (systemd sets ``JOURNAL_STREAM``)."""
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


def setup_logging(level: str | int = "INFO", identifier: str = "ehc") -> None:
    """Configure the root logger once for a daemon or command."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler: logging.Handler | None = None
    if running_under_systemd():
        try:
            from systemd.journal import JournalHandler  # type: ignore[import-not-found]

            handler = JournalHandler(SYSLOG_IDENTIFIER=identifier)
        except ImportError:
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # paho logs every packet at DEBUG; keep it at WARNING unless asked.
    logging.getLogger("paho").setLevel(logging.WARNING)
