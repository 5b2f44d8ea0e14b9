"""Render the dashboard screenshots in ``docs/img/`` from a simulated fleet (run on demand).

    .venv/bin/python -m tests.support.render_dashboard [--out docs/img]

A site with a few clinics and boxes in various states (tests/support/fleet.py) is served over HTTPS by a
real uvicorn, and Debian's Chromium (headless, through Playwright) logs in and takes the pictures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from central.broker import free_port
from central.dashboard.app import Dashboard
from central.dashboard.auth import hash_password
from central.site import init_central
from central.store import open_store
from tests.support.dashboard_helpers import PASSWORD, browser_login, chromium_path, serving
from tests.support.fleet import populate

REPO = Path(__file__).resolve().parents[2]


def render(out: Path) -> list[Path]:
    """Write dashboard-devices.png, dashboard-throughput.png and dashboard-actions.png into ``out``."""
    from playwright.sync_api import sync_playwright

    chromium = chromium_path()
    if chromium is None:
        raise SystemExit("render_dashboard: needs Debian's chromium (apt-get install chromium)")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ehc-dash-") as tmp:
        root = Path(tmp)
        site = init_central(root / "central", free_port())
        store = open_store(site.config.database_url)
        populate(site, store, root / "boxes")
        dash = Dashboard(site.config, store, watch=False)
        dash.accounts.add_user("li.technician", "technician", None, hash_password(PASSWORD))
        written = []
        with serving(dash) as base, sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_context(ignore_https_errors=True, viewport={"width": 1360, "height": 760},
                                       device_scale_factor=1).new_page()
            browser_login(page, base, "li.technician")
            page.wait_for_selector("#live[data-status=on]")
            written.append(out / "dashboard-devices.png")
            page.screenshot(path=str(written[-1]), full_page=True)
            page.goto(base + "/throughput")
            written.append(out / "dashboard-throughput.png")
            page.screenshot(path=str(written[-1]), full_page=True)
            page.goto(base + "/actions")
            page.fill("input[name=serial]", "box-a04")
            page.click("#create-token")
            page.wait_for_selector("#token svg")
            written.append(out / "dashboard-actions.png")
            page.screenshot(path=str(written[-1]), full_page=True)
            page.goto(base + "/devices/box-a02")
            written.append(out / "dashboard-device.png")
            page.screenshot(path=str(written[-1]), full_page=True)
            browser.close()
        store.close()
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "docs" / "img"))
    args = p.parse_args(argv)
    for path in render(Path(args.out)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
