"""Helpers for the dashboard tests: a real uvicorn over HTTPS in a thread, logins, a headless Chromium."""

from __future__ import annotations

import contextlib
import re
import shutil
import threading
from collections.abc import Iterator

from central.broker import free_port, wait_for_port
from central.dashboard.app import Dashboard
from central.dashboard.server import make_server

PASSWORD = "correct horse battery"
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    """Debian's Chromium, or None when it is not installed."""
    for path in CHROMIUM_PATHS:
        if shutil.which(path):
            return path
    return None


@contextlib.contextmanager
def serving(dash: Dashboard) -> Iterator[str]:
    """Serve ``dash`` over HTTPS on a free loopback port; yields the base URL."""
    port = free_port()
    server = make_server(dash.cfg, dash, port)
    server.config.host = "127.0.0.1"
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    try:
        wait_for_port("127.0.0.1", port, 15)
        yield f"https://localhost:{port}"
    finally:
        server.should_exit = True
        dash.broadcaster.close()
        thread.join(15)


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def login(client, name: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    """Log a TestClient in; returns the response to the login POST."""
    page = client.get("/login")
    return client.post("/login", data={"csrf": csrf_of(page.text), "username": name, "password": password},
                       follow_redirects=False)


def browser_login(page, base: str, name: str, password: str = PASSWORD) -> None:  # type: ignore[no-untyped-def]
    """Log a Playwright page in through the login form."""
    page.goto(base + "/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/devices")
