"""A compromised box attacks the fleet through the real broker (TLS, ACL), the real ingest and the dashboard's watcher.

Each test performs one attack and checks that it is refused, and that the other boxes are still served: their
results stored once and receipted, the central sessions undisturbed.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import cbor2
import pytest
import uuid6
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from central.site import add_device
from central.store import open_store
from edge import config as edge_config
from edge.boxfiles import load_identity
from edge.runtime import build_uplink
from mqtt import envelope, topics
from tests.support.mqtt_helpers import RawClient, running_central, wait_until

BIN = Path(sys.executable).parent
CLINIC = "clinic-a"


@pytest.fixture
def central(tmp_path):
    with running_central(tmp_path) as running:
        yield running


def make_box(site, store, tmp_path, device_id: str, clinic: str = CLINIC):  # type: ignore[no-untyped-def]
    return edge_config.load(add_device(site, store, device_id, clinic, tmp_path / device_id,
                                       {"receipt_timeout": 2.0, "health_interval": 1.0}))


def raw(site, cfg, client_id: str = "whatever") -> RawClient:  # type: ignore[no-untyped-def]
    b = site.config.broker
    return RawClient(b.host, b.port, cfg.path(cfg.mqtt.ca), cfg.path(cfg.device.cert), cfg.path(cfg.device.key),
                     client_id).wait_connected()


def sign_raw(payload: bytes, topic: str, key) -> bytes:  # type: ignore[no-untyped-def]
    """A COSE_Sign1 over payload bytes made by hand: what a box can sign that ``envelope.sign`` never would."""
    protected = envelope._protected_header(b"evil")
    der = key.sign(envelope._sig_structure(protected, topic, payload), envelope._ECDSA)
    r, s = decode_dss_signature(der)
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, r.to_bytes(32, "big") + s.to_bytes(32, "big")]))


def message_map(device: str, kind: str, body: object, boot: int = 1, seq: int = 1, ts: int | None = None) -> dict:
    return {"v": 1, "dev": device, "boot": boot, "seq": seq, "id": uuid6.uuid7().bytes,
            "ts": ts if ts is not None else int(time.time() * 1000), "kind": kind, "body": body}


def shared_reference_payload(device: str, kind: str, levels: int, width: int) -> bytes:
    """A message whose body is a graph of lists referring to each other (CBOR tags 28/29): a few hundred bytes that a
    decoder expanding shared references turns into ``width ** levels`` nodes."""
    node: list = [0]
    for _ in range(levels):
        node = [node] * width
    return cbor2.dumps(message_map(device, kind, {"x": node}), value_sharing=True)


# -- finding 1: CBOR expansion ----------------------------------------------------------------------------

def test_a_shared_reference_bomb_is_refused_at_once_and_the_fleet_is_still_served(central, tmp_path) -> None:
    """A 300-byte signed message whose body expands to millions of nodes (and one that would be stored as
    megabytes of body_json) is refused as malformed by the ingest and ignored by the dashboard's watcher,
    including as a retained birth document; the ingest and the watcher keep serving the other boxes."""
    from central.dashboard.app import Dashboard

    site, store, ingest = central
    evil, good = make_box(site, store, tmp_path, "box-evil"), make_box(site, store, tmp_path, "box-good")
    key = load_identity(evil).key
    dash_store = open_store(site.config.database_url)
    dash = Dashboard(site.config, dash_store).start()
    attacker = raw(site, evil)
    try:
        assert dash.watcher is not None and dash.watcher.connected.wait(10)
        evt = topics.event(CLINIC, "box-evil", "scan")
        state = topics.device_topic(CLINIC, "box-evil", "state")
        bombs = [(evt, shared_reference_payload("box-evil", "scan", 6, 16)),    # 16^6 = 17 million nodes
                 (evt, shared_reference_payload("box-evil", "scan", 8, 8)),     # 8^8: deeper, narrower
                 (state, shared_reference_payload("box-evil", "state", 6, 16))]
        for topic, payload in bombs:
            assert len(payload) < 600
            signed = sign_raw(payload, topic, key)
            assert attacker.publish(topic, signed) == 0  # the broker cannot tell: the ingest must
        attacker.client.publish(state, sign_raw(bombs[2][1], state, key), qos=1, retain=True)  # for every restart
        wait_until(lambda: store.counts()["rejections"].get("malformed_payload", 0) >= 4, 20,
                   "the bombs refused as malformed")
        # The good box is served meanwhile, by the same worker, and the watcher takes its birth document.
        up = build_uplink(good, ["qr"])
        up.outbox.start_boot()
        sent = [up.outbox.enqueue("scan", {"n": i, "outcome": "green"}) for i in range(20)]
        up.start()
        try:
            wait_until(lambda: store.counts()["results"] == 20 and up.drained(), 30, "the good box's results")
            wait_until(lambda: "box-good" in dash.fleet._live, 10, "the watcher's update of the good box")
        finally:
            up.stop()
        assert ingest.alive() and dash.watcher.connected.is_set()
        assert {r["msg_id"] for r in store.iter_results()} == {str(m.msg_id) for m in sent}
        assert dash.fleet._live.get("box-evil") is None or dash.fleet._live["box-evil"].state is None
        longest = store.execute("SELECT max(length(body_json)) FROM results").fetchone()[0]
        assert longest < 1000
    finally:
        attacker.client.publish(topics.device_topic(CLINIC, "box-evil", "state"), b"", qos=1, retain=True)
        attacker.close()
        dash.stop()
        dash_store.close()


def test_a_processing_failure_is_kept_as_a_dead_letter_not_retried_forever(central, tmp_path, monkeypatch) -> None:
    """Whatever still makes a message fail (here: an injected fault for one result, as an unknown bug would) is
    taken out of its batch, kept whole with its reason and acknowledged; the batch's other results are stored
    and receipted, the message is not read again when the box resends it, and the worker keeps going."""
    from central import ingest as ingest_module

    site, store, ingest = central
    real = ingest_module.body_json
    seen: list[object] = []

    def faulty(body):  # type: ignore[no-untyped-def]
        if body.get("poison"):
            seen.append(body)
            raise RuntimeError("a bug this message finds")
        return real(body)

    monkeypatch.setattr(ingest_module, "body_json", faulty)
    box = make_box(site, store, tmp_path, "box-0001")
    up = build_uplink(box, ["qr"])
    up.outbox.start_boot()
    first = up.outbox.enqueue("scan", {"outcome": "green", "n": 1})
    poison = up.outbox.enqueue("scan", {"outcome": "green", "poison": True})
    last = up.outbox.enqueue("scan", {"outcome": "green", "n": 3})
    up.start()
    try:
        wait_until(lambda: store.counts().get("dead_letters") == 1 and store.counts()["results"] == 2, 20,
                   "the two good results stored and the bad one kept aside")
        assert len(seen) <= 2  # in its batch, then alone
        read = len(seen)
        # the box resends what was not receipted (after 2 s): counted again, never read again
        wait_until(lambda: store.dead_letters()[0]["deliveries"] >= 2, 20, "the resent dead letter")
        assert len(seen) == read
        later = up.outbox.enqueue("scan", {"outcome": "green", "n": 4})
        wait_until(lambda: store.counts()["results"] == 3, 20, "a later result")
        wait_until(lambda: up.outbox.stats().depth == 1, 20, "only the dead letter left on the box: nothing lost")
    finally:
        up.stop()
    assert {r["msg_id"] for r in store.iter_results()} == {str(m.msg_id) for m in (first, last, later)}
    (dead,) = store.dead_letters()
    assert dead["reason"] == "processing_error" and "RuntimeError" in dead["detail"]
    assert dead["topic"] == topics.event(CLINIC, "box-0001", "scan") and dead["device_id"] == "box-0001"
    payload = store.execute("SELECT payload FROM dead_letters").fetchone()[0]
    assert envelope.verify(bytes(payload), dead["topic"], load_identity(box).key.public_key()).msg_id == poison.msg_id
    assert store.counts()["rejections"]["dead_letter"] >= 2 and ingest.alive()


def test_a_message_that_hung_a_worker_is_set_aside_unread(central, tmp_path, monkeypatch) -> None:
    """The supervisor marks the message a stuck worker was checking; the next worker keeps it as a dead letter
    without reading it when the broker delivers it again."""
    import multiprocessing as mp

    from central import ingest as ingest_module
    from central.ingest import Ingest
    from central.service import Progress
    from central.store import dead_letter_key

    site, store, ingest = central
    progress = Progress(mp.get_context("spawn"))
    progress.mark("ab" * 32)
    assert progress.stuck(60.0) is None
    progress.since.value -= 61.0
    assert progress.stuck(60.0) == "ab" * 32
    progress.mark(None)
    assert progress.stuck(0.0) is None

    box = make_box(site, store, tmp_path, "box-0001")
    topic = topics.event(CLINIC, "box-0001", "scan")
    payload = envelope.sign(envelope.Message("box-0001", 1, 1, "scan", {"outcome": "green"}), topic,
                            load_identity(box).key)
    store.mark_dead_letter(dead_letter_key(topic, payload), "hung", "a worker spent more than 60 s checking it")
    ingest.stop()  # the killed worker's successor loads the marks when it starts
    opened: list[bytes] = []
    monkeypatch.setattr(ingest_module.envelope, "verify", lambda data, *a: opened.append(data))
    successor = Ingest(site.config, open_store(site.config.database_url), 0).start()  # resumes its session
    client = raw(site, box)
    try:
        assert successor.connected.wait(10)
        assert client.publish(topic, payload) == 0
        wait_until(lambda: store.dead_letters()[0]["deliveries"] == 1, 20, "the marked message set aside")
    finally:
        client.close()
        successor.stop()
    assert opened == [] and store.counts()["results"] == 0
    (dead,) = store.dead_letters()
    assert dead["reason"] == "hung" and dead["topic"] == topic


# -- finding 3: client ids ----------------------------------------------------------------------------------

def test_a_box_cannot_take_over_the_ingest_s_or_another_box_s_session(central, tmp_path) -> None:
    """The broker takes the client id from the certificate: a box asking for an ingest worker's, the dashboard's or
    another box's id gets its own, and nobody else is disconnected."""
    site, store, ingest = central
    evil, good = make_box(site, store, tmp_path, "box-evil"), make_box(site, store, tmp_path, "box-good")
    drops = {"ingest": 0, "good": 0}
    ingest.client.on_disconnect = lambda *a: drops.__setitem__("ingest", drops["ingest"] + 1)
    up = build_uplink(good, ["qr"])
    up.outbox.start_boot()
    up.start()
    original = up.client.on_disconnect
    up.client.on_disconnect = lambda *a: (drops.__setitem__("good", drops["good"] + 1), original(*a))
    try:
        assert up.connected.wait(10)
        for asked in ("ehc-ingest-0", "ehc-dashboard", "ehc-central", "clinic-a/box-good", "box-good"):
            intruder = raw(site, evil, asked)
            # as itself: it may publish only under its own clinic and device
            assert intruder.publish(topics.event(CLINIC, "box-good", "scan"), b"\xa0") == 135
            intruder.close()
        sent = [up.outbox.enqueue("scan", {"n": i, "outcome": "green"}) for i in range(10)]
        wait_until(lambda: store.counts()["results"] == 10 and up.drained(), 20, "the good box's results")
        assert drops == {"ingest": 0, "good": 0}
    finally:
        up.stop()
    assert {r["msg_id"] for r in store.iter_results()} == {str(m.msg_id) for m in sent}
    log = (tmp_path / "mosquitto.log").read_text()
    assert log.count("as clinic-a/box-evil ") == 5
    for asked in ("ehc-ingest-0 ", "ehc-dashboard ", "ehc-central "):
        assert f"as {asked}" not in log.replace("as ehc-ingest-0 (", "")  # only the real worker is ehc-ingest-0
    assert log.count("as ehc-ingest-0 (") == 1


