"""A clinic's technician, or anyone reaching the dashboard, attacks the fleet through the real services: the
dashboard over HTTPS, the HTTPS enrollment endpoint, Mosquitto with TLS and the ACL, the ingest.

Each test performs one attack and checks that it is refused and that the others are still served.
"""

from __future__ import annotations

import base64
import contextlib
import re
import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from central.broker import BrokerProcess, free_port, wait_for_port, write_config
from central.dashboard.app import Dashboard
from central.dashboard.auth import Sessions, hash_password
from central.enrollment import Enrollment, proof_topic
from central.enrollment_server import make_server
from central.ingest import Ingest
from central.site import init_central
from central.store import open_store
from edge import config as edge_config
from edge.boxfiles import load_identity
from edge.runtime import build_uplink
from foundation import keyfiles
from provisioning import qrtext
from tests.support.dashboard_helpers import PASSWORD, csrf_of, serving
from tests.support.mqtt_helpers import RawClient, wait_until

httpx2 = pytest.importorskip("httpx2", reason="httpx2 (the dashboard tests' HTTP client) is not installed")

BIN = Path(sys.executable).parent


@pytest.fixture
def fleet(tmp_path):
    """Broker, ingest, enrollment endpoint and dashboard (with its MQTT watcher) of one site; users of two clinics."""
    site = init_central(tmp_path / "central", free_port(), enroll_port=free_port())
    cfg = site.config
    store = open_store(cfg.database_url)
    log = tmp_path / "mosquitto.log"
    broker = BrokerProcess(write_config(cfg, log), cfg.broker.host, cfg.broker.port, log).start()
    ingest = Ingest(cfg, open_store(cfg.database_url)).start()
    server = make_server(cfg, Enrollment(cfg, open_store(cfg.database_url)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, "enrollment endpoint")
    dash = Dashboard(cfg, open_store(cfg.database_url)).start()
    for name, role, clinic in (("admin", "admin", None), ("tech-a", "technician", "clinic-a"),
                               ("tech-b", "technician", "clinic-b")):
        dash.accounts.add_user(name, role, clinic, hash_password(PASSWORD))
    try:
        with serving(dash) as base:
            yield site, store, dash, base, ingest
    finally:
        dash.stop()
        server.should_exit = True
        thread.join(10)
        ingest.stop()
        broker.kill()
        store.close()


def web(site, base: str):  # type: ignore[no-untyped-def]
    """An HTTPS client that trusts the site CA (the dashboard serves the broker's certificate)."""
    tls = ssl.create_default_context(cafile=str(site.config.path(site.config.broker.ca)))
    return httpx2.Client(base_url=base, verify=tls, timeout=60, follow_redirects=False)


def log_in(client, name: str, password: str = PASSWORD) -> int:  # type: ignore[no-untyped-def]
    form = client.get("/login")
    return client.post("/login", data={"csrf": csrf_of(form.text), "username": name, "password": password}).status_code


def enroll(qr_text: str, box: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ehc-provision"), "enroll", "--qr-text", qr_text, "--state-dir", str(box),
                           "--config", str(box / "edge.toml")], capture_output=True, text=True, timeout=60)


def can_connect(site, box: Path) -> bool:  # type: ignore[no-untyped-def]
    b = site.config.broker
    try:
        client = RawClient(b.host, b.port, box / "ca.crt", box / "device.crt", box / "device.key", "probe")
    except OSError:
        return False
    try:
        client.wait_connected(3)
        return True
    except AssertionError:
        return False
    finally:
        client.close()


def audit(dash: Dashboard, user: str, action: str) -> list[str]:
    return [e.result for e in dash.accounts.audit_log(1000, user=user) if e.action == action]


# -- finding 2: a technician's scope ---------------------------------------------------------------------------

