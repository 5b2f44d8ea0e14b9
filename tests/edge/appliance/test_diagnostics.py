"""The ``diagnostics`` remote command: a signed answer with versions, redacted config and counters, no
personal data."""

from __future__ import annotations

import json

from central.site import add_device
from edge import config as edge_config
from edge.appliance.diagnostics import REDACTED, bundle, command_handlers, redact
from edge.boxfiles import station_status_path
from edge.runtime import build_uplink
from edge.station_status import write_status
from mqtt import commands, envelope


class RecordingClient:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        self.published.append((topic, payload))


def test_redact_hides_key_like_values_only():
    doc = {"device": {"id": "box-1", "key": "/var/lib/ehc-edge/device.key"},
           "identity": {"pseudonym_key": "pseudonym.key", "send_id_number": False},
           "ingest": {"cert": "credential:ingest.crt"}, "list": [{"token": "abc"}]}
    assert redact(doc) == {"device": {"id": "box-1", "key": REDACTED},
                           "identity": {"pseudonym_key": REDACTED, "send_id_number": False},
                           "ingest": {"cert": REDACTED}, "list": [{"token": REDACTED}]}


def test_uplink_answers_diagnostics_signed_without_personal_data(site, store, tmp_path):
    cfg = edge_config.load(add_device(site, store, "box-0042", "clinic-7", tmp_path / "box"))
    write_status(station_status_path(cfg), {"flow": "checkin", "camera": "ok", "scans": 3, "frames": 90})
    uplink = build_uplink(cfg, ["qr"])
    uplink.outbox.start_boot()
    uplink.outbox.enqueue("scan", {"outcome": "green", "card_ref": "3f9a1c0e5b7d2a64", "name": "张三"})
    uplink.command_handlers.update(command_handlers(cfg, uplink))
    uplink.client = RecordingClient()
    topic = commands.response_topic("clinic-7", "box-0042", "diagnostics")
    uplink.commands.put(commands.Command("diagnostics", {}, topic, b"corr-1"))
    try:
        assert uplink._handle_commands() == 1
        boot = uplink.outbox.boot
    finally:
        uplink.outbox.close()
    [(sent_topic, payload)] = uplink.client.published
    assert sent_topic == topic
    msg = envelope.verify(payload, topic, uplink.ident.key.public_key())
    body = msg.body
    assert body["versions"]["software"] and body["versions"]["python"]
    assert body["config"]["device"]["id"] == "box-0042"
    assert body["config"]["device"]["key"] == REDACTED
    assert body["config"]["identity"]["pseudonym_key"] == REDACTED
    assert body["outbox"]["depth"] == 1
    assert body["station"]["scans"] == 3
    assert body["trust_list"]["version"] is not None
    assert body["uplink"]["boot"] == boot and body["uplink"]["connected"] is False
    text = json.dumps(body, ensure_ascii=False)
    for personal in ("张三", "3f9a1c0e5b7d2a64", "BEGIN", "PRIVATE"):
        assert personal not in text


def test_bundle_without_uplink_is_json(site, store, tmp_path):
    cfg = edge_config.load(add_device(site, store, "box-0043", "clinic-7", tmp_path / "box"))
    doc = bundle(cfg)
    assert "uplink" not in doc and doc["outbox"] is None
    assert {c["name"] for c in doc["checks"]} >= {"certificate", "trust_list", "disk"}
    assert "last_errors" not in {c["name"] for c in doc["checks"]}
    json.dumps(doc)