# -- the ingest's shared group ----------------------------------------------------------------------------------

def test_a_box_cannot_join_the_ingest_s_shared_group_and_hold_back_deliveries(central, tmp_path) -> None:
    """Mosquitto grants any subscription and drops the messages it assigns to a group member that may not read
    them. The group's name is a secret of the site: a box subscribing to the well-known name (or any guess) makes a
    group of its own, and every result of the fleet still reaches the ingest at once."""
    site, store, _ = central
    group = site.config.ingest.share_group
    assert group.startswith("ehc-ingest-") and len(group) == len("ehc-ingest-") + 24
    evil, good = make_box(site, store, tmp_path, "box-evil"), make_box(site, store, tmp_path, "box-good")
    spy = raw(site, evil)  # one session per certificate: one spy, in two guessed groups
    try:
        filters = topics.ingest_filters(topics.INGEST_SHARE_GROUP) + topics.ingest_filters("ehc-ingest-0")[:4]
        spy.client.subscribe([(f, 1) for f in filters])
        wait_until(lambda: len(spy.suback) == len(filters), what="SUBACK")
        ident = load_identity(good)
        topic = topics.event(CLINIC, "box-good", "scan")
        sender = raw(site, good)
        try:
            for seq in range(1, 21):
                msg = envelope.Message("box-good", 1, seq, "scan", {"outcome": "green"})
                assert sender.publish(topic, envelope.sign(msg, topic, ident.key)) == 0
        finally:
            sender.close()
        # Sent once, never resent (a raw client): a message dropped by the broker would never arrive.
        wait_until(lambda: store.counts()["results"] == 20, 15, "all 20 results stored")
    finally:
        spy.close()
    assert not spy.messages


