"""``ehc-edge demo``: a simulated clinic station end to end on the embedded defaults.

A local Mosquitto with TLS and the ACL, the central ingest on SQLite, one box with a key made for it,
a simulated camera filming a queue of people holding up health-card QR codes, the station signing every
scan into its outbox, the uplink delivering, the central service verifying and storing. Then one result
signed with a key other than the box's is published on the box's own topic, and is refused.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

from central.broker import BrokerProcess, free_port, write_config
from central.ingest import Ingest
from central.site import add_device, init_central
from central.store import open_store
from edge import config as edge_config
from edge.boxfiles import load_identity, open_outbox
from edge.credentials.ehc1 import Card, issue
from edge.flows.base import FlowContext
from edge.flows.checkin import CheckinFlow
from edge.flows.runner import FlowRunner
from edge.payloads import PayloadKind, classify_payload
from edge.runtime import build_lookup, build_uplink, build_verifier
from edge.sources import simulated_queue
from edge.station import Station
from foundation import keyfiles
from mqtt import envelope, topics
from mqtt.client import connect_properties, new_client

logger = logging.getLogger(__name__)

DEVICE, CLINIC = "box-demo-01", "clinic-demo"
UNKNOWN_CARD = 4


def _say(text: str) -> None:
    print(text, flush=True)


def _send_forged(cfg: edge_config.EdgeConfig) -> None:
    """Publish one result signed with a key that is not the box's, over the box's own TLS identity (the broker
    gives it the box's client id whatever it asks for: one session per certificate)."""
    client = new_client(f"{DEVICE}-intruder", cfg.path(cfg.mqtt.ca), cfg.path(cfg.device.cert),
                        cfg.path(cfg.device.key))
    client.connect(cfg.mqtt.host, cfg.mqtt.port, properties=connect_properties(0))
    client.loop_start()
    topic = topics.event(CLINIC, DEVICE, "scan")
    forged = envelope.sign(envelope.Message(DEVICE, 1, 999_999, "scan", {"outcome": "green"}), topic,
                           keyfiles.generate_key())
    client.publish(topic, forged, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def run_demo(frames: int = 120, workdir: Path | None = None, keep: bool = False) -> int:
    """Run the whole chain once and print a summary; 0 when every recorded scan reached the store."""
    root = workdir or Path(tempfile.mkdtemp(prefix="ehc-demo-"))
    broker = ingest = uplink = None
    started = time.monotonic()
    # The forged message's rejection is part of the summary; keep the ingest's warning out of the way.
    ingest_log = logging.getLogger("central.ingest")
    ingest_level = ingest_log.level
    ingest_log.setLevel(logging.ERROR)
    try:
        _say(f"ehc demo in {root}")
        site = init_central(root / "central", free_port())
        store = open_store(site.config.database_url)
        log = root / "mosquitto.log"
        broker = BrokerProcess(write_config(site.config, log), site.config.broker.host, site.config.broker.port, log)
        broker.start()
        _say(f"  broker      mosquitto, TLS + client certificates + ACL on {site.config.broker.host}:"
             f"{site.config.broker.port}")
        ingest = Ingest(site.config, open_store(site.config.database_url)).start()
        if not ingest.connected.wait(15):
            raise RuntimeError("central ingest could not connect to the broker")
        _say(f"  central     ingest on SQLite {site.config.database_url}")
        cfg = edge_config.load(add_device(site, store, DEVICE, CLINIC, root / "box", {"receipt_timeout": 5.0}))
        _say(f"  box         {DEVICE} at {CLINIC}: P-256 key made on the box, certificate from the site CA")
        uplink = build_uplink(cfg, ["qr"]).start()
        station_outbox = open_outbox(cfg, load_identity(cfg))  # the station's own, fsyncing connection
        station_outbox.start_boot()

        people = max(1, frames // 4)
        issuer = keyfiles.load_private_key(site.root / "pki" / "ehc1-issuer.key")
        cards = {2: issue(Card("0a" * 16, "王小明", "2019-06-01", "M", "green", guardian="1b" * 16), issuer, "EHC-SITE",
                          ttl=300),
                 8: issue(Card("2c" * 16, "李四", "1990-02-03", "F", "yellow"), issuer, "EHC-SITE", ttl=300)}
        camera = simulated_queue(people, seed=7, odd_every=6, shown=cards, width=640, height=480)
        # The residents' cards are on the (local) card platform, except the 5th person's, which is unknown.
        for place, (text, _) in enumerate(camera.payloads):  # type: ignore[misc]
            if place != UNKNOWN_CARD and classify_payload(text).kind is PayloadKind.EHC_TOKEN:
                store.register_card(text.split(":")[0])
        online = build_lookup(cfg, station_outbox.identity)  # type: ignore[arg-type]
        online.connected.wait(10)
        ctx = FlowContext(station_outbox, verifier=build_verifier(cfg, online), clinic=CLINIC)
        stored: list[str] = []
        runner = FlowRunner(CheckinFlow(ctx), ctx, on_outcome=lambda _e, o, _ms: o.message_id and stored.append(
            o.message_id)).start()
        station = Station(camera, runner, dedupe_window=0.5)
        _say(f"  camera      simulated desk: {people} people hold up a QR code for 3 frames each "
             "(every 6th shows something that is not a health card; the 3rd and 9th a signed EHC1 card, "
             "verified offline with the site's trust list; tokens are looked up online, the 5th card is unknown)")
        stats = station.run(max_frames=frames)
        runner.wait_idle(30)
        runner.stop()
        online.stop()
        signals = runner.stats.signals
        _say(f"  station     {stats.frames} frames, {stats.decoded} codes read, {stats.scans} new codes, "
             f"{stats.duplicates_suppressed} re-reads suppressed")
        _say(f"  check-in    {len(stored)} results recorded; lights: accepted {signals['accepted']}, "
             f"attention {signals['attention']}, rejected {signals['rejected']}, "
             f"not recorded {signals['not_recorded']}")

        deadline = time.monotonic() + 30
        while (store.counts()["results"] < len(stored) or not uplink.drained()) and time.monotonic() < deadline:
            time.sleep(0.05)
        uplink.stop()  # the box is done; the intruder below would take over its session otherwise
        uplink = None
        _send_forged(cfg)
        while not store.counts()["rejections"] and time.monotonic() < deadline:
            time.sleep(0.05)

        counts = store.counts()
        rows = list(store.iter_results())
        outcomes = Counter(r["body"].get("outcome") for r in rows)
        _say("")
        _say("summary")
        _say(f"  scans recorded on the box     {len(stored)}")
        _say(f"  stored at central (verified)  {counts['results']}  "
             f"(green {outcomes.get('green', 0)}, yellow {outcomes.get('yellow', 0)}, red {outcomes.get('red', 0)})")
        _say(f"  still queued on the box       {station_outbox.stats().depth}")
        _say(f"  sequence gaps                 {counts['gaps']}")
        _say(f"  forged message refused        {counts['rejections']}")
        _say(f"  wall time                     {time.monotonic() - started:.1f} s")
        if rows:
            sample = {k: rows[0][k] for k in ("device_id", "boot_id", "seq", "kind", "body")}
            _say(f"  a stored result (no raw card token leaves the box): {json.dumps(sample, ensure_ascii=False)}")
        ok = counts["results"] == len(stored) == stats.scans > 0 and counts["rejections"].get("bad_signature") == 1
        _say("demo: OK" if ok else "demo: FAILED")
        return 0 if ok else 1
    finally:
        ingest_log.setLevel(ingest_level)
        if uplink:
            uplink.stop()
        if ingest:
            ingest.stop()
        if broker:
            broker.stop()
        if workdir is None and not keep:
            shutil.rmtree(root, ignore_errors=True)
