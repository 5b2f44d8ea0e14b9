"""Logging goes to the journal with upper-case structured fields under systemd, to stderr otherwise."""

from __future__ import annotations

import logging

import pytest

from foundation import logs


@pytest.fixture(autouse=True)
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_stderr_when_not_under_systemd(monkeypatch, capsys):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    logs.setup_logging("INFO")
    logging.getLogger("ehc.test").warning("rejected message on %s: %s", "ehc/v1/c/d/evt/scan", "bad_signature",
                                          extra={"EHC_REASON": "bad_signature"})
    err = capsys.readouterr().err
    assert "WARNING ehc.test: rejected message on ehc/v1/c/d/evt/scan: bad_signature" in err


def test_journal_fields_under_systemd(monkeypatch):
    from systemd import journal  # systemd-python is a runtime dependency on Linux

    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")
    logs.setup_logging("INFO", identifier="ehc-test")
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, journal.JournalHandler)
    sent: list[tuple[str, dict]] = []
    handler.send = lambda MESSAGE, **fields: sent.append((MESSAGE, fields))  # journal.send signature
    logging.getLogger("central.ingest").warning("rejected message on %s: %s", "t", "wrong_clinic",
                                                     extra={"EHC_REASON": "wrong_clinic", "EHC_DEVICE": "box-1"})
    message, fields = sent[0]
    assert message == "rejected message on t: wrong_clinic"
    assert fields["EHC_REASON"] == "wrong_clinic" and fields["EHC_DEVICE"] == "box-1"
    assert fields["SYSLOG_IDENTIFIER"] == "ehc-test" and fields["PRIORITY"] == "4"