def test_a_clinic_technician_cannot_take_over_another_clinic_s_box(fleet, tmp_path) -> None:
    """A clinic-A technician asks for a token for box-b1 (registered in clinic B): refused, with or without
    're-enroll'; a token made before the serial was registered elsewhere is refused by the enrollment endpoint.
    An admin's re-enrollment replaces the box and puts its old certificate into the CRL: the broker refuses it."""
    site, store, dash, base, ingest = fleet
    enrollment = Enrollment(site.config, store)
    box_b1 = tmp_path / "box-b1"
    assert enroll(enrollment.create_token("clinic-b", "box-b1").text(), box_b1).returncode == 0
    stale = enrollment.create_token("clinic-a", "box-b2")  # box-b2 is not registered yet: allowed
    assert enroll(enrollment.create_token("clinic-b", "box-b2").text(), tmp_path / "box-b2").returncode == 0
    old_b1 = edge_config.load(box_b1 / "edge.toml")
    up = build_uplink(old_b1, ["qr"])
    up.outbox.start_boot()
    up.start()
    try:
        assert up.connected.wait(10)
        with web(site, base) as tech:
            assert log_in(tech, "tech-a") == 303
            for extra in ({}, {"reenroll": "yes"}):
                page = tech.get("/actions")
                refused = tech.post("/actions/token", data={"csrf": csrf_of(page.text), "clinic": "clinic-a",
                                                            "serial": "box-b1", "ttl_minutes": "30", **extra})
                assert refused.status_code == 403 and "<svg" not in refused.text
            page = tech.get("/actions")  # a new box in its own clinic: still served
            made = tech.post("/actions/token", data={"csrf": csrf_of(page.text), "clinic": "clinic-a",
                                                     "serial": "box-a9", "ttl_minutes": "30"})
            assert made.status_code == 200 and "<svg" in made.text
        assert audit(dash, "tech-a", "token_create") == ["ok", "refused", "refused"]
        assert store.execute("SELECT count(*) FROM enrollment_tokens WHERE serial = 'box-b1'").fetchone()[0] == 1
        # the token made for box-b2 before box-b2 was registered in clinic B no longer enrolls it
        taken = enroll(stale.text(), tmp_path / "box-b2-stolen")
        assert taken.returncode == 1 and "serial_registered" in taken.stderr
        assert store.get_device("box-b2").clinic == "clinic-b" and can_connect(site, tmp_path / "box-b2")
        # the real box-b1 still delivers
        up.outbox.enqueue("scan", {"outcome": "green"})
        wait_until(lambda: store.counts()["results"] == 1 and up.drained(), 20, "box-b1's result")
        # an admin may re-enroll it (here moving it to clinic A): the dashboard makes such a token for an admin only
        with web(site, base) as admin:
            assert log_in(admin, "admin") == 303
            page = admin.get("/actions")
            ok = admin.post("/actions/token", data={"csrf": csrf_of(page.text), "clinic": "clinic-a",
                                                    "serial": "box-b1", "ttl_minutes": "30", "reenroll": "yes"})
            assert ok.status_code == 200 and "<svg" in ok.text
        made = subprocess.run([str(BIN / "ehc-central"), "token", "create", "--clinic", "clinic-a", "--serial",
                               "box-b1", "--quiet", "--config", str(site.config_path)], capture_output=True, text=True)
        assert made.returncode == 1 and "needs an admin" in made.stderr  # the command line asks for --reenroll too
        made = subprocess.run([str(BIN / "ehc-central"), "token", "create", "--clinic", "clinic-a", "--serial",
                               "box-b1", "--reenroll", "--quiet", "--config", str(site.config_path)],
                              capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        old_cert = x509.load_pem_x509_certificate((box_b1 / "device.crt").read_bytes())
        new_b1 = tmp_path / "box-b1-new"
        assert enroll(qrtext.parse(made.stdout.strip()).text(), new_b1).returncode == 0
        crl = x509.load_pem_x509_crl((site.root / "pki" / "crl.pem").read_bytes())
        assert old_cert.serial_number in {r.serial_number for r in crl}
        wait_until(lambda: not can_connect(site, box_b1), 10, "the broker to refuse the replaced certificate")
        assert can_connect(site, new_b1) and store.get_device("box-b1").clinic == "clinic-a"
        # what the old box still sends over its open connection is refused (once the ingest's 60 s key cache has
        # let go of the old registration; the test drops it instead of waiting), not stored
        ingest.verifier.forget("box-b1")
        up.outbox.enqueue("scan", {"outcome": "green"})
        wait_until(lambda: store.counts()["rejections"].get("wrong_clinic", 0) >= 1, 30, "the old box refused")
        assert store.counts()["results"] == 1
    finally:
        up.stop()


def test_a_renewal_proof_bomb_is_refused_and_renewals_still_work(fleet, tmp_path) -> None:
    """The /v1/renew proof is a box-signed COSE message: one whose body expands through shared references is
    refused at once (bad_proof), and the box's genuine renewal goes through afterwards."""
    import json
    import urllib.error
    import urllib.request

    from tests.central.test_hostile_box import shared_reference_payload, sign_raw

    site, store, _, _, _ = fleet
    box = tmp_path / "box-r"
    assert enroll(Enrollment(site.config, store).create_token("clinic-a", "box-r").text(), box).returncode == 0
    cfg = edge_config.load(box / "edge.toml")
    key = load_identity(cfg).key
    csr = keyfiles.make_csr(key, "box-r").public_bytes(serialization.Encoding.PEM).decode()
    payload = shared_reference_payload("box-r", "renew", 6, 16)
    proof = sign_raw(payload, proof_topic("clinic-a", "box-r", "renew"), key)
    tls = ssl.create_default_context(cafile=str(box / "ca.crt"))
    request = urllib.request.Request(f"{site.config.enrollment_url}/v1/renew", method="POST",
                                     data=json.dumps({"device_id": "box-r", "csr": csr,
                                                      "proof": base64.b64encode(proof).decode()}).encode())
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, context=tls, timeout=20)
    assert info.value.code == 403 and json.loads(info.value.read())["error"] == "bad_proof"
    renewed = subprocess.run([str(BIN / "ehc-provision"), "renew", "--force", "--config", str(box / "edge.toml")],
                             capture_output=True, text=True, timeout=60)
    assert renewed.returncode == 0, renewed.stderr
    assert store.get_device("box-r").cert_pem.encode() == (box / "device.crt").read_bytes()