def test_each_site_gets_its_own_secret_group(tmp_path) -> None:
    from central.site import init_central

    a = init_central(tmp_path / "a", 18830).config.ingest.share_group
    b = init_central(tmp_path / "b", 18830).config.ingest.share_group
    assert a != b and topics.INGEST_SHARE_GROUP not in (a, b)
    assert init_central(tmp_path / "a", 18830).config.ingest.share_group == a  # kept on a second init


# -- the clinic segment at the broker ------------------------------------------------------------------------

def test_the_broker_binds_a_box_to_its_clinic(central, tmp_path) -> None:
    """A box of clinic A may not publish (nor read) under clinic B's segment, even with its own device id: the
    broker refuses it, so the message never reaches the ingest."""
    site, store, ingest = central
    evil = make_box(site, store, tmp_path, "box-evil")
    client = raw(site, evil)
    operator = RawClient(site.config.broker.host, site.config.broker.port, site.config.path(site.config.broker.ca),
                         site.config.path(site.config.broker.operator_cert),
                         site.config.path(site.config.broker.operator_key), "ehc-central").wait_connected()
    try:
        for channel in ("evt/scan", "status", "state", "health", "req/lookup", "res/ping"):
            assert client.publish(f"{topics.PREFIX}/clinic-b/box-evil/{channel}", b"\xa0") == 135, channel
            assert client.publish(f"{topics.PREFIX}/{CLINIC}/box-evil/{channel}", b"\xa0") in (0, 16), channel  # 16: no subscriber
        client.client.subscribe([(f"{topics.PREFIX}/clinic-b/box-evil/cmd/+", 1),
                                 (f"{topics.PREFIX}/{CLINIC}/box-evil/cmd/+", 1)])
        wait_until(lambda: len(client.suback) == 2, what="SUBACK")
        assert operator.publish(topics.command("clinic-b", "box-evil", "ping"), b"other clinic") == 0
        assert operator.publish(topics.command(CLINIC, "box-evil", "ping"), b"own clinic") == 0
        wait_until(lambda: any(p == b"own clinic" for _, p in client.messages), what="its own command")
    finally:
        client.close()
        operator.close()
    assert [p for _, p in client.messages] == [b"own clinic"]
    wait_until(lambda: sum(store.counts()["rejections"].values()) >= 4, what="its own garbage refused")
    assert "wrong_clinic" not in store.counts()["rejections"]


