"""The whole provisioning flow against the real central service, enrollment endpoint and Mosquitto:
token -> enroll -> mTLS -> signed result accepted -> revoke -> broker refuses, ingest rejects."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from central import ca
from central.broker import BrokerProcess, free_port, write_config
from central.enrollment import Enrollment, EnrollmentError, proof_topic, token_hash
from central.enrollment_server import make_server
from central.ingest import Ingest
from central.site import init_central
from central.store import open_store
from edge import config as edge_config
from edge.boxfiles import load_identity
from edge.runtime import build_uplink
from foundation import keyfiles
from mqtt import envelope, topics
from provisioning import qrtext
from tests.support.mqtt_helpers import RawClient, wait_until

BIN = Path(sys.executable).parent


@pytest.fixture
def central(tmp_path):
    site = init_central(tmp_path / "central", free_port(), enroll_port=free_port())
    cfg = site.config
    store = open_store(cfg.database_url)
    log = tmp_path / "mosquitto.log"
    broker = BrokerProcess(write_config(cfg, log), cfg.broker.host, cfg.broker.port, log).start()
    ingest = Ingest(cfg, open_store(cfg.database_url)).start()
    enrollment = Enrollment(cfg, store)
    server = make_server(cfg, Enrollment(cfg, open_store(cfg.database_url)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, "enrollment endpoint")
    yield site, store, enrollment, ingest
    server.should_exit = True
    thread.join(10)
    ingest.stop()
    broker.kill()


def can_connect(site, box: Path, client_id: str) -> bool:
    """Whether the broker accepts an MQTT session with this box's certificate."""
    b = site.config.broker
    try:
        client = RawClient(b.host, b.port, box / "ca.crt", box / "device.crt", box / "device.key", client_id)
    except OSError:  # ssl.SSLError included: the handshake was refused
        return False
    try:
        client.wait_connected(3)
        return True
    except AssertionError:
        return False
    finally:
        client.close()


def enroll_cli(qr_text: str, box: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ehc-provision"), "enroll", "--qr-text", qr_text, "--state-dir", str(box),
                           "--config", str(box / "edge.toml")], capture_output=True, text=True, timeout=60)


