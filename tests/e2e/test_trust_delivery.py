"""Trust lists from the central service to the box: enrollment copy, retained MQTT update, health report."""

from __future__ import annotations

import pytest

from central import trustlist_issuer
from central.ingest import Ingest
from central.site import add_device
from central.store import open_store
from edge import config as edge_config
from edge.runtime import build_uplink
from edge.trustlist_store import TrustListFile
from foundation import keyfiles
from mqtt import topics
from mqtt.trustlist import card_hash, open_signed
from tests.support.mqtt_helpers import wait_until


@pytest.fixture
def running(site, store, broker):
    ingest = Ingest(site.config, open_store(site.config.database_url)).start()
    assert ingest.connected.wait(10)
    yield ingest
    ingest.stop()


def test_site_signs_a_first_list_with_its_own_ehc1_issuer(site) -> None:
    central = keyfiles.load_private_key(site.root / "pki" / "central-sign.key").public_key()
    first = open_signed(trustlist_issuer.signed_bytes(site.config), central)  # type: ignore[arg-type]
    assert first.version == 1 and [e["iss"] for e in first.ehc1] == ["EHC-SITE"]


def test_updates_reach_a_running_box_and_rollbacks_do_not(site, store, running, tmp_path) -> None:
    cfg = edge_config.load(add_device(site, store, "box-0001", "clinic-a", tmp_path / "box"))
    held = TrustListFile(cfg.trust_path, keyfiles.load_private_key(site.root / "pki" / "central-sign.key").public_key())
    assert held.current().version == 1  # type: ignore[union-attr]
    first_signed = trustlist_issuer.signed_bytes(site.config)
    up = build_uplink(cfg).start()
    try:
        wait_until(lambda: up.connected.is_set(), 10, "uplink connected")
        body = up.health_body()
        assert body["trust_list"]["version"] == 1 and "no_trust_list" not in body["alerts"]

        # the centre revokes a card: a new version, published retained by the running ingest
        newer = trustlist_issuer.update(site.config, trustlist_issuer.Changes(revoke_cards=["ab" * 16]))
        running.client.publish(topics.TRUST_LIST, trustlist_issuer.signed_bytes(site.config), qos=1, retain=True)
        wait_until(lambda: held.current().version == newer.version, 10, "trust list v2 on the box")  # type: ignore[union-attr]
        assert card_hash("ab" * 16) in held.current().revoked_cards  # type: ignore[union-attr]

        # a replayed old list (a broker or attacker re-publishing v1, validly signed) is refused
        running.client.publish(topics.TRUST_LIST, first_signed, qos=1, retain=True)
        assert not held.offer(first_signed)  # type: ignore[arg-type]
        assert held.current().version == newer.version  # type: ignore[union-attr]
    finally:
        up.stop()


def test_stale_or_missing_list_is_an_alert(site, store, tmp_path) -> None:
    cfg = edge_config.load(add_device(site, store, "box-0002", "clinic-a", tmp_path / "box"))
    from edge.runtime import box_health

    central = keyfiles.load_private_key(site.root / "pki" / "central-sign.key").public_key()
    held = TrustListFile(cfg.trust_path, central)
    section, alerts = box_health(cfg, held)
    assert section["trust_list"]["version"] == 1 and alerts == []
    from models_tflite.loader import manifest, model_path, sha256_file

    face = section["models"]["face_detection_short"]  # the model versions the fleet dashboard shows
    assert face == manifest()["face_detection_short"].sha256[:12] == sha256_file(model_path("face_detection_short"))[:12]
    stale = cfg.model_copy(update={"trust": cfg.trust.model_copy(update={"max_age": 0.001})})
    assert "trust_list_stale" in box_health(stale, held)[1]
    cfg.trust_path.unlink()
    assert "no_trust_list" in box_health(cfg, held)[1]
