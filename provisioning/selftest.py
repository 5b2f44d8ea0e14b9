"""``ehc-provision selftest``: check each part of a box and say what to fix.

Parts the box is not configured with (no ``[idcard] port``, ``[printer] connection = "none"``, no
``[gpio]``) are reported as not checked, not as passed. When the printer passes, a self-test ticket is
printed with the results and a pairing QR (device id, clinic and the certificate's fingerprint).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from drivers.idcard.codec import IdCardError
from edge.boxfiles import cert_status, load_identity, open_outbox, pairing_text, relay_path
from edge.config import EdgeConfig
from edge.feedback import Signal
from foundation import keyfiles
from mqtt.client import connect_properties, new_client
from mqtt.relay import RelayClient

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

    try:
        load_identity(cfg)
    except (OSError, ValueError) as exc:
        return Check("device key", FAIL, str(exc), "re-enroll the box (ehc-provision wipe --force, then enroll)")
    return Check("device key", PASS, f"P-256 key matches the certificate of {cfg.device.id}")


def _certificate(cfg: EdgeConfig) -> Check:
    try:
        cert, issuer = keyfiles.load_cert(cfg.path(cfg.device.cert)), keyfiles.load_cert(cfg.path(cfg.mqtt.ca))
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
    now = dt.datetime.now(dt.UTC)
    try:
        cert = keyfiles.load_cert(cfg.path(cfg.device.cert))
    except (OSError, ValueError):
        cert = None
    if now.year < 2025 or (cert is not None and now < cert.not_valid_before_utc):
        return Check("clock", FAIL, f"system time {now.isoformat(timespec='seconds')} is in the past",
                     "enable time synchronisation (systemd-timesyncd) and check the network")
    return Check("clock", PASS, now.isoformat(timespec="seconds"))


def _outbox(cfg: EdgeConfig) -> Check:

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


def _through_uplink(cfg: EdgeConfig, timeout: float) -> Check | None:
    """The broker check of a box whose uplink runs: asked through the uplink's relay socket, since a session of
    our own would take over the uplink's (the broker allows one per certificate). None: no uplink running."""
    path = relay_path(cfg)
    if not path.exists():
        return None
    relay = RelayClient(path, lambda topic, payload: None).start()
    try:
        if not relay.attached.wait(2.0):
            return None
        if relay.connected.wait(timeout):
            return Check("broker", PASS, f"the running uplink's mutual TLS session with {cfg.mqtt.host}:{cfg.mqtt.port}")
    finally:
        relay.stop()
    return Check("broker", FAIL, f"the running uplink is not connected to {cfg.mqtt.host}:{cfg.mqtt.port}",
                 "check the network, the broker address, and that the certificate is not revoked")


def _broker(cfg: EdgeConfig, timeout: float = 10.0) -> Check:
    via_uplink = _through_uplink(cfg, timeout)
    if via_uplink is not None:
        return via_uplink
    done, result = threading.Event(), []
    try:
        client = new_client(f"{cfg.device.clinic}/{cfg.device.id}", cfg.path(cfg.mqtt.ca), cfg.path(cfg.device.cert),
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


def _idcard(cfg: EdgeConfig) -> Check:
    if not cfg.idcard.port:
        return Check("ID-card reader", SKIP, "no [idcard] port configured")
    from drivers.idcard.reader import IdCardReader

    try:
        with IdCardReader(cfg.idcard.port, timeout=2.0) as reader:
            sam = reader.sam_id()
    except (IdCardError, OSError) as exc:
        return Check("ID-card reader", FAIL, f"{cfg.idcard.port}: {type(exc).__name__}: {exc}",
                     "check the reader's USB cable and power, and [idcard] port (a /dev/serial/by-id/ path)")
    return Check("ID-card reader", PASS, f"SAM {sam} answers")


def _printer(cfg: EdgeConfig) -> Check:
    if cfg.printer.connection == "none":
        return Check("printer", SKIP, "no printer configured")
    from drivers.printer import open_device, read_status

    try:
        device = open_device(cfg.printer)
        try:
            status = read_status(device, cfg.printer.status_timeout)
        finally:
            device.close()
    except Exception as exc:  # python-escpos raises its own errors, pyserial / pyusb theirs
        return Check("printer", FAIL, f"{cfg.printer.connection}: {type(exc).__name__}: {exc}",
                     "check the printer's cable, power and [printer] connection")
    if status is None:
        return Check("printer", FAIL, f"{cfg.printer.connection}: no status answer",
                     "switch the printer on; check the cable and the baud rate")
    fault = status.fault
    if fault is not None:
        return Check("printer", FAIL, f"{cfg.printer.connection}: {fault.value}",
                     "load paper and close the cover" if fault.value in ("paper_out", "cover_open")
                     else "switch the printer off and on; see docs/hardware.md")
    if status.paper_near_end:
        return Check("printer", WARN, "online; the paper roll is nearly used up", "put in a new roll soon")
    return Check("printer", PASS, "online, paper loaded")


def _lights(cfg: EdgeConfig, step: float = 0.4) -> Check:
    if cfg.gpio is None:
        return Check("LEDs and buzzer", SKIP, "no [gpio] configured")
    from edge.gpio_feedback import GpioFeedback

    try:
        with GpioFeedback(cfg.gpio) as lights:
            for signal in (Signal.ACCEPTED, Signal.ATTENTION, Signal.REJECTED, Signal.READY):
                lights.show(signal)
                time.sleep(step)
    except Exception as exc:  # gpiozero raises BadPinFactory, GPIOPinInUse, PinInvalidPin …
        return Check("LEDs and buzzer", FAIL, f"{type(exc).__name__}: {exc}",
                     "check [gpio] pins and that the service user is in the gpio group")
    return Check("LEDs and buzzer", PASS, "cycled green, amber, red with beeps: confirm you saw and heard each")


CHECKS: list[Callable[[EdgeConfig], Check]] = [_identity, _certificate, _clock, _outbox, _camera, _broker, _idcard,
                                                _printer, _lights]


def run(cfg: EdgeConfig) -> list[Check]:
    """Run every check; each is independent, so one failure does not hide another."""
    return [check(cfg) for check in CHECKS]


def print_ticket(cfg: EdgeConfig, results: list[Check], timeout: float = 20.0) -> Check:
    """Print the self-test ticket (results and pairing QR); the check says whether it came out."""
    from drivers.printer import TicketPrinter

    try:
        with TicketPrinter(cfg.printer, cfg.path(cfg.device.state_dir)) as printer:
            printer.submit("selftest", {
                "device_id": cfg.device.id, "clinic": cfg.device.clinic, "pairing_qr": pairing_text(cfg),
                "checks": [{"part": r.part, "status": r.status} for r in results]})
            printed = printer.wait_idle(timeout)
    except Exception as exc:
        return Check("self-test ticket", FAIL, f"{type(exc).__name__}: {exc}", "see the printer check")
    if not printed:
        return Check("self-test ticket", FAIL, f"not printed within {timeout:.0f} s", "see the printer check")
    return Check("self-test ticket", PASS, "printed with the pairing QR")


def passed(results: list[Check]) -> bool:
    """No check failed."""
    return all(r.status != FAIL for r in results)