# -- findings 6 and 7: login throttling and password-check memory ----------------------------------------------

def _login_burst(site, base: str, attempts: list[tuple[str, str]]) -> list[int]:  # type: ignore[no-untyped-def]
    """Send every (name, password) at once, each from its own connection; the HTTP statuses."""
    with web(site, base) as first:
        token = csrf_of(first.get("/login").text)
        cookies = dict(first.cookies)
    statuses: list[int] = []
    start = threading.Barrier(len(attempts))

    def one(name: str, password: str) -> None:
        with web(site, base) as c:
            c.cookies.update(cookies)
            start.wait()
            statuses.append(c.post("/login", data={"csrf": token, "username": name, "password": password}).status_code)

    threads = [threading.Thread(target=one, args=pair) for pair in attempts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return statuses


def test_concurrent_logins_cannot_get_past_the_throttle(fleet) -> None:
    """80 simultaneous wrong passwords for one name: at most 5 are checked, the rest refused unchecked, and the right
    password is refused afterwards too; 30 simultaneous tries with the right one among them check at most 5."""
    site, store, dash, base, ingest = fleet
    statuses = _login_burst(site, base, [("tech-a", f"wrong password {i}") for i in range(80)])
    assert statuses.count(303) == 0 and len(statuses) == 80
    results = audit(dash, "tech-a", "login")
    assert results.count("refused") <= 5 and results.count("throttled") >= 75 and "ok" not in results
    with web(site, base) as late:
        assert log_in(late, "tech-a") == 401  # the name is refused for the rest of the window
    tries = [("tech-b", f"wrong password {i}") for i in range(29)] + [("tech-b", PASSWORD)]
    _login_burst(site, base, tries)
    checked = [r for r in audit(dash, "tech-b", "login") if r in ("refused", "ok")]
    assert len(checked) <= 5
    with web(site, base) as other:  # another user is still served
        assert log_in(other, "admin") == 303 and other.get("/devices").status_code == 200


@contextlib.contextmanager
def dashboard_process(site, tmp_path: Path) -> Iterator[tuple[str, int]]:  # type: ignore[no-untyped-def]
    """``ehc-central dashboard`` as its own process (so that its memory can be read); yields (base URL, pid)."""
    port = free_port()
    conf = tmp_path / "dash.toml"
    data = __import__("tomllib").loads(site.config_path.read_text())
    data["dashboard"] = {"port": port, "bind": "127.0.0.1"}
    data["base_dir"] = str(site.root)
    conf.write_text(tomli_w.dumps(data))
    proc = subprocess.Popen([str(BIN / "ehc-central"), "--log-level", "ERROR", "dashboard", "--config", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, 30)
        yield f"https://localhost:{port}", proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def test_a_flood_of_logins_cannot_exhaust_the_dashboard_s_memory(fleet, tmp_path) -> None:
    """40 simultaneous logins with random names (no account needed) against a dashboard process: only a few
    scrypt checks (32 MiB each) run at once, and the address is throttled; its peak memory stays small, and it
    still serves a real user afterwards from another address."""
    site, store, dash, _, _ = fleet
    with dashboard_process(site, tmp_path) as (base, pid):
        with web(site, base) as warm:
            warm.get("/login")
        before = peak_rss_mib(pid)
        statuses = _login_burst(site, base, [(secrets.token_hex(8), "some password") for _ in range(40)])
        after = peak_rss_mib(pid)
        assert len(statuses) == 40 and statuses.count(303) == 0
        # 40 concurrent checks would take 40 × 32 MiB; three at a time take about 100 MiB
        assert after - before < 300, (before, after)
    refused = [e for e in dash.accounts.audit_log(1000) if e.action == "login"]
    assert sum(e.result == "throttled" for e in refused) >= 20  # beyond 20 tries, the address is refused unchecked
    with web(site, fleet[3]) as other:
        assert log_in(other, "admin") == 303


# -- finding 8: sessions --------------------------------------------------------------------------------------

def test_an_open_live_update_stream_does_not_keep_a_session_alive(fleet, monkeypatch) -> None:
    """A tab left open on the devices page keeps its event stream; the stream no longer restarts the idle timer,
    so the session ends after the idle time, and it ends after its lifetime however busy it is."""
    from central.dashboard import events

    site, store, dash, base, ingest = fleet
    monkeypatch.setattr(events, "KEEPALIVE", 0.3)  # the stream checks its session at each keepalive
    dash.sessions = Sessions(idle=2.0, lifetime=5.0)
    with web(site, base) as tab:
        assert log_in(tab, "tech-a") == 303
        started = time.monotonic()
        lines = 0
        with tab.stream("GET", "/events") as stream:
            assert stream.status_code == 200
            for _ in stream.iter_lines():
                lines += 1
                if time.monotonic() - started > 10:
                    break
        assert time.monotonic() - started < 6 and lines > 2  # the server ended it, idle, keepalives and all
        assert tab.get("/devices").status_code == 303  # logged out
        assert tab.get("/events").status_code == 401
    with web(site, base) as busy:
        assert log_in(busy, "tech-a") == 303
        started = time.monotonic()
        while time.monotonic() - started < 4.5:
            assert busy.get("/devices").status_code == 200
            time.sleep(0.5)
        wait_until(lambda: busy.get("/devices").status_code == 303, 5, "the end of the session's lifetime")
        assert time.monotonic() - started < 8
    with web(site, base) as other:  # a new login is served
        assert log_in(other, "tech-a") == 303 and other.get("/devices").status_code == 200
