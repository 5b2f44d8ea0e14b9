"""Run the dashboard: uvicorn over HTTPS with a certificate from the site CA (the broker's by default)."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from central import config as central_config
from central.config import CentralConfig
from central.dashboard.app import Dashboard, build_app
from central.store import open_store
from foundation import sdnotify

logger = logging.getLogger(__name__)


def make_server(cfg: CentralConfig, dash: Dashboard, port: int | None = None) -> uvicorn.Server:
    """A uvicorn server for ``dash`` on ``dashboard.bind:port`` with TLS (only HTTPS is served)."""
    d = cfg.dashboard
    config = uvicorn.Config(build_app(dash), host=d.bind, port=port or d.port,
                            ssl_certfile=str(cfg.path(d.cert or cfg.broker.cert)),
                            ssl_keyfile=str(cfg.path(d.key or cfg.broker.key)),
                            log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3,
                            proxy_headers=False, server_header=False)
    return uvicorn.Server(config)


def run(config_path: str | Path) -> int:
    """``ehc-central dashboard``: serve until SIGTERM / SIGINT."""
    cfg = central_config.load(config_path)
    store = open_store(cfg.database_url)
    dash = Dashboard(cfg, store).start()
    server = make_server(cfg, dash)
    sdnotify.ready(f"dashboard on https://{cfg.dashboard.bind}:{cfg.dashboard.port}")
    logger.info("dashboard on https://%s:%d", cfg.dashboard.bind, cfg.dashboard.port)
    try:
        server.run()
    finally:
        dash.stop()
        store.close()
    return 0
