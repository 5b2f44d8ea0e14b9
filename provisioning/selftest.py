"""``ehc-provision selftest``: check each part of a box and say what to fix.

Parts without a driver in this version (ID-card reader, printer, LEDs/buzzer) are reported as not checked,
not as passed.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from edge.config import EdgeConfig

logger = logging.getLogger(__name__)

PASS, FAIL, WARN, SKIP = "pass", "FAIL", "warn", "not checked"


@dataclass(frozen=True)
class Check:
    """One part's verdict, with the fix when it failed."""

    part: str
    status: str
    detail: str
    fix: str = ""


def _identity(cfg: EdgeConfig) -> Check:
    from edge.runtime import load_identity

    try:
        load_identity(cfg)
    except (OSError, ValueError) as exc:
        return Check("device key", FAIL, str(exc), "re-enroll the box (ehc-provision wipe --force, then enroll)")
    return Check("device key", PASS, f"P-256 key matches the certificate of {cfg.device.id}")


def _certificate(cfg: EdgeConfig) -> Check:
    from provisioning import ca
    from provisioning.box import cert_status

    try:
        cert, issuer = ca.load_cert(cfg.path(cfg.device.cert)), ca.load_cert(cfg.path(cfg.mqtt.ca))
        cert.verify_directly_issued_by(issuer)
        st = cert_status(cfg)
    except Exception as exc:  # InvalidSignature, OSError, ValueError…: all mean "not this site's certificate"
        return Check("certificate", FAIL, f"not valid for this site's CA: {type(exc).__name__} {exc}",
                     "re-enroll the box")
    if st.days_left <= 0:
        return Check("certificate", FAIL, f"expired on {st.not_after}", "re-enroll the box")
    if st.renew_due:
        return Check("certificate", WARN, f"{st.days_left:.0f} days left", "run ehc-provision renew")
    return Check("certificate", PASS, f"valid until {st.not_after} ({st.days_left:.0f} days)")


def _clock(cfg: EdgeConfig) -> Check:
    from provisioning import ca

    now = dt.datetime.now(dt.timezone.utc)
    try:
        cert = ca.load_cert(cfg.path(cfg.device.cert))
    except (OSError, ValueError):
        cert = None
    if now.year < 2025 or (cert is not None and now < cert.not_valid_before_utc):
        return Check("clock", FAIL, f"system time {now.isoformat(timespec='seconds')} is in the past",
                     "enable time synchronisation (systemd-timesyncd) and check the network")
    return Check("clock", PASS, now.isoformat(timespec="seconds"))


def _outbox(cfg: EdgeConfig) -> Check:
    from edge.runtime import open_outbox

    try:
        box = open_outbox(cfg, None)
        box.check_writable()
        st = box.stats()
        box.close()
    except Exception as exc:  # sqlite3.Error, OSError: both mean "cannot store results"
        return Check("outbox", FAIL, f"{cfg.outbox_path}: {exc}", "check the state directory's owner and free space")
    return Check("outbox", PASS, f"writable; {st.depth} waiting, {st.fill:.1%} of the bound used")


def _camera(cfg: EdgeConfig, timeout: float = 5.0) -> Check:
    from edge.sources import frame_source

    try:
        source = frame_source(cfg.station)
        with source:
            deadline, frame = time.monotonic() + timeout, None
            while frame is None and time.monotonic() < deadline:
                frame = source.read()
    except Exception as exc:  # each camera driver raises its own errors
        return Check("camera", FAIL, f"{cfg.station.camera}: {exc}", "check the cable and station.camera in edge.toml")
    if frame is None:
        return Check("camera", FAIL, f"{cfg.station.camera}: no frame within {timeout:.0f} s",
                     "check the cable and station.camera in edge.toml")
    return Check("camera", PASS, f"{source.name}: {frame.shape[1]}x{frame.shape[0]} frames")


def _broker(cfg: EdgeConfig, timeout: float = 10.0) -> Check:
    from mqtt.client import connect_properties, new_client

    done, result = threading.Event(), []
    try:
        client = new_client(f"{cfg.device.id}-selftest", cfg.path(cfg.mqtt.ca), cfg.path(cfg.device.cert),
                            cfg.path(cfg.device.key))
        client.on_connect = lambda c, u, f, rc, p: (result.append(rc), done.set())
        client.connect(cfg.mqtt.host, cfg.mqtt.port, properties=connect_properties(0))
        client.loop_start()
        done.wait(timeout)
        client.disconnect()
        client.loop_stop()
    except (OSError, ValueError) as exc:
        return Check("broker", FAIL, f"{cfg.mqtt.host}:{cfg.mqtt.port}: {exc}",
                     "check the network, the broker address, and that the certificate is not revoked")
    if not result or result[0].is_failure:
        return Check("broker", FAIL, f"{cfg.mqtt.host}:{cfg.mqtt.port}: {result[0] if result else 'no answer'}",
                     "check the network, the broker address, and that the certificate is not revoked")
    return Check("broker", PASS, f"mutual TLS session with {cfg.mqtt.host}:{cfg.mqtt.port}")


CHECKS: list[Callable[[EdgeConfig], Check]] = [_identity, _certificate, _clock, _outbox, _camera, _broker]
NOT_YET = [("ID-card reader", "no SAM reader driver in this version"),
           ("printer", "no ESC/POS driver in this version"),
           ("LEDs and buzzer", "no GPIO driver in this version")]


def run(cfg: EdgeConfig) -> list[Check]:
    """Run every check; each is independent, so one failure does not hide another."""
    results = [check(cfg) for check in CHECKS]
    results += [Check(part, SKIP, why) for part, why in NOT_YET]
    return results


def passed(results: list[Check]) -> bool:
    """No check failed."""
    return all(r.status != FAIL for r in results)
