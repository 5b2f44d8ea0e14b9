"""Shared fixtures: a generated site, a real Mosquitto broker on a free loopback port, stores."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from mqtt.central.broker import BrokerProcess, free_port, write_config
from mqtt.central.store import SqlStore, open_store
from provisioning.site import Site, init_central

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("EHC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def shared_dir() -> Path:
    """The shared test-data folder (``$EHC_SHARED_DIR``, default ``../shared``)."""
    return Path(os.environ.get("EHC_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture
def site(tmp_path: Path) -> Site:
    """A central site (CA, broker and ingest certificates, central.toml) with SQLite."""
    return init_central(tmp_path / "central", free_port())


@pytest.fixture
def store(site: Site) -> Iterator[SqlStore]:
    s = open_store(site.config.database_url)
    yield s
    s.close()


@pytest.fixture
def broker(site: Site, tmp_path: Path) -> Iterator[BrokerProcess]:
    """A real mosquitto with the generated TLS/ACL config."""
    log = tmp_path / "mosquitto.log"
    conf = write_config(site.config, log)
    b = BrokerProcess(conf, site.config.broker.host, site.config.broker.port, log)
    b.start()
    yield b
    b.kill()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the machine's server, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    name = f"ehc_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL} (set EHC_TEST_PG_URL): {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
