"""The rotate_logs remote command: the uplink's request, the root helper's rotation, the answer."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from central.commands import CommandClient
from central.site import add_device
from edge import config as edge_config
from edge.appliance import logrotate
from edge.runtime import build_uplink
from tests.support.mqtt_helpers import wait_until

BIN = Path(sys.executable).parent


def fake_journalctl(tmp_path: Path, exit_code: int = 0) -> tuple[Path, Path]:
    """A journalctl stand-in that records its arguments (the real one needs root and a running journald)."""
    calls = tmp_path / "journalctl.calls"
    script = tmp_path / "journalctl"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\nexit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, calls


def serve_when_requested(state_dir: Path, journalctl: Path) -> threading.Thread:
    """What ehc-logrotate.path + .service do: wait for the request file, then serve it."""
    def run() -> None:
        wait_until(lambda: (state_dir / logrotate.REQUEST_FILE).exists(), 10, "rotation request")
        logrotate.serve_request(state_dir, journalctl=str(journalctl))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_request_is_served_and_answered_with_its_result(tmp_path: Path) -> None:
    journalctl, calls = fake_journalctl(tmp_path)
    helper = serve_when_requested(tmp_path, journalctl)
    answer = logrotate.request_rotation(tmp_path, {"keep_days": 7}, wait_s=10)
    helper.join(5)
    assert answer["ok"] is True and answer["rotated"] and answer["vacuumed"] and answer["keep_days"] == 7
    assert answer["id"] == answer["request"]
    assert calls.read_text().splitlines() == ["--rotate", "--vacuum-time=7d"]
    assert not (tmp_path / logrotate.REQUEST_FILE).exists()
    assert logrotate.read_result(tmp_path)["id"] == answer["request"]


def test_unserved_request_answers_pending_and_stays_for_the_helper(tmp_path: Path) -> None:
    answer = logrotate.request_rotation(tmp_path, {}, wait_s=0.1)
    assert answer["pending"] is True and answer["keep_days"] == logrotate.DEFAULT_KEEP_DAYS
    assert logrotate.read_request(tmp_path).id == answer["request"]
    # an older result for another request is not taken for this one
    journalctl, _ = fake_journalctl(tmp_path)
    logrotate.serve_request(tmp_path, journalctl=str(journalctl))
    again = logrotate.request_rotation(tmp_path, {}, wait_s=0.1)
    assert again["pending"] is True and again["request"] != answer["request"]


@pytest.mark.parametrize("bad", [0, 366, -1, "7", 7.5, True, [7]])
def test_bad_keep_days_is_refused_without_a_request(tmp_path: Path, bad: object) -> None:
    answer = logrotate.request_rotation(tmp_path, {"keep_days": bad}, wait_s=0)
    assert answer["ok"] is False and answer["error"] == "bad_arguments" and "keep_days" in answer["detail"]
    assert not (tmp_path / logrotate.REQUEST_FILE).exists()


@pytest.mark.parametrize("content, reason", [
    (b"not json", "not JSON"),
    (b"x" * 2000, "too large"),
    (json.dumps({"id": "a", "keep_days": 3, "cmd": "rm -rf /"}).encode(), "exactly id and keep_days"),
    (json.dumps({"id": "../../etc", "keep_days": 3}).encode(), "letters or digits"),
    (json.dumps({"id": "a", "keep_days": 9999}).encode(), "keep_days"),
    (json.dumps([1, 2]).encode(), "exactly id and keep_days"),
])
def test_root_helper_refuses_a_malformed_request_and_runs_nothing(tmp_path: Path, content: bytes, reason: str) -> None:
    (tmp_path / logrotate.REQUEST_FILE).write_bytes(content)
    journalctl, calls = fake_journalctl(tmp_path)
    result = logrotate.serve_request(tmp_path, journalctl=str(journalctl))
    assert result.ok is False and reason in (result.error or "")
    assert not calls.exists()
    assert not (tmp_path / logrotate.REQUEST_FILE).exists()


def test_failing_journalctl_is_reported_and_the_cli_exits_non_zero(tmp_path: Path) -> None:
    journalctl, calls = fake_journalctl(tmp_path, exit_code=1)
    out = subprocess.run([str(BIN / "ehc-edge"), "logs", "rotate", "--keep-days", "3", "--journalctl", str(journalctl)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    result = json.loads(out.stdout)
    assert result["ok"] is False and result["rotated"] is False and result["error"] == "journalctl_exit_1"
    assert calls.read_text().splitlines() == ["--rotate", "--vacuum-time=3d"]
    missing = logrotate.rotate(3, journalctl=str(tmp_path / "nowhere"))
    assert missing.ok is False and missing.error == "journalctl_missing"


def test_cli_from_request_serves_the_uplinks_request(tmp_path: Path) -> None:
    cfg_file = tmp_path / "edge.toml"
    cfg_file.write_text(f'[device]\nid = "box-1"\nclinic = "clinic-a"\nkey = "k.pem"\ncert = "c.pem"\n'
                        f'state_dir = "{tmp_path}"\n[mqtt]\nhost = "localhost"\nca = "ca.pem"\n')
    request = logrotate.write_request(tmp_path, 30)
    journalctl, calls = fake_journalctl(tmp_path)
    out = subprocess.run([str(BIN / "ehc-edge"), "logs", "rotate", "--from-request", "--config", str(cfg_file)],
                         capture_output=True, text=True, env={**os.environ, "EHC_JOURNALCTL": str(journalctl)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["id"] == request.id
    assert calls.read_text().splitlines() == ["--rotate", "--vacuum-time=30d"]


def test_rotate_logs_over_mqtt_reaches_the_helper_and_answers(site, store, broker, tmp_path: Path) -> None:
    cfg = edge_config.load(add_device(site, store, "box-1", "clinic-a", tmp_path / "box"))
    state_dir = cfg.path(cfg.device.state_dir)
    journalctl, calls = fake_journalctl(tmp_path)
    up = build_uplink(cfg).start()
    try:
        assert up.connected.wait(10)
        helper = serve_when_requested(state_dir, journalctl)
        with CommandClient(site.config, store) as client:
            answer = client.request("box-1", "rotate_logs", {"keep_days": 2}, timeout=15)
        helper.join(5)
    finally:
        up.stop()
    assert answer["ok"] is True and answer["keep_days"] == 2 and answer["id"] == answer["request"]
    assert calls.read_text().splitlines() == ["--rotate", "--vacuum-time=2d"]
