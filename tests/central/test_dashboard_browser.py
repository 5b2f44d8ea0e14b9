"""The dashboard in a real headless browser (Debian's Chromium through Playwright), served over HTTPS by
uvicorn, watching a real Mosquitto: login, a device going offline without a reload, clinic isolation,
and a technician enrolling a box and sending a print test, all audited."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from central.dashboard.app import Dashboard
from central.dashboard.auth import hash_password
from central.site import add_device
from central.store import open_store
from drivers.print_queue import PrintQueue
from edge import config as edge_config
from edge.runtime import build_uplink
from mqtt import topics
from mqtt.client import connect_properties, new_client
from tests.support.dashboard_helpers import PASSWORD, browser_login, chromium_path, serving
from tests.support.mqtt_helpers import central_tap, wait_until

CHROMIUM = chromium_path()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                         "(apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

BOXES = (("box-n1", "clinic-north"), ("box-n2", "clinic-north"), ("box-e1", "clinic-east"))


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(ignore_https_errors=True)
    yield context.new_page()
    context.close()


@pytest.fixture
def fleet(site, store, broker, tmp_path):
    """Three registered boxes, a technician and a clinic-north viewer, a dashboard watching the broker."""
    paths = {d: add_device(site, store, d, c, tmp_path / d) for d, c in BOXES}
    own = open_store(site.config.database_url)
    dash = Dashboard(site.config, own).start()
    dash.accounts.add_user("tech", "technician", None, hash_password(PASSWORD))
    dash.accounts.add_user("north", "viewer", "clinic-north", hash_password(PASSWORD))
    assert dash.watcher.connected.wait(15), "the dashboard's watcher did not connect"
    with serving(dash) as base:
        yield dash, base, paths
    dash.stop()
    own.close()


class BoxConnection:
    """A box's MQTT session with its last will, like the uplink's; ``cut()`` drops it without a goodbye."""

    def __init__(self, site: Any, device: str, clinic: str, box_dir: Path) -> None:
        self.status = topics.device_topic(clinic, device, "status")
        self.connected = threading.Event()
        self.client = new_client(device, site.config.path(site.config.broker.ca), box_dir / "device.crt",
                                 box_dir / "device.key")
        self.client.will_set(self.status, b"offline", qos=1, retain=True)
        self.client.on_connect = lambda c, u, f, rc, p: self.connected.set()
        b = site.config.broker
        self.client.connect(b.host, b.port, keepalive=30, properties=connect_properties(0))
        self.client.loop_start()
        assert self.connected.wait(10)
        self.client.publish(self.status, b"online", qos=1, retain=True).wait_for_publish(10)

    def cut(self) -> None:
        """The power goes: the socket closes without DISCONNECT, so the broker publishes the will."""
        self.client.loop_stop()
        self.client.socket().close()


def test_login_then_a_device_going_offline_updates_the_page_without_reload(fleet, page, site):
    dash, base, paths = fleet
    box = BoxConnection(site, "box-n1", "clinic-north", paths["box-n1"].parent)
    wait_until(lambda: dash.fleet.device("box-n1").state == "online", what="box-n1 online")
    page.goto(base + "/devices")
    assert page.url == base + "/login"  # the login comes first
    page.fill("input[name=username]", "tech")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    assert "Wrong user name or password" in page.inner_text("#login-error")
    browser_login(page, base, "tech")
    assert page.inner_text("#who") == "tech"
    page.wait_for_selector("#live[data-status=on]")
    assert page.get_attribute("#dev-box-n1", "data-state") == "online"
    page.evaluate("window.sameDocument = true")
    box.cut()
    page.wait_for_selector("#dev-box-n1[data-state=offline]", timeout=30000)
    assert page.evaluate("window.sameDocument") is True  # changed in place, not reloaded
    assert page.inner_text("#dev-box-n1 .state") == "offline"
    assert (page.inner_text("#count-offline"), page.inner_text("#count-unknown")) == ("1", "2")  # 2 never connected
    assert [(e.user, e.action, e.result) for e in dash.accounts.audit_log(action="login")] == \
        [("tech", "login", "ok"), ("tech", "login", "refused")]


def test_a_viewer_sees_only_its_clinic_even_live(fleet, page, site):
    dash, base, paths = fleet
    browser_login(page, base, "north")
    page.wait_for_selector("#live[data-status=on]")
    rows = page.eval_on_selector_all("#devices tbody tr[data-device]", "rs => rs.map(r => r.dataset.device)")
    assert sorted(rows) == ["box-n1", "box-n2"]
    assert "box-e1" not in page.content() and "clinic-east" not in page.content()
    assert page.query_selector("nav a[href='/actions']") is None
    east = BoxConnection(site, "box-e1", "clinic-east", paths["box-e1"].parent)  # first the other clinic's news
    north = BoxConnection(site, "box-n2", "clinic-north", paths["box-n2"].parent)  # then its own
    page.wait_for_selector("#dev-box-n2[data-state=online]", timeout=30000)
    wait_until(lambda: dash.fleet.device("box-e1").state == "online", what="box-e1 online at the dashboard")
    assert page.query_selector("#dev-box-e1") is None and "box-e1" not in page.content()
    page.goto(base + "/devices/box-e1")
    assert "Not found" in page.inner_text("h1")
    for conn in (east, north):
        conn.cut()


def test_a_technician_enrolls_a_box_and_sends_a_print_test(fleet, page, site):
    dash, base, paths = fleet
    toml = paths["box-n2"]
    toml.write_text(toml.read_text() + '\n[printer]\nconnection = "serial:/dev/null"\n')
    cfg = edge_config.load(toml)
    spy = central_tap(site, "ehc-ingest-spy")
    spy.client.subscribe(f"{topics.PREFIX}/+/+/cmd/+", qos=1)
    wait_until(lambda: spy.suback, what="the spy's subscription")
    uplink = build_uplink(cfg).start()
    try:
        assert uplink.connected.wait(10)
        browser_login(page, base, "tech")
        page.click("nav a[href='/actions']")
        page.select_option("select[name=clinic]", "clinic-north")
        page.fill("input[name=serial]", "box-n9")
        page.click("#create-token")
        page.wait_for_selector("#token svg")
        assert page.is_visible("#token svg") and "box-n9" in page.inner_text("#token")
        page.goto(base + "/devices/box-n2")
        page.select_option("#command-name", "print_test")
        page.click("#send-command")
        page.wait_for_selector("#command-result", timeout=30000)
        assert "answered" in page.inner_text("#command-result")
        wait_until(lambda: any(t == topics.command("clinic-north", "box-n2", "print_test") for t, _ in spy.messages),
                   what="the print_test command on the broker")
        queue = PrintQueue(cfg.printer.queue_file(cfg.path(cfg.device.state_dir)))
        try:
            assert [j.kind for j in queue.jobs()] == ["selftest"]  # the box queued the test ticket
        finally:
            queue.close()
        page.click("nav a[href='/audit']")
        audit = page.inner_text("#audit")
        assert "token_create" in audit and "box-n9@clinic-north" in audit and "box-n2:print_test" in audit
    finally:
        uplink.stop()
        spy.close()
    done = {(e.action, e.target, e.result) for e in dash.accounts.audit_log(user="tech")}
    assert {("token_create", "box-n9@clinic-north", "ok"), ("command", "box-n2:print_test", "ok")} <= done
