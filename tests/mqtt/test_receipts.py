"""Receipts and the central status are signed by the central service: nobody else can make a box forget
or resend its results."""

from __future__ import annotations

import logging
import time

import pytest

from central.site import add_device
from edge import config as edge_config
from edge.runtime import build_uplink
from foundation import keyfiles
from mqtt import receipts, topics
from mqtt.uplink import queued_results
from tests.support.mqtt_helpers import central_tap, wait_until


def test_receipt_round_trip_and_forgeries():
    central = keyfiles.generate_key()
    topic = topics.device_topic("c", "d", "ack")
    ids = [bytes(range(16)), bytes(16)]
    signed = receipts.sign_receipt(ids, topic, central)
    assert receipts.open_receipt(signed, topic, central.public_key()) == ids
    with pytest.raises(receipts.ReceiptInvalid, match="bad_signature"):  # another key
        receipts.open_receipt(receipts.sign_receipt(ids, topic, keyfiles.generate_key()), topic, central.public_key())
    with pytest.raises(receipts.ReceiptInvalid, match="bad_signature"):  # replayed onto another box's topic
        receipts.open_receipt(signed, topics.device_topic("c", "other", "ack"), central.public_key())
    with pytest.raises(receipts.ReceiptInvalid):  # a central status is not a receipt
        receipts.open_receipt(receipts.sign_status(bytes(8), central), topics.CENTRAL_STATUS, central.public_key())
    assert receipts.open_status(receipts.sign_status(bytes.fromhex("00ff00ff00ff00ff"), central),
                                central.public_key()) == "00ff00ff00ff00ff"


def test_box_ignores_an_unsigned_receipt_on_its_ack_topic(site, store, broker, tmp_path, caplog):
    """Someone able to publish on the box's ack topic (here: the ingest's own TLS identity, as a compromised
    broker could) but without the central signing key cannot make the box delete anything."""
    caplog.set_level(logging.WARNING, logger="mqtt.uplink")
    cfg = edge_config.load(add_device(site, store, "box-1", "clinic-a", tmp_path / "box"))
    up = build_uplink(cfg)
    up.outbox.start_boot()
    msg = up.outbox.enqueue("scan", {"outcome": "green"})
    up.start()  # no ingest runs: no genuine receipt will come
    try:
        assert up.connected.wait(10)
        intruder = central_tap(site, "not-the-ingest")
        ack = topics.device_topic("clinic-a", "box-1", "ack")
        forged = receipts.sign_receipt([msg.msg_id.bytes], ack, keyfiles.generate_key())
        assert intruder.publish(ack, forged) == 0
        intruder.close()
        wait_until(lambda: "ignoring receipt: not signed by the central service (bad_signature)" in caplog.text,
                   10, "the box to refuse the forged receipt")
        time.sleep(0.2)  # one more uplink pass
        assert queued_results(up.outbox.path) == 1  # still there: the receipt did not verify
    finally:
        up.stop()
