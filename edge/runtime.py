"""The composition root: wire the box's long-lived objects (uplink, verifier, lookup, station, its flow and
drivers) from its configuration. The parts live elsewhere (:mod:`edge.boxfiles` for identity, outbox and keys;
:mod:`edge.flows.factory` for the flow); this module only puts them together for ``ehc-edge``."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from drivers.camera import FrameSource
from edge.appliance import diagnostics, logrotate, printtest, reconfig
from edge.boxfiles import (
    STATUS_INTERVAL,
    load_central_key,
    load_identity,
    load_pseudonym_key,
    load_seal_key,
    open_outbox,
    relay_path,
    station_status_path,
)
from edge.config import EdgeConfig
from edge.credentials.verifier import TrustedVerifier
from edge.feedback import Feedback, NoFeedback, NoPrinter, TicketSink
from edge.flows import factory
from edge.flows.base import ButtonPress, FlowContext, IdPresented
from edge.flows.runner import Alert, FlowRunner
from edge.identity import from_id_card, from_mrz
from edge.lookup import LookupClient
from edge.rackscan import RackWorker
from edge.sources import decode_options, frame_source, rack_options
from edge.station import RACK_LABELS, Station
from edge.station_status import read_status
from edge.trustlist_store import TrustListFile
from edge.verify import FormVerifier, Verifier
from mqtt.outbox import DeviceIdentity, Outbox
from mqtt.uplink import Uplink, UplinkSettings

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _model_inventory() -> dict[str, str]:
    from models_tflite.loader import inventory

    return inventory()


def box_health(cfg: EdgeConfig, trust: TrustListFile) -> tuple[dict[str, Any], list[str]]:
    """What the box adds to the uplink's health report: the station's status, the trust list's age and the
    bundled models present (name → SHA-256 prefix)."""
    station, alerts = read_status(station_status_path(cfg), 3 * STATUS_INTERVAL)
    held = trust.current()
    age = trust.age()
    if held is None:
        alerts.append("no_trust_list")
    elif age is not None and age > cfg.trust.max_age:
        alerts.append("trust_list_stale")
    section: dict[str, Any] = {"trust_list": {"version": held.version if held else None,
                                              "age_s": round(age) if age is not None else None}}
    section["models"] = _model_inventory()
    if station is not None:
        section["station"] = station
    return section, alerts


def uplink_settings(cfg: EdgeConfig) -> UplinkSettings:
    """Uplink settings from ``[mqtt]``."""
    m = cfg.mqtt
    trust = TrustListFile(cfg.trust_path, load_central_key(cfg))
    return UplinkSettings(host=m.host, port=m.port, ca=cfg.path(m.ca), cert=cfg.path(cfg.device.cert),
                          key=cfg.path(cfg.device.key), keepalive=m.keepalive, max_inflight=m.max_inflight,
                          receipt_timeout=m.receipt_timeout, reconnect_min=m.reconnect_min,
                          reconnect_max=m.reconnect_max, health_interval=m.health_interval,
                          session_expiry=m.session_expiry, central_key=load_central_key(cfg),
                          health_extra=lambda: box_health(cfg, trust), trust_list=trust.offer,
                          relay=relay_path(cfg))


def build_uplink(cfg: EdgeConfig, capabilities: list[str] | None = None, config_path: Path | None = None) -> Uplink:
    """Identity, outbox and uplink for the uplink daemon, with the remote commands (``diagnostics``,
    ``print_test``, ``rotate_logs``, and ``reload_config`` when the config file's path is known)."""
    identity = load_identity(cfg)
    uplink = Uplink(uplink_settings(cfg), open_outbox(cfg, identity, durable=False), identity, capabilities)
    uplink.command_handlers.update(diagnostics.command_handlers(cfg, uplink))
    uplink.command_handlers.update(printtest.command_handlers(cfg))
    uplink.command_handlers.update(logrotate.command_handlers(cfg))
    if config_path is not None:
        uplink.command_handlers.update(reconfig.command_handlers(Path(config_path), audit=uplink.outbox.audit))
    return uplink


def build_verifier(cfg: EdgeConfig, lookup: Any = None) -> Verifier:
    """The trust-list verifier on a provisioned box (with the online card lookup when given); judging by
    form only on a box without a central key. Card references are keyed with the pseudonym key when the
    box has one."""
    ref_key = load_pseudonym_key(cfg)
    if not cfg.provisioning.central_key:
        logger.warning("no provisioning.central_key: credentials are judged by their form only")
        return FormVerifier(ref_key)
    return TrustedVerifier(TrustListFile(cfg.trust_path, load_central_key(cfg)), max_age=cfg.trust.max_age,
                           skew=cfg.trust.clock_skew, lookup=lookup, ref_key=ref_key)


def build_lookup(cfg: EdgeConfig, identity: DeviceIdentity) -> Any:
    """The started online card-lookup client, or None on a box without a central key or with lookups off."""
    if not (cfg.provisioning.central_key and cfg.station.online_lookup):
        return None
    return LookupClient(relay_path(cfg), identity, load_central_key(cfg), timeout=cfg.station.lookup_timeout,
                        seal_key=load_seal_key(cfg)).start()


def identity_documents(cfg: EdgeConfig, runner: FlowRunner, tap: Any) -> Any:
    """The identity desk's frame consumers: the MRZ reader (with the page for the portrait), then the face tap."""
    from edge.face.tap import FrameTee

    parts: list[Any] = []
    if cfg.mrz is not None:
        from edge.documents.mrz_ocr import MrzReader
        from edge.documents.worker import DocumentWorker

        parts.append(DocumentWorker(MrzReader(cfg.mrz), lambda zone, page: runner.submit(
            IdPresented(from_mrz(zone), page=page)), every=cfg.station.document_every, with_page=True).start())
    return FrameTee([*parts, tap])


@dataclass
class StationParts:
    """A station, the flow runner it feeds, and the drivers to close when it stops."""

    station: Station
    runner: FlowRunner
    printer: Any = None
    lights: Any = None
    online: Any = None
    documents: Any = None
    tap: Any = None  # the identity desk's camera tap (edge.face.tap.FrameTap)
    idcard_stop: threading.Event = field(default_factory=threading.Event)
    idcard_thread: threading.Thread | None = None

    def start_idcard(self, port: str, poll_interval: float = 0.1) -> None:
        """Watch the ID card reader in its own thread: each card presented becomes an ``IdPresented`` event."""
        from drivers.idcard.reader import IdCardReader

        def watch() -> None:
            reader = IdCardReader(port)
            try:
                reader.watch(lambda card: self.runner.submit(IdPresented(from_id_card(card))), self.idcard_stop,
                             poll_interval=poll_interval)
            finally:
                reader.close()

        self.idcard_thread = threading.Thread(target=watch, name="idcard", daemon=True)
        self.idcard_thread.start()

    def close(self) -> None:
        """Stop the card reader and the flow thread, then close the printer (it finishes its queue later)
        and the lights."""
        self.idcard_stop.set()
        if self.idcard_thread is not None:
            self.idcard_thread.join(5)
        if self.documents is not None:
            self.documents.stop()
        self.runner.stop()
        if self.online is not None:
            self.online.stop()
        for part in (self.printer, self.lights):
            if part is not None:
                try:
                    part.close()
                except Exception:
                    logger.exception("closing %s failed", type(part).__name__)


_PRINTER_ALERTS = {"ready": "ok", "paper_low": "warning", "fault": "error"}


def build_station(cfg: EdgeConfig, outbox: Outbox, *, feedback: Feedback | None = None,
                  tickets: TicketSink | None = None, source: FrameSource | None = None) -> StationParts:
    """The configured flow in its runner, the station feeding it, and the configured printer and lights.

    The printer's state changes become ``alert`` results and signals (``printer`` part); the operator
    button closes a tube (mass testing), and held reads the rack under the camera (``[masstest]``).
    """
    printer = lights = None
    if tickets is None and cfg.printer.connection != "none":
        from drivers.printer import TicketPrinter

        printer = tickets = TicketPrinter(cfg.printer, cfg.path(cfg.device.state_dir))
    if feedback is None and cfg.gpio is not None:
        from edge.gpio_feedback import GpioFeedback

        lights = feedback = GpioFeedback(cfg.gpio)
    key = load_pseudonym_key(cfg)
    online = build_lookup(cfg, outbox.identity) if outbox.identity is not None else None
    ctx = FlowContext(outbox, feedback or NoFeedback(), tickets or NoPrinter(), verifier=build_verifier(cfg, online),
                      clinic=cfg.device.clinic, pseudonym_key=key, send_id_number=cfg.identity.send_id_number)
    tap = None
    if cfg.station.flow == "identity":
        from edge.face.tap import FrameTap

        tap = FrameTap()
    flow = factory.build_flow(cfg, ctx, records=online, frames=tap.frames if tap is not None else None)
    runner = FlowRunner(flow, ctx, max_pending=cfg.station.max_pending)
    if printer is not None:
        seen: list[str] = []

        def printer_state(state: Any) -> None:
            first, seen[:] = not seen, [state.value]
            if first and state.value == "ready":
                return  # a printer that starts fine is no news
            fault = getattr(printer, "fault", None)
            runner.submit(Alert("printer", _PRINTER_ALERTS[state.value],
                                None if state.value == "ready" else str(getattr(fault, "value", state.value))))
        printer.on_state = printer_state
        printer.start()
    documents = None
    if cfg.station.flow == "report":
        from edge.reports.reader import ReportReader
        from edge.reports.worker import ReportWorker

        tessdata = cfg.station.report_tessdata
        documents = ReportWorker(lambda: ReportReader(tessdata), runner.submit).start()
    racks = cfg.station.flow == "masstest" and cfg.masstest.rack_on_hold
    if racks:
        layout, rack_decode = rack_options(cfg.masstest)
        documents = RackWorker(layout, runner.submit, rack_decode).start()
    if lights is not None:
        lights.on_press(documents.request if cfg.station.flow == "report" else
                        lambda: runner.submit(ButtonPress("close")))
        if racks:  # the button held (the press before it closes the open tube): read the rack under the camera
            lights.on_hold(documents.request)
    if cfg.mrz is not None and cfg.station.flow == "checkin":
        from edge.documents.mrz_ocr import MrzReader
        from edge.documents.worker import DocumentWorker

        documents = DocumentWorker(MrzReader(cfg.mrz), lambda zone: runner.submit(IdPresented(from_mrz(zone))),
                                   every=cfg.station.document_every).start()
    if tap is not None:
        documents = identity_documents(cfg, runner, tap)
    station = Station(source or frame_source(cfg.station), runner, dedupe_window=cfg.station.dedupe_window,
                      decode_options=decode_options(cfg.station), documents=documents,
                      rack_labels=RACK_LABELS if racks else None)
    parts = StationParts(station, runner, printer, lights, online, documents=documents, tap=tap)
    if cfg.idcard.port:
        parts.start_idcard(cfg.idcard.port, cfg.idcard.poll_interval)
    return parts