# -- finding 4: numbers near 2^63 ------------------------------------------------------------------------------

def test_huge_sequence_numbers_are_refused_and_sums_over_boots_cannot_overflow(central, tmp_path) -> None:
    """seq / boot / ts at or above 2^53 are malformed; and 1100 valid boots each claiming seq 2^53 - 1 (which sum
    past 2^63) leave ``ehc-central devices``, the dashboard over HTTPS and its live-update thread working."""
    import ssl

    import httpx2

    from central.dashboard.app import Dashboard
    from central.dashboard.auth import hash_password
    from tests.support.dashboard_helpers import PASSWORD, csrf_of, serving

    site, store, ingest = central
    evil, good = make_box(site, store, tmp_path, "box-evil"), make_box(site, store, tmp_path, "box-good")
    key = load_identity(evil).key
    topic = topics.event(CLINIC, "box-evil", "scan")
    dash_store = open_store(site.config.database_url)
    dash = Dashboard(site.config, dash_store).start()
    dash.accounts.add_user("admin", "admin", None, hash_password(PASSWORD))
    client = raw(site, evil)
    try:
        for boot, seq, ts in ((1, 2**63 - 1, None), (2, 2**63 - 1, None), (2**63 - 1, 1, None), (3, 1, 2**53),
                              (4, 2**53, None)):
            signed = sign_raw(cbor2.dumps(message_map("box-evil", "scan", {"outcome": "green"}, boot, seq, ts)),
                              topic, key)
            assert client.publish(topic, signed) == 0
        wait_until(lambda: store.counts()["rejections"].get("malformed_payload") == 5, 20, "five refusals")
        for boot in range(1, 1101):
            msg = envelope.Message("box-evil", boot, 2**53 - 1, "scan", {"outcome": "green"})
            client.client.publish(topic, envelope.sign(msg, topic, key), qos=1)
        wait_until(lambda: store.counts()["results"] == 1100, 60, "1100 boots stored")
        assert client.publish(topics.device_topic(CLINIC, "box-evil", "status"), b"online") == 0
        devices = subprocess.run([str(BIN / "ehc-central"), "devices", "--config", str(site.config_path)],
                                 capture_output=True, text=True, timeout=60)
        assert devices.returncode == 0, devices.stderr
        row = next(json.loads(line) for line in devices.stdout.splitlines() if '"box-evil"' in line)
        assert row["results"] == 1100 and row["missing"] > 2**63
        assert dash.watcher is not None
        up = build_uplink(good, ["qr"]).start()  # the watcher thread still takes the next box's birth document
        try:
            wait_until(lambda: "box-good" in dash.fleet._live, 20, "the watcher after the overflowing sums")
        finally:
            up.stop()
        tls = ssl.create_default_context(cafile=str(site.config.path(site.config.broker.ca)))
        with serving(dash) as base, httpx2.Client(base_url=base, verify=tls, timeout=30) as web:
            form = web.get("/login")
            assert web.post("/login", data={"csrf": csrf_of(form.text), "username": "admin",
                                            "password": PASSWORD}).status_code == 303
            page = web.get("/devices")
            assert page.status_code == 200 and "box-evil" in page.text and "box-good" in page.text
    finally:
        client.close()
        dash.stop()
        dash_store.close()
    assert ingest.alive() and dash.watcher.ignored == 0