def test_token_enroll_publish_revoke(central, tmp_path):
    site, store, enrollment, ingest = central
    qr = enrollment.create_token("clinic-a", "box-0042")
    assert qrtext.parse(qr.text()) == qr
    box = tmp_path / "box"
    done = enroll_cli(qr.text(), box)
    assert done.returncode == 0, done.stderr
    assert "enrolled box-0042 at clinic-a" in done.stdout
    assert (box / "device.key").stat().st_mode & 0o777 == 0o600
    cfg = edge_config.load(box / "edge.toml")
    assert (cfg.device.id, cfg.device.clinic, cfg.mqtt.port) == ("box-0042", "clinic-a", site.config.broker.port)
    # The certificate is short-lived and for the key made on the box.
    cert = keyfiles.load_cert(box / "device.crt")
    assert 89 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 91
    # The deployment's pseudonym key came with the answer, for the box's owner only.
    assert cfg.identity.pseudonym_key and cfg.path(cfg.identity.pseudonym_key).read_bytes() == \
        (site.root / "pki" / "pseudonym.key").read_bytes()
    assert cfg.path(cfg.identity.pseudonym_key).stat().st_mode & 0o777 == 0o600
    # ... and the site's signed trust list, checked with the central key before it was kept.
    from central import trustlist_issuer
    from edge.trustlist_store import TrustListFile

    held = TrustListFile(cfg.trust_path, keyfiles.load_private_key(site.root / "pki" / "central-sign.key").public_key())
    assert held.current() is not None and cfg.trust_path.read_bytes() == trustlist_issuer.signed_bytes(site.config)
    assert cert.public_key() == load_identity(cfg).key.public_key()
    # ... and the public half of the central sealing key, which personal fields are sealed to.
    from mqtt import sealed

    central_seal = sealed.load_private(site.root / "pki" / "central-seal.key").public_key()
    assert cfg.provisioning.seal_key and sealed.load_public(cfg.path(cfg.provisioning.seal_key).read_bytes()) \
        .public_bytes_raw() == central_seal.public_bytes_raw()
    # The enrollment opened the box's audit chain.
    from edge.boxfiles import open_outbox

    (first,) = open_outbox(cfg, None).audit_tail(1)
    assert (first.pos, first.kind) == (1, "enrollment")

    # The token is spent: a second enrollment with it fails and changes nothing.
    again = enroll_cli(qr.text(), tmp_path / "box2")
    assert again.returncode == 1 and "token_used" in again.stderr
    assert not (tmp_path / "box2" / "device.key").exists()

    # mTLS with the new certificate; a signed result is accepted and stored.
    up = build_uplink(cfg)
    up.outbox.start_boot()
    up.outbox.enqueue("scan", {"outcome": "green"})
    up.start()
    try:
        wait_until(lambda: store.counts()["results"] == 1 and up.drained(), 20, "delivery")
    finally:
        up.stop()
    assert can_connect(site, box, "box-0042-probe")
    # A connection opened before the revocation stays up; keep one to publish through afterwards. (The broker
    # gives a certificate one session, so it is opened last: a later connection with the same certificate
    # would take its session away.)
    b = site.config.broker
    open_conn = RawClient(b.host, b.port, box / "ca.crt", box / "device.crt", box / "device.key",
                          "box-0042-second").wait_connected()

    out = subprocess.run([str(BIN / "ehc-central"), "device", "revoke", "--id", "box-0042", "--config",
                          str(site.config_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # The broker refuses a new connection with the revoked certificate (CRL reloaded on SIGHUP)...
    wait_until(lambda: not can_connect(site, box, "box-0042-after"), 10, "the broker to refuse the certificate")
    assert "certificate verify failed" in (tmp_path / "mosquitto.log").read_text()
    # ...and the ingest rejects anything still signed by it, even over the old connection.
    ingest.verifier.forget("box-0042")
    topic = topics.event("clinic-a", "box-0042", "scan")
    msg = envelope.Message("box-0042", 99, 1, "scan", {"outcome": "green"})
    open_conn.publish(topic, envelope.sign(msg, topic, load_identity(cfg).key))
    open_conn.close()
    wait_until(lambda: store.counts()["rejections"].get("revoked_device") == 1, 20, "revoked_device rejection")
    assert store.counts()["results"] == 1


@pytest.mark.parametrize("case", ["unknown", "expired", "serial", "csr_key", "csr_name"])
def test_bad_tokens_and_requests_leave_nothing(central, case):
    site, store, enrollment, _ = central
    qr = enrollment.create_token("clinic-a", "box-7", ttl=1 if case == "expired" else 600)
    key = keyfiles.generate_key()
    csr = keyfiles.make_csr(key, "box-7" if case != "csr_name" else "box-8")
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    if case == "csr_key":  # a CSR whose signature does not match its key
        other = keyfiles.make_csr(keyfiles.generate_key(), "box-7").public_bytes(serialization.Encoding.PEM).decode()
        pem = pem.split("-----END")[0][:-120] + other.split("-----BEGIN CERTIFICATE REQUEST-----\n")[1][-120:]
    request = {"token": qr.token if case != "unknown" else "x" * 32, "serial": "box-7" if case != "serial"
               else "box-9", "csr": pem, "facts": {}}
    if case == "expired":
        time.sleep(1.2)
    with pytest.raises(EnrollmentError) as info:
        enrollment.enroll(request)
    expected = {"unknown": "token_unknown", "expired": "token_expired", "serial": "serial_mismatch",
                "csr_key": "bad_csr", "csr_name": "bad_csr"}[case]
    assert info.value.code == expected
    assert store.get_device("box-7") is None and store.get_device("box-9") is None
    if case != "unknown":  # the token is still unused
        assert store.token(token_hash(qr.token))["used_at"] is None


def test_man_in_the_middle_with_another_ca_is_refused(central, tmp_path):
    site, store, enrollment, _ = central
    qr = enrollment.create_token("clinic-a", "box-5")
    _, other_ca = ca.create_ca("Somebody else")
    forged = qrtext.ProvisioningQr(qr.url, qr.token, keyfiles.fingerprint(other_ca), qr.clinic, qr.serial)
    box = tmp_path / "box"
    done = enroll_cli(forged.text(), box)
    assert done.returncode == 1 and "different CA" in done.stderr
    assert not (box / "device.key").exists() and not (box / "edge.toml").exists()
    assert store.get_device("box-5") is None


def test_endpoint_answers_bad_bodies_with_reasons(central):
    site, _, enrollment, _ = central
    ca_pem = keyfiles.load_cert(site.root / "pki" / "ca.crt").public_bytes(serialization.Encoding.PEM)
    import ssl

    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    url = f"{site.config.enrollment_url}/v1/enroll"
    for body, code, status in [(b"not json", "malformed", 400), (b"[]", "malformed", 400),
                               (json.dumps({"token": "short"}).encode(), "malformed", 400),
                               (b"x" * 20000, "too_large", 413)]:
        req = urllib.request.Request(url, data=body, method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, context=ctx, timeout=10)
        assert info.value.code == status
        assert json.loads(info.value.read())["error"] == code


def provision(enrollment, tmp_path, serial="box-0042"):
    box = tmp_path / serial
    assert enroll_cli(enrollment.create_token("clinic-a", serial).text(), box).returncode == 0
    return box


def provision_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ehc-provision"), *args], capture_output=True, text=True, timeout=60)


def test_selftest_status_renew_and_wipe(central, tmp_path):
    site, store, enrollment, _ = central
    box = provision(enrollment, tmp_path)
    conf = str(box / "edge.toml")

    test = provision_cli("selftest", "--config", conf)
    assert test.returncode == 0, test.stdout + test.stderr
    for part in ("device key", "certificate", "clock", "outbox", "camera", "broker"):
        assert f"pass  {part}" in test.stdout
    assert "not checked  printer" in test.stdout and "selftest: PASS" in test.stdout
    assert "not checked  ID-card reader" in test.stdout and "not checked  LEDs and buzzer" in test.stdout
    from edge.boxfiles import open_outbox

    kinds = [e.kind for e in open_outbox(edge_config.load(conf), None).audit_tail()]
    assert kinds == ["enrollment", "selftest"]  # both linked into the box's audit chain

    status = provision_cli("status", "--config", conf)
    assert status.returncode == 0 and "device box-0042 at clinic-a" in status.stdout
    assert "renewal due" not in status.stdout

    # Not due yet: nothing changes; --force renews for the same key, and the registry follows.
    before = (box / "device.crt").read_bytes()
    assert "not due" in provision_cli("renew", "--config", conf).stdout
    assert (box / "device.crt").read_bytes() == before
    renewed = provision_cli("renew", "--config", conf, "--force")
    assert renewed.returncode == 0, renewed.stderr
    after = (box / "device.crt").read_bytes()
    assert after != before
    assert store.get_device("box-0042").cert_pem.encode() == after
    assert keyfiles.load_cert(box / "device.crt").public_key() == x509.load_pem_x509_certificate(before).public_key()

    # Wipe: the central service revokes the device, and the box's identity is gone.
    assert provision_cli("wipe", "--config", conf).returncode == 2  # needs --yes
    gone = provision_cli("wipe", "--config", conf, "--yes")
    assert gone.returncode == 0, gone.stderr
    assert store.get_device("box-0042").status == "revoked"
    assert not (box / "device.key").exists() and not (box / "edge.toml").exists()


def test_renewal_needs_the_device_key(central, tmp_path):
    site, store, enrollment, _ = central
    box = provision(enrollment, tmp_path)
    cfg = edge_config.load(box / "edge.toml")

    csr = keyfiles.make_csr(load_identity(cfg).key, "box-0042").public_bytes(serialization.Encoding.PEM).decode()
    msg = envelope.Message("box-0042", 0, 0, "renew", {"csr_sha256": hashlib.sha256(csr.encode()).hexdigest()})
    stranger = envelope.sign(msg, proof_topic("clinic-a", "box-0042", "renew"), keyfiles.generate_key())
    with pytest.raises(EnrollmentError) as info:
        enrollment.renew({"device_id": "box-0042", "csr": csr, "proof": base64.b64encode(stranger).decode()})
    assert info.value.code == "bad_proof"
    # A proof made for decommissioning cannot be replayed to renew.
    other = envelope.sign(msg, proof_topic("clinic-a", "box-0042", "decommission"), load_identity(cfg).key)
    with pytest.raises(EnrollmentError, match="not signed"):
        enrollment.renew({"device_id": "box-0042", "csr": csr, "proof": base64.b64encode(other).decode()})
    # A CSR with another key is refused: renewal keeps the key made at enrollment.
    alien = keyfiles.make_csr(keyfiles.generate_key(), "box-0042").public_bytes(serialization.Encoding.PEM).decode()
    covers_alien = envelope.Message("box-0042", 0, 0, "renew",
                                    {"csr_sha256": hashlib.sha256(alien.encode()).hexdigest()})
    good = envelope.sign(covers_alien, proof_topic("clinic-a", "box-0042", "renew"), load_identity(cfg).key)
    with pytest.raises(EnrollmentError) as info:
        enrollment.renew({"device_id": "box-0042", "csr": alien, "proof": base64.b64encode(good).decode()})
    assert info.value.code == "bad_csr"


def test_token_sheet_png_scanned_by_the_camera_enrolls(central, tmp_path):
    """The technician's commands: token create --qr token.png, then enroll --scan (here the camera is the PNG)."""
    site, store, _, _ = central
    png = tmp_path / "token.png"
    made = subprocess.run([str(BIN / "ehc-central"), "token", "create", "--clinic", "clinic-b", "--serial", "box-77",
                           "--ttl", "30m", "--qr", str(png), "--quiet", "--config", str(site.config_path)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    qr = qrtext.parse(made.stdout.strip())
    assert (qr.clinic, qr.serial, qr.ca_fingerprint) == ("clinic-b", "box-77",
                                                         keyfiles.fingerprint(keyfiles.load_cert(site.root / "pki" / "ca.crt")))
    box = tmp_path / "box"
    done = provision_cli("enroll", "--scan", str(png), "--scan-timeout", "10", "--state-dir", str(box),
                         "--config", str(box / "edge.toml"))
    assert done.returncode == 0, done.stderr
    devices = subprocess.run([str(BIN / "ehc-central"), "devices", "--clinic", "clinic-b", "--config",
                              str(site.config_path)], capture_output=True, text=True, check=True).stdout
    row = json.loads(devices)
    assert row["device_id"] == "box-77" and row["status"] == "active" and row["cert_expires"]


def test_revocation_covers_certificates_replaced_by_renewal(central, tmp_path):
    site, store, enrollment, _ = central
    box = provision(enrollment, tmp_path)
    first = x509.load_pem_x509_certificate((box / "device.crt").read_bytes())
    old = tmp_path / "old"
    old.mkdir()
    for name in ("device.crt", "device.key", "ca.crt"):
        (old / name).write_bytes((box / name).read_bytes())
    assert provision_cli("renew", "--config", str(box / "edge.toml"), "--force").returncode == 0
    second = x509.load_pem_x509_certificate((box / "device.crt").read_bytes())
    assert first.serial_number != second.serial_number
    assert enrollment.revoke("box-0042")
    crl = x509.load_pem_x509_crl((site.root / "pki" / "crl.pem").read_bytes())
    assert {r.serial_number for r in crl} == {first.serial_number, second.serial_number}
    assert crl.next_update_utc.year - crl.last_update_utc.year >= 9  # never lapses between revocations
    wait_until(lambda: not can_connect(site, old, "box-0042-old"), 10, "the replaced certificate to be refused")


def test_selftest_checks_reader_printer_lights_and_prints_the_pairing_ticket(central, tmp_path):
    import tomllib

    import tomli_w

    from tests.hw_sim.idcard_reader import SimulatedIdCardReader
    from tests.hw_sim.printer import PrinterSimulator

    site, store, enrollment, _ = central
    box = provision(enrollment, tmp_path, "box-0077")
    conf = box / "edge.toml"
    with PrinterSimulator() as printer, SimulatedIdCardReader() as reader:
        data = tomllib.loads(conf.read_text())
        data.update(printer={"connection": f"serial:{printer.path}", "paper": "58mm", "settle": 0.0},
                    idcard={"port": reader.port}, gpio={"pin_factory": "mock", "hold": 0.1})
        conf.write_text(tomli_w.dumps(data))

        test = provision_cli("selftest", "--config", str(conf))
        assert test.returncode == 0, test.stdout + test.stderr
        for part in ("ID-card reader", "printer", "LEDs and buzzer", "self-test ticket"):
            assert f"pass  {part}" in test.stdout, test.stdout
        (ticket,) = printer.wait_for_tickets(1)
        cert_fp = keyfiles.fingerprint(keyfiles.load_cert(box / "device.crt"))
        assert ticket.qr_codes == [f"EHCPAIR1;device=box-0077;clinic=clinic-a;cert={cert_fp}"]
        assert any("box-0077" in line for line in ticket.texts)

        printer.paper_out()
        failed = provision_cli("selftest", "--config", str(conf))
        assert failed.returncode == 1 and "FAIL  printer" in failed.stdout and "load paper" in failed.stdout
        assert "self-test ticket" not in failed.stdout

    data["idcard"] = {"port": str(tmp_path / "no-such-tty")}
    data["printer"] = {"connection": "none"}
    conf.write_text(tomli_w.dumps(data))
    missing = provision_cli("selftest", "--config", str(conf), "--no-ticket")
    assert missing.returncode == 1 and "FAIL  ID-card reader" in missing.stdout
    assert "not checked  printer" in missing.stdout
