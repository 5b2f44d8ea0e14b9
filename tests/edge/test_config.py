"""Strict configuration: edge.toml and central.toml load, and every mistake names its key.

A technician fixes a config from the error alone, so the tests assert on the message text: the dotted key
path and the reason. The ``check-config`` commands are run as the installed console scripts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from central import config as central_config
from edge import config as edge_config
from foundation.configbase import ConfigError, resolve_path

EDGE_TOML = """\
[device]
id = "box-0001"
clinic = "clinic-a"
key = "device.key"
cert = "device.crt"
state_dir = "state"

[mqtt]
host = "central.example"
port = 8883
ca = "ca.crt"
keepalive = 30
receipt_timeout = 12.5
reconnect_min = 1
reconnect_max = 60

[outbox]
path = "outbox.db"
max_bytes = 2097152
alert_fraction = 0.75

[station]
camera = "sim"
fps = 10.0

[logging]
level = "DEBUG"
"""

CENTRAL_TOML = """\
[broker]
host = "127.0.0.1"
port = 18883
ca = "pki/ca.crt"
cert = "pki/broker.crt"
key = "credential:broker-key"

[ingest]
workers = 4
batch_size = 200
batch_wait = 0.05

[database]
url = "sqlite:data/central.db"

[logging]
level = "WARNING"
"""


def write(tmp_path: Path, text: str, name: str = "cfg.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edit(text: str, section: str, line: str) -> str:
    """Insert ``line`` as the first entry of ``[section]``."""
    header = f"[{section}]\n"
    assert header in text
    return text.replace(header, header + line + "\n", 1)


def replace(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


# -- loading good files -------------------------------------------------------------------------------

def test_valid_edge_config_loads(tmp_path):
    cfg = edge_config.load(write(tmp_path, EDGE_TOML))
    assert cfg.device.id == "box-0001" and cfg.device.clinic == "clinic-a"
    assert cfg.mqtt.host == "central.example" and cfg.mqtt.port == 8883
    assert cfg.mqtt.receipt_timeout == 12.5
    assert cfg.outbox.max_bytes == 2 * 1024 * 1024 and cfg.outbox.alert_fraction == 0.75
    assert cfg.station.fps == 10.0
    assert cfg.logging.level == "DEBUG"
    # Relative paths are taken from the file's folder.
    assert cfg.path(cfg.device.key) == tmp_path / "device.key"
    assert cfg.path(cfg.mqtt.ca) == tmp_path / "ca.crt"
    assert cfg.outbox_path == tmp_path / "state" / "outbox.db"


def test_minimal_edge_config_takes_defaults(tmp_path):
    text = '[device]\nid = "b1"\nclinic = "c1"\nkey = "/k"\ncert = "/c"\n[mqtt]\nhost = "h"\nca = "/ca"\n'
    cfg = edge_config.load(write(tmp_path, text))
    assert cfg.mqtt.port == 8883
    assert cfg.outbox.max_bytes == 256 * 1024 * 1024
    assert cfg.path(cfg.device.key) == Path("/k")
    assert cfg.outbox_path == Path("/var/lib/ehc-edge/outbox.db")


def test_valid_central_config_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    cfg = central_config.load(write(tmp_path, CENTRAL_TOML))
    assert cfg.broker.port == 18883
    assert cfg.ingest.workers == 4 and cfg.ingest.batch_size == 200
    assert cfg.path(cfg.broker.ca) == tmp_path / "pki" / "ca.crt"
    assert cfg.path(cfg.broker.key) == tmp_path / "creds" / "broker-key"
    url = cfg.database_url
    assert url.startswith("sqlite:///")
    assert Path(url[len("sqlite://"):]) == (tmp_path / "data" / "central.db").resolve()


def test_empty_central_config_is_all_defaults(tmp_path):
    cfg = central_config.load(write(tmp_path, ""))
    assert cfg.broker.port == 8883
    assert cfg.database.url.startswith("sqlite:")
    assert cfg.ingest.client_id == "ehc-ingest"


# -- unknown keys -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("section, line, key", [
    ("device", "colour = 'red'", "device.colour"),
    ("mqtt", "keep_alive = 30", "mqtt.keep_alive"),
    ("outbox", "maxbytes = 5", "outbox.maxbytes"),
    ("station", "camara = 'sim'", "station.camara"),
    ("logging", "lvl = 'INFO'", "logging.lvl"),
])
def test_edge_unknown_key_in_a_section_is_named(tmp_path, section, line, key):
    with pytest.raises(ConfigError) as info:
        edge_config.load(write(tmp_path, edit(EDGE_TOML, section, line)))
    assert f"{key}: unknown key" in str(info.value)
    assert str(tmp_path / "cfg.toml") in str(info.value)


def test_edge_unknown_top_level_key_and_section(tmp_path):
    text = "debug = true\n" + EDGE_TOML + "\n[mqqt]\nhost = 'x'\n"
    with pytest.raises(ConfigError) as info:
        edge_config.load(write(tmp_path, text))
    msg = str(info.value)
    assert "debug: unknown key" in msg
    assert "mqqt: unknown key" in msg


def test_edge_unknown_key_in_a_nested_table(tmp_path):
    with pytest.raises(ConfigError, match=r"mqtt\.tls: unknown key"):
        edge_config.load(write(tmp_path, EDGE_TOML + "\n[mqtt.tls]\nverify = false\n"))


@pytest.mark.parametrize("section, line, key", [
    ("broker", "hots = 'x'", "broker.hots"),
    ("ingest", "worker = 2", "ingest.worker"),
    ("database", "uri = 'x'", "database.uri"),
    ("logging", "format = 'json'", "logging.format"),
])
def test_central_unknown_key_is_named(tmp_path, section, line, key):
    with pytest.raises(ConfigError) as info:
        central_config.load(write(tmp_path, edit(CENTRAL_TOML, section, line)))
    assert f"{key}: unknown key" in str(info.value)


def test_every_error_is_reported_not_just_the_first(tmp_path):
    text = edit(edit(EDGE_TOML, "device", "a = 1"), "outbox", "b = 2")
    text = replace(text, "port = 8883", "port = 70000")
    with pytest.raises(ConfigError) as info:
        edge_config.load(write(tmp_path, text))
    msg = str(info.value)
    assert "device.a: unknown key" in msg and "outbox.b: unknown key" in msg and "mqtt.port:" in msg


# -- bad values -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("old, new, key", [
    ("port = 8883", "port = 70000", "mqtt.port"),
    ("port = 8883", "port = 0", "mqtt.port"),
    ("port = 8883", 'port = "eighty"', "mqtt.port"),
    ("receipt_timeout = 12.5", "receipt_timeout = -1", "mqtt.receipt_timeout"),
    ("receipt_timeout = 12.5", "receipt_timeout = 0", "mqtt.receipt_timeout"),
    ("keepalive = 30", "keepalive = 2", "mqtt.keepalive"),
    ("max_bytes = 2097152", "max_bytes = 10", "outbox.max_bytes"),
    ("alert_fraction = 0.75", "alert_fraction = 1.5", "outbox.alert_fraction"),
    ('level = "DEBUG"', 'level = "LOUD"', "logging.level"),
    ('id = "box-0001"', 'id = "box/0001"', "device.id"),
    ('id = "box-0001"', 'id = "box-0001\\n"', "device.id"),
    ('clinic = "clinic-a"', 'clinic = "+"', "device.clinic"),
    ("fps = 10.0", "fps = -1.0", "station.fps"),
])
def test_edge_bad_value_names_the_key(tmp_path, old, new, key):
    with pytest.raises(ConfigError) as info:
        edge_config.load(write(tmp_path, replace(EDGE_TOML, old, new)))
    msg = str(info.value)
    assert f": {key}: " in msg, msg
    assert "unknown key" not in msg


def test_reconnect_max_below_min_is_named(tmp_path):
    text = replace(replace(EDGE_TOML, "reconnect_min = 1", "reconnect_min = 10"), "reconnect_max = 60",
                   "reconnect_max = 5")
    with pytest.raises(ConfigError) as info:
        edge_config.load(write(tmp_path, text))
    msg = str(info.value)
    assert ": mqtt: " in msg
    assert "reconnect_max" in msg and "reconnect_min" in msg


def test_missing_required_keys_are_named(tmp_path):
    text = replace(replace(EDGE_TOML, 'host = "central.example"\n', ""), 'cert = "device.crt"\n', "")
    with pytest.raises(ConfigError) as info:
        edge_config.load(write(tmp_path, text))
    msg = str(info.value)
    assert "mqtt.host: Field required" in msg
    assert "device.cert: Field required" in msg


def test_missing_section_is_named(tmp_path):
    head, _, _ = EDGE_TOML.partition("[mqtt]")
    with pytest.raises(ConfigError, match=r"\bmqtt: Field required"):
        edge_config.load(write(tmp_path, head))


def test_section_of_the_wrong_type_is_named(tmp_path):
    text = 'outbox = "big"\n' + EDGE_TOML.replace("[outbox]\n", "[unused_outbox]\n")
    with pytest.raises(ConfigError) as info:
        edge_config.load(write(tmp_path, text))
    msg = str(info.value)
    assert ": outbox: " in msg
    assert "unused_outbox: unknown key" in msg


@pytest.mark.parametrize("old, new, key", [
    ("port = 18883", "port = 70000", "broker.port"),
    ("workers = 4", "workers = 0", "ingest.workers"),
    ("workers = 4", "workers = 33", "ingest.workers"),
    ("batch_wait = 0.05", "batch_wait = -1", "ingest.batch_wait"),
    ('url = "sqlite:data/central.db"', 'url = "mysql://db"', "database.url"),
])
def test_central_bad_value_names_the_key(tmp_path, old, new, key):
    with pytest.raises(ConfigError) as info:
        central_config.load(write(tmp_path, replace(CENTRAL_TOML, old, new)))
    assert f": {key}: " in str(info.value)


def test_central_reserved_names_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"ingest\.share_group: "):
        central_config.load(write(tmp_path, edit(CENTRAL_TOML, "ingest", 'share_group = "a/b"')))


def test_config_is_immutable(tmp_path):
    cfg = edge_config.load(write(tmp_path, EDGE_TOML))
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.mqtt.port = 1  # type: ignore[misc]


# -- unreadable files ------------------------------------------------------------------------------------

def test_invalid_toml_gives_the_position(tmp_path):
    path = write(tmp_path, EDGE_TOML + "\n[mqtt\n")
    with pytest.raises(ConfigError) as info:
        edge_config.load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: not valid TOML")
    assert "line" in msg


def test_duplicate_key_is_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        central_config.load(write(tmp_path, edit(CENTRAL_TOML, "broker", "port = 1")))


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="file not found") as info:
        edge_config.load(path)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match="file not found"):
        central_config.load(path)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        edge_config.load(tmp_path)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(EDGE_TOML.replace("central.example", "zentrale-\xfc").encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot read"):
        edge_config.load(path)


# -- credentials -------------------------------------------------------------------------------------------

def test_credential_resolves_under_credentials_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "creds"))
    assert resolve_path("credential:device-key") == tmp_path / "creds" / "device-key"
    # A base folder does not apply to credentials.
    assert resolve_path("credential:device-key", tmp_path / "elsewhere") == tmp_path / "creds" / "device-key"


def test_credential_in_edge_config(tmp_path, monkeypatch):
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/ehc-uplink.service")
    cfg = edge_config.load(write(tmp_path, replace(EDGE_TOML, 'key = "device.key"', 'key = "credential:device.key"')))
    assert cfg.path(cfg.device.key) == Path("/run/credentials/ehc-uplink.service/device.key")


def test_credential_without_credentials_directory(monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match=r"credential:device-key: \$CREDENTIALS_DIRECTORY is not set"):
        resolve_path("credential:device-key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "")
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY is not set"):
        resolve_path("credential:device-key")


@pytest.mark.parametrize("name", ["a/b", "../etc/shadow", "/abs", "", "..", "."])
def test_credential_name_must_be_a_plain_file_name(tmp_path, monkeypatch, name):
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(ConfigError, match="plain file name"):
        resolve_path(f"credential:{name}")


def test_plain_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_path("~/k.pem") == tmp_path / "k.pem"
    assert resolve_path("rel/k.pem", Path("/etc/ehc-edge")) == Path("/etc/ehc-edge/rel/k.pem")
    assert resolve_path("/abs/k.pem", Path("/etc/ehc-edge")) == Path("/abs/k.pem")


# -- check-config commands ---------------------------------------------------------------------------------

def run_cli(name: str, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / name
    assert exe.exists(), f"{exe} is not installed"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)


def test_ehc_edge_check_config_good_file(tmp_path):
    path = write(tmp_path, EDGE_TOML)
    proc = run_cli("ehc-edge", "check-config", str(path))
    assert proc.returncode == 0, proc.stderr
    assert f"{path}: ok" in proc.stdout


def test_ehc_edge_check_config_bad_file(tmp_path):
    path = write(tmp_path, replace(edit(EDGE_TOML, "mqtt", "keep_alive = 30"), "port = 8883", "port = 70000"))
    proc = run_cli("ehc-edge", "check-config", str(path))
    assert proc.returncode == 2
    assert "mqtt.keep_alive: unknown key" in proc.stderr
    assert "mqtt.port:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "ok" not in proc.stdout


def test_ehc_edge_check_config_missing_file(tmp_path):
    proc = run_cli("ehc-edge", "check-config", str(tmp_path / "nope.toml"))
    assert proc.returncode == 2
    assert "file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_ehc_central_check_config_good_file(tmp_path):
    path = write(tmp_path, CENTRAL_TOML)
    proc = run_cli("ehc-central", "check-config", str(path))
    assert proc.returncode == 0, proc.stderr
    assert f"{path}: ok" in proc.stdout


def test_ehc_central_check_config_bad_file(tmp_path):
    path = write(tmp_path, edit(CENTRAL_TOML, "ingest", "batchsize = 10"))
    proc = run_cli("ehc-central", "check-config", str(path))
    assert proc.returncode == 2
    assert "ingest.batchsize: unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_types_are_not_coerced(tmp_path):
    """TOML has real types: a quoted port or a boolean where a number belongs is a mistake to report."""
    for bad, key in (('port = "8883"', "mqtt.port"), ("port = true", "mqtt.port"),
                     ('keepalive = 30.5', "mqtt.keepalive")):
        path = tmp_path / "edge.toml"
        path.write_text('[device]\nid = "box-1"\nclinic = "c"\nkey = "k"\ncert = "c"\n'
                        f'[mqtt]\nhost = "h"\nca = "ca.crt"\n{bad}\n')
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            edge_config.load(path)


def test_check_config_keys_reports_a_key_that_does_not_match_the_certificate(tmp_path):
    from central.broker import free_port
    from central.site import add_device, init_central
    from central.store import open_store
    from foundation import keyfiles

    site = init_central(tmp_path / "central", free_port())
    path = add_device(site, open_store(site.config.database_url), "box-1", "clinic-a", tmp_path / "box")
    exe = str(Path(sys.executable).parent / "ehc-edge")
    ok = subprocess.run([exe, "check-config", "--keys", str(path)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "box" / "device.key").unlink()
    keyfiles.write_private_key(tmp_path / "box" / "device.key", keyfiles.generate_key())
    bad = subprocess.run([exe, "check-config", "--keys", str(path)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "does not match the device certificate" in bad.stderr and "Traceback" not in bad.stderr