# -- finding 5: files others could read -------------------------------------------------------------------------

def test_the_central_database_keys_and_the_box_s_outbox_are_owner_only(tmp_path) -> None:
    """Created under the usual 022 umask, the central database (and its -wal/-shm), every key, the box's outbox and
    print queue are 0600; what Mosquitto must read (certificates, CRL, its configuration) stays 0644; a database
    left world-readable by an older version is narrowed when it is opened."""
    from central.broker import free_port
    from drivers.print_queue import PrintQueue

    site_dir = tmp_path / "site"
    old = os.umask(0o022)
    try:
        done = subprocess.run([str(BIN / "ehc-central"), "init", "--dir", str(site_dir), "--port", str(free_port())],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        stats = subprocess.run([str(BIN / "ehc-central"), "stats", "--config", str(site_dir / "central.toml")],
                               capture_output=True, text=True, timeout=60)
        assert stats.returncode == 0, stats.stderr
        store = open_store(f"sqlite:///{site_dir / 'central.db'}")
        store.register_card("AB" * 32)  # a write: the -wal and -shm files exist now
        mode = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (*site_dir.iterdir(), *(site_dir / "pki").iterdir())
                if p.is_file()}
        store.close()
        from central import config as central_config
        from central.site import Site
        from edge.boxfiles import open_outbox

        site = Site(site_dir, site_dir / "central.toml", central_config.load(site_dir / "central.toml"))
        registry = open_store(site.config.database_url)
        box_cfg = edge_config.load(add_device(site, registry, "box-1", CLINIC, tmp_path / "box"))
        registry.close()

        outbox = open_outbox(box_cfg, load_identity(box_cfg))
        outbox.start_boot()
        outbox.enqueue("scan", {"outcome": "green"})
        queue = PrintQueue(tmp_path / "box" / "state" / "printer.db")
        queue.add("queue", {"clinic": CLINIC, "number": "A001"})
        box_modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "box" / "state").iterdir()
                     if p.suffix in (".db", ".db-wal", ".db-shm") or p.name.endswith(("-wal", "-shm"))}
        outbox.close()
        legacy = tmp_path / "legacy.db"
        legacy.write_bytes(b"")
        legacy.chmod(0o644)
        open_store(f"sqlite:///{legacy}").close()
    finally:
        os.umask(old)
    for name in ("central.db", "central.db-wal", "central.db-shm", "ca.key", "broker.key", "ingest-0.key",
                 "ingest-1.key", "dashboard.key", "operator.key", "central-sign.key", "central-seal.key",
                 "pseudonym.key", "ehc1-issuer.key"):
        assert mode[name] == 0o600, (name, oct(mode[name]))
    for name in ("ca.crt", "broker.crt", "crl.pem"):
        assert mode[name] == 0o644, (name, oct(mode[name]))
    assert mode["central.toml"] == 0o640
    for name in ("acl", "mosquitto.conf"):
        assert stat.S_IMODE((site_dir / "mosquitto" / name).stat().st_mode) == 0o644
    assert box_modes and all(m == 0o600 for m in box_modes.values()), box_modes
    assert {"outbox.db", "printer.db"} <= set(box_modes)
    assert stat.S_IMODE(legacy.stat().st_mode) == 0o600


def test_serve_refuses_a_worker_without_a_certificate_of_its_own(site) -> None:
    """Two workers sharing a certificate would take each other's session: ``serve`` refuses to start them."""
    three = subprocess.run([str(BIN / "ehc-central"), "serve", "--workers", "3", "--config", str(site.config_path)],
                           capture_output=True, text=True, timeout=60)
    assert three.returncode == 2 and "ingest-2.crt" in three.stderr and "init --workers 3" in three.stderr
    shared = site.config_path.read_text().replace("pki/ingest-{worker}.crt", "pki/ingest-0.crt")
    (site.root / "shared.toml").write_text(shared)
    two = subprocess.run([str(BIN / "ehc-central"), "serve", "--workers", "2", "--config",
                          str(site.root / "shared.toml")], capture_output=True, text=True, timeout=60)
    assert two.returncode == 2 and "names 'ehc-ingest-0', not 'ehc-ingest-1'" in two.stderr
