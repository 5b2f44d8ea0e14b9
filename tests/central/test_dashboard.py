"""The fleet dashboard without a browser: passwords, users and audit, the device model, counts, and the
HTTP layer (login, sessions, CSRF, roles, clinic isolation, no personal data) through Starlette's client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from central.dashboard import charts
from central.dashboard.accounts import Accounts, UserError
from central.dashboard.actions import NotAllowed
from central.dashboard.app import Dashboard, build_app
from central.dashboard.auth import COOKIE, PasswordError, Sessions, Throttle, check_login, check_password, hash_password
from central.dashboard.events import Broadcaster, Event
from central.dashboard.throughput import throughput
from central.store import open_store
from tests.support.dashboard_helpers import PASSWORD, csrf_of, login
from tests.support.fleet import SECRET_MARKERS, populate, scan_bodies

try:
    from starlette.testclient import TestClient
except RuntimeError as exc:  # neither httpx2 nor httpx is installed
    pytest.skip(f"starlette's TestClient is not usable: {exc}", allow_module_level=True)

BIN = Path(sys.executable).parent
NORTH = {"box-a01", "box-a02", "box-a03"}


@pytest.fixture
def fleet_site(site, store, tmp_path):
    populate(site, store, tmp_path / "boxes")
    return site


@pytest.fixture
def dash(fleet_site, tmp_path):
    store = open_store(fleet_site.config.database_url)
    d = Dashboard(fleet_site.config, store, watch=False)
    hashed = hash_password(PASSWORD)
    d.accounts.add_user("admin", "admin", None, hashed)
    d.accounts.add_user("tech", "technician", None, hashed)
    d.accounts.add_user("north", "viewer", "clinic-north", hashed)
    d.accounts.add_user("east-tech", "technician", "clinic-east", hashed)
    yield d
    store.close()


def client(dash: Dashboard, user: str | None = None) -> TestClient:
    c = TestClient(build_app(dash), base_url="https://testserver")
    if user is not None:
        assert login(c, user).status_code == 303
    return c


# -- passwords, users, audit ------------------------------------------------------------------------------
def test_passwords_are_salted_scrypt_hashes():
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first.startswith("scrypt$") and first != second and PASSWORD not in first
    assert check_password(PASSWORD, first) and check_password(PASSWORD, second)
    assert not check_password(PASSWORD + "x", first) and not check_password(PASSWORD, "garbage")
    assert not check_login(PASSWORD, None)  # no such user: checked against a dummy hash, and refused
    with pytest.raises(PasswordError):
        hash_password("short")


def test_users_roles_and_the_audit_log(store):
    accounts = Accounts(store)
    with pytest.raises(UserError, match="viewer belongs to one clinic"):
        accounts.add_user("v", "viewer", None, "x")
    with pytest.raises(UserError, match="role"):
        accounts.add_user("v", "owner", "c", "x")
    with pytest.raises(UserError):
        accounts.add_user("bad name!", "admin", None, "x")
    accounts.add_user("v", "viewer", "clinic-a", "h1")
    accounts.add_user("v", "technician", None, "h2")  # changed, not duplicated
    (user,) = accounts.users()
    assert (user.role, user.clinic, user.password_hash, user.can_act, user.is_admin) == \
        ("technician", None, "h2", True, False)
    assert accounts.disable_user("v") and accounts.user("v").disabled and not accounts.disable_user("nobody")
    accounts.audit("v", "login", "dashboard", "ok")
    accounts.audit("w", "revoke", "box-1", "ok")
    log = accounts.audit_log()
    assert [(e.user, e.action, e.target, e.result) for e in log] == [("w", "revoke", "box-1", "ok"),
                                                                      ("v", "login", "dashboard", "ok")]
    assert [e.action for e in accounts.audit_log(user="v")] == ["login"]


def test_sessions_expire_and_end_and_logins_are_throttled():
    sessions = Sessions(idle=60)
    sid, session = sessions.create("a")
    assert sessions.get(sid) is session and sessions.get("forged") is None
    sessions.end_user("a")
    assert sessions.get(sid) is None
    expired = Sessions(idle=-1)
    sid, _ = expired.create("a")
    assert expired.get(sid) is None
    throttle = Throttle(limit=3, address_limit=5)
    for _ in range(3):
        assert not throttle.blocked("a")
        assert throttle.attempt("a", "10.0.0.1")
    assert throttle.blocked("a") and not throttle.blocked("b")
    assert not throttle.attempt("a", "10.0.0.2")  # the name's limit, whatever the address
    assert throttle.attempt("b", "10.0.0.1") and throttle.attempt("c", "10.0.0.1")
    assert not throttle.attempt("d", "10.0.0.1")  # the address's limit, whatever the name
    throttle.succeeded("b", "10.0.0.1")
    assert throttle.attempt("d", "10.0.0.1")


# -- device model and counts --------------------------------------------------------------------------------
def test_device_views_from_the_store(dash):
    views = {v.device_id: v for v in dash.fleet.devices()}
    assert len(views) == 7 and {v.device_id for v in dash.fleet.devices("clinic-north")} == NORTH
    a01, a02, a03 = views["box-a01"], views["box-a02"], views["box-a03"]
    assert a01.state == "online" and a01.alerts == () and a01.software == "0.1.0" and a01.trust_version == 7
    assert "sface 2021dec-int8" in a01.models and a01.config_revision == 3
    cert = x509.load_pem_x509_certificate(dash.accounts.get_device("box-a01").cert_pem.encode())
    assert a01.cert_expires == cert.not_valid_after_utc.timestamp()
    assert a02.state == "alerting" and [a.text for a in a02.alerts] == ["printer: paper out"]
    assert a03.state == "offline" and (a03.queue_depth, a03.oldest_queued_s) == (17, 5400)
    assert {a.code for a in views["box-b02"].alerts} == {"camera_error", "sequence_gaps"}
    assert views["box-b02"].gaps_24h == 2
    c01 = views["box-c01"]
    assert c01.restarts_24h == 3 and {a.code for a in c01.alerts} == {"restarts", "trust_list_stale"}
    assert [v.device_id for v in dash.fleet.devices(state="offline")] == ["box-a03"]
    # What the watcher receives lays on top of the store.
    dash.fleet.apply("box-a01", presence="offline")
    dash.fleet.apply("box-a03", presence="online", health={"alerts": [], "queue_depth": 0})
    assert dash.fleet.device("box-a01").state == "offline"
    assert dash.fleet.device("box-a03").state == "online" and dash.fleet.device("box-a03").queue_depth == 0
    assert dash.fleet.device("nope") is None


def test_throughput_counts_every_scan_by_clinic_and_outcome(dash, store):
    t = throughput(dash.accounts, None)
    bodies = scan_bodies(store)
    assert sum(sum(t.totals(c).values()) for c in t.by_clinic) == len(bodies)
    expected_red = sum(1 for b in bodies if b["outcome"] == "red")
    assert sum(t.totals(c)["red"] for c in t.by_clinic) == expected_red
    assert sum(t.reasons.values()) == sum(1 for b in bodies if b["outcome"] != "green")
    assert t.rejections["bad_signature"] == 2 and t.rejections["unknown_device"] == 1
    north = throughput(dash.accounts, ["clinic-north"])
    assert list(north.by_clinic) == ["clinic-north"]
    assert dict(north.rejections) == {"revoked_device": 1}  # its own devices' refusals only
    svg = charts.stacked_hours(north.by_clinic["clinic-north"], north.start, ("green", "yellow", "red"), "t")
    assert svg.startswith("<svg") and svg.count("<rect") >= 24


def test_broadcaster_sends_a_clinic_only_its_own_events():
    async def scenario() -> list[bytes]:
        b = Broadcaster()
        stream = b.stream("clinic-north")
        assert (await stream.__anext__()).startswith(b"retry:")
        b.publish(Event("device", "clinic-east", {"id": "box-b01"}))
        b.publish(Event("device", "clinic-north", {"id": "box-a01"}))
        got = [await asyncio.wait_for(stream.__anext__(), 5)]
        await stream.aclose()
        return got

    (event,) = asyncio.run(scenario())
    assert b"box-a01" in event and json.loads(event.split(b"data: ")[1])["id"] == "box-a01"


# -- HTTP: login, sessions, CSRF -----------------------------------------------------------------------------
def test_login_sets_a_strict_secure_session_cookie_and_logout_ends_it(dash):
    c = client(dash)
    assert c.get("/devices", follow_redirects=False).headers["location"] == "/login"
    assert c.get("/events").status_code == 401 and c.get("/throughput", follow_redirects=False).status_code == 303
    assert login(c, "tech", "wrong password!").status_code == 401
    r = login(c, "tech")
    assert r.status_code == 303 and r.headers["location"] == "/devices"
    cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith(COOKIE)][0].lower()
    assert all(flag in cookie for flag in ("secure", "httponly", "samesite=strict", "path=/"))
    page = c.get("/devices")
    assert page.status_code == 200 and "box-a01" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert c.post("/logout", data={}, follow_redirects=False).status_code == 403  # no CSRF token
    assert c.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False).status_code == 303
    assert c.get("/devices", follow_redirects=False).headers["location"] == "/login"
    actions = [(e.user, e.action, e.result) for e in dash.accounts.audit_log()]
    assert ("tech", "login", "refused") in actions and ("tech", "login", "ok") in actions
    assert ("tech", "logout", "ok") in actions


def test_login_form_needs_its_csrf_token_and_a_disabled_user_is_out(dash):
    c = client(dash)
    r = c.post("/login", data={"csrf": "forged", "username": "tech", "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403
    c = client(dash, "tech")
    dash.accounts.disable_user("tech")
    assert c.get("/devices", follow_redirects=False).status_code == 303
    assert login(client(dash), "tech").status_code == 401


def test_actions_need_the_session_csrf_token(dash):
    c = client(dash, "tech")
    r = c.post("/actions/token", data={"clinic": "clinic-north", "serial": "box-a09"})
    assert r.status_code == 403
    other = client(dash, "admin")  # another session's token does not do either
    r = c.post("/actions/token", data={"csrf": csrf_of(other.get("/actions").text), "clinic": "clinic-north",
                                       "serial": "box-a09"})
    assert r.status_code == 403
    assert ("tech", "csrf_refused", "refused") in [(e.user, e.action, e.result) for e in dash.accounts.audit_log()]


# -- roles and clinic isolation -------------------------------------------------------------------------------
def test_a_viewer_sees_only_its_clinic_and_cannot_act(dash):
    c = client(dash, "north")
    page = c.get("/devices?clinic=clinic-east").text
    assert all(d in page for d in NORTH)
    assert not [d for d in ("box-b01", "box-b02", "box-c01", "box-c02", "clinic-east", "clinic-south") if d in page]
    assert c.get("/devices/box-b01").status_code == 404 and c.get("/devices/box-a01").status_code == 200
    assert "Remote command" not in c.get("/devices/box-a01").text
    tp = c.get("/throughput?clinic=clinic-east").text
    assert "clinic-north" in tp and "clinic-east" not in tp and "clinic-south" not in tp
    csrf = csrf_of(c.get("/devices").text)
    assert c.get("/actions").status_code == 403 and c.get("/audit").status_code == 403
    assert c.get("/users").status_code == 403
    assert c.post("/actions/token", data={"csrf": csrf, "clinic": "clinic-north", "serial": "x1"}).status_code == 403
    assert c.post("/devices/box-a01/revoke", data={"csrf": csrf, "confirm": "box-a01"}).status_code == 403
    assert c.post("/devices/box-a01/command", data={"csrf": csrf, "name": "rebirth"}).status_code == 403
    assert dash.accounts.get_device("box-a01").status == "active"


def test_a_clinic_technician_acts_only_in_its_clinic(dash, store):
    c = client(dash, "east-tech")
    assert "box-a01" not in c.get("/devices").text
    csrf = csrf_of(c.get("/actions").text)
    assert c.post("/devices/box-a01/revoke", data={"csrf": csrf, "confirm": "box-a01"}).status_code == 404
    r = c.post("/actions/token", data={"csrf": csrf, "clinic": "clinic-north", "serial": "box-z1"})
    assert r.status_code == 403
    assert dash.accounts.get_device("box-a01").status == "active"
    refused = [(e.action, e.target, e.result) for e in dash.accounts.audit_log(user="east-tech")]
    assert ("revoke", "box-a01", "refused") in refused and ("token_create", "box-z1@clinic-north", "refused") in refused


# -- actions ------------------------------------------------------------------------------------------------
def test_a_technician_creates_an_enrollment_token_with_its_qr(dash, store):
    c = client(dash, "tech")
    r = c.post("/actions/token", data={"csrf": csrf_of(c.get("/actions").text), "clinic": "clinic-east",
                                       "serial": "box-b09", "ttl_minutes": "20"})
    assert r.status_code == 200 and '<svg' in r.text and "box-b09" in r.text
    rows = store.execute("SELECT clinic, serial, expires_at - created_at FROM enrollment_tokens").fetchall()
    assert [(cl, se) for cl, se, _ in rows] == [("clinic-east", "box-b09")] and abs(rows[0][2] - 1200) < 5
    (entry,) = dash.accounts.audit_log(action="token_create")
    assert (entry.user, entry.target, entry.result) == ("tech", "box-b09@clinic-east", "ok")
    bad = c.post("/actions/token", data={"csrf": csrf_of(r.text), "clinic": "clinic-east", "serial": "ehc-ingest"})
    assert bad.status_code == 400 and "reserved" in bad.text


def test_a_technician_revokes_a_device_into_the_crl(dash, fleet_site):
    c = client(dash, "tech")
    csrf = csrf_of(c.get("/devices/box-c02").text)
    assert c.post("/devices/box-c02/revoke", data={"csrf": csrf, "confirm": "wrong"}).status_code == 200
    assert dash.accounts.get_device("box-c02").status == "active"
    r = c.post("/devices/box-c02/revoke", data={"csrf": csrf, "confirm": "box-c02"})
    assert r.status_code == 200 and "revoked" in r.text
    assert dash.accounts.get_device("box-c02").status == "revoked" and dash.fleet.device("box-c02").state == "revoked"
    cert = x509.load_pem_x509_certificate(dash.accounts.get_device("box-c02").cert_pem.encode())
    crl = x509.load_pem_x509_crl(fleet_site.config.path(fleet_site.config.enrollment.crl).read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert [(e.user, e.target, e.result) for e in dash.accounts.audit_log(action="revoke")] == \
        [("tech", "box-c02", "ok")]


def test_a_command_to_an_unreachable_broker_is_reported_and_audited(dash):
    c = client(dash, "tech")
    r = c.post("/devices/box-a01/command", data={"csrf": csrf_of(c.get("/devices/box-a01").text), "name": "ping"})
    assert r.status_code == 200 and "failed" in r.text
    (entry,) = dash.accounts.audit_log(action="command")
    assert (entry.target, entry.result) == ("box-a01:ping", "error")
    r = c.post("/devices/box-a01/command", data={"csrf": csrf_of(r.text), "name": "reboot-everything"})
    assert r.status_code == 404


def test_an_admin_manages_users(dash):
    c = client(dash, "admin")
    csrf = csrf_of(c.get("/users").text)
    r = c.post("/users", data={"csrf": csrf, "name": "south", "role": "viewer", "clinic": "clinic-south",
                               "password": PASSWORD})
    assert r.status_code == 200 and "south" in r.text
    assert c.post("/users", data={"csrf": csrf, "name": "v2", "role": "viewer", "clinic": "",
                                  "password": PASSWORD}).status_code == 400
    s = client(dash, "south")
    assert "box-c01" in s.get("/devices").text and "box-a01" not in s.get("/devices").text
    assert c.post("/users/south/disable", data={"csrf": csrf}).status_code == 200
    assert s.get("/devices", follow_redirects=False).status_code == 303
    assert client(dash, "tech").get("/users").status_code == 403
    assert {e.action for e in dash.accounts.audit_log(user="admin")} >= {"user_add", "user_disable"}


# -- no personal data -----------------------------------------------------------------------------------
def test_no_page_shows_personal_data(dash, store):
    bodies = scan_bodies(store)
    secrets = {b.get(k) for b in bodies for k in ("card_ref", "id_ref")} - {None} | set(SECRET_MARKERS)
    assert len(secrets) > 100
    c = client(dash, "admin")
    pages = [c.get(p).text for p in ("/devices", "/throughput", "/audit", "/users", "/actions",
                                     *(f"/devices/{d}" for d in ("box-a01", "box-a02", "box-b02", "box-c01")))]
    assert all("EHC fleet" in p for p in pages)
    leaked = [s for s in secrets for p in pages if s in p]
    assert leaked == []


# -- the command line ---------------------------------------------------------------------------------------
def test_user_add_cli_reads_the_password_from_stdin(fleet_site, dash):
    cmd = [str(BIN / "ehc-central"), "user", "add", "mgr", "--role", "viewer", "--clinic", "clinic-east",
           "--config", str(fleet_site.config_path)]
    out = subprocess.run(cmd, input=PASSWORD + "\n", capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert PASSWORD not in out.stdout + out.stderr
    user = dash.accounts.user("mgr")
    assert (user.role, user.clinic) == ("viewer", "clinic-east") and check_password(PASSWORD, user.password_hash)
    assert "box-b01" in client(dash, "mgr").get("/devices").text
    bad = subprocess.run(cmd[:6] + cmd[8:], input=PASSWORD + "\n", capture_output=True, text=True)
    assert bad.returncode == 1 and "clinic" in bad.stderr
    short = subprocess.run(cmd, input="short\n", capture_output=True, text=True)
    assert short.returncode == 1 and "password" in short.stderr


def test_the_dashboard_tables_and_queries_on_postgresql(tmp_path, pg_url):
    from central.site import init_central

    pg_site = init_central(tmp_path / "pg-central", 1883, db_url=pg_url)
    store = open_store(pg_url)
    try:
        populate(pg_site, store, tmp_path / "boxes")
        d = Dashboard(pg_site.config, store, watch=False)
        d.accounts.add_user("north", "viewer", "clinic-north", hash_password(PASSWORD))
        d.accounts.add_user("north", "viewer", "clinic-north", hash_password(PASSWORD))  # upsert
        views = {v.device_id: v for v in d.fleet.devices()}
        assert views["box-a03"].state == "offline" and views["box-c01"].restarts_24h == 3
        assert views["box-b02"].gaps_24h == 2 and views["box-a02"].alerts[0].text == "printer: paper out"
        t = throughput(d.accounts, ["clinic-east"])
        clinics = [r[0] for r in store.execute("SELECT clinic FROM results WHERE kind = 'scan'").fetchall()]
        assert sum(t.totals("clinic-east").values()) == clinics.count("clinic-east")
        store.end_read()
        c = client(d, "north")
        assert "box-a01" in c.get("/devices").text and c.get("/devices/box-b01").status_code == 404
        assert [(e.user, e.action) for e in d.accounts.audit_log()] == [("north", "login")]
    finally:
        store.close()


# -- face templates --------------------------------------------------------------------------------------
def test_an_admin_revokes_a_face_template_audited_and_others_cannot(dash):
    sealed_part = {"v": 1, "alg": "x", "epk": "e", "ct": "c"}
    consent = {"by": "guardian", "guardian_ref": "cd" * 16, "guardian_check": None, "text": "face-consent-v1",
               "at_ms": 1}
    with dash.accounts.db() as store:
        store.put_face_template("ab" * 16, "clinic-east", "box-b01", "m1", "t", sealed_part, consent)
        store.put_face_template("ef" * 16, "clinic-north", "box-a01", "m2", "t", sealed_part, consent)
    dash.accounts.add_user("north-admin", "admin", "clinic-north", hash_password(PASSWORD))
    tech = client(dash, "tech")
    assert tech.get("/faces", follow_redirects=False).status_code in (302, 303, 403)
    with pytest.raises(NotAllowed):
        dash.actions.revoke_face(dash.accounts.user("tech"), "ab" * 16)
    scoped = client(dash, "north-admin")
    page_ = scoped.get("/faces")
    assert page_.status_code == 200 and "ef" * 16 in page_.text and "ab" * 16 not in page_.text
    r = scoped.post("/faces/revoke", data={"csrf": csrf_of(page_.text), "id_ref": "ab" * 16, "confirm": "abababab"})
    assert r.status_code == 404  # another clinic's template: not even shown
    admin = client(dash, "admin")
    page_ = admin.get("/faces")
    assert "ab" * 16 in page_.text and "guardian" in page_.text
    r = admin.post("/faces/revoke", data={"csrf": csrf_of(page_.text), "id_ref": "ab" * 16, "confirm": "wrong"})
    assert r.status_code == 200
    with dash.accounts.db() as store:
        assert store.face_template("ab" * 16)["revoked_at"] is None
    r = admin.post("/faces/revoke", data={"csrf": csrf_of(page_.text), "id_ref": "ab" * 16, "confirm": "abababab"})
    assert r.status_code == 200 and "revoked" in r.text
    with dash.accounts.db() as store:
        row = store.face_template("ab" * 16)
    assert row["revoked_at"] is not None and row["revoked_by"] == "admin" and row["sealed"] == {}
    entries = [(e.user, e.target, e.result) for e in dash.accounts.audit_log(action="face_revoke")]
    assert ("admin", "ab" * 16, "ok") in entries and ("north-admin", "ab" * 16, "refused") in entries
    assert ("tech", "ab" * 16, "refused") in entries
