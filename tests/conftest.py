"""Shared fixtures: a generated site, a real Mosquitto broker on a free loopback port, stores."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from central.broker import BrokerProcess, free_port, write_config
from central.site import Site, init_central
from central.store import SqlStore, open_store

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("EHC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# Hypothesis profiles: "ci" (the default) is the bounded run of every test suite run; "long" is the on-demand
# fuzzing run (scripts/fuzz.sh). Fuzz budgets in tests/fuzz scale with max_examples (tests/fuzz/harness.py).
settings.register_profile("ci", max_examples=100, print_blob=True)
settings.register_profile("long", max_examples=2_000, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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


def _can_connect(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
        return True
    except psycopg.OperationalError:
        return False


class PrivateCluster:
    """A throw-away PostgreSQL cluster (initdb + pg_ctl) for machines without a usable server."""

    def __init__(self, root: Path) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins:
            raise FileNotFoundError("no PostgreSQL server binaries (Debian package 'postgresql')")
        self.bin = bins[-1].parent
        self.root, self.port = root, free_port()
        self.data = root / "data"
        self.user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            import pwd

            self.user = ["runuser", "-u", "postgres", "--"]
            os.chown(root, pwd.getpwnam("postgres").pw_uid, -1)

    def _run(self, *args: str) -> None:
        subprocess.run([*self.user, *args], check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        self._run(str(self.bin / "initdb"), "-A", "trust", "-U", "postgres", "-D", str(self.data))
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.root / "pg.log"), "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """The machine's PostgreSQL ($EHC_TEST_PG_URL or 127.0.0.1:5432), else a private cluster for the session."""
    if _can_connect(PG_ADMIN_URL):
        yield PG_ADMIN_URL
        return
    # Not under pytest's tmp folder: that one is private to the current user, and the server may run
    # as 'postgres'.
    root = Path(tempfile.mkdtemp(prefix="ehc-test-pg-"))
    cluster = PrivateCluster(root)
    try:
        url = cluster.start()
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.decode(errors="replace")[-500:] if isinstance(exc, subprocess.CalledProcessError) else exc
        raise RuntimeError(f"PostgreSQL not reachable at {PG_ADMIN_URL} and no private cluster: {detail}") from exc
    try:
        yield url
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    import psycopg

    name = f"ehc_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(pg_admin_url, autocommit=True, connect_timeout=5)
    admin.execute(f'CREATE DATABASE "{name}"')
    base = pg_admin_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def key():
    """A box's P-256 signing key."""
    from foundation.keyfiles import generate_key

    return generate_key()


@pytest.fixture
def box(tmp_path: Path, key):
    """A started signed outbox for box-1 at clinic-a (flows and station tests)."""
    from tests.support.flow_helpers import open_box

    b = open_box(tmp_path / "o.db", key)
    yield b
    b.close()
