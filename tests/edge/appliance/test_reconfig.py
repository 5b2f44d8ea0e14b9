"""Remote config reload: validated, identity kept, rolled back when the station does not come up."""

from __future__ import annotations

import tomllib
from pathlib import Path

import tomli_w

from central.site import add_device
from edge.appliance.reconfig import command_handlers, reload_config


def _box(site, store, tmp_path) -> tuple[Path, dict]:
    path = add_device(site, store, "box-0001", "clinic-a", tmp_path / "box")
    return path, tomllib.loads(path.read_text())


def test_a_valid_change_is_kept(site, store, tmp_path) -> None:
    path, data = _box(site, store, tmp_path)
    data["station"] = {"flow": "masstest", "pool_capacity": 20}
    restarts: list[str] = []
    answer = command_handlers(path, lambda: restarts.append("station") or True)["reload_config"](
        {"config": tomli_w.dumps(data)})
    assert answer["ok"] and len(answer["revision"]) == 12 and restarts == ["station"]
    assert tomllib.loads(path.read_text())["station"]["pool_capacity"] == 20
    assert (path.parent / "edge.toml.previous").exists()


def test_invalid_or_identity_changes_are_refused_untouched(site, store, tmp_path) -> None:
    path, data = _box(site, store, tmp_path)
    before = path.read_text()
    bad = dict(data, station={"flow": "juggling"})
    assert reload_config(path, tomli_w.dumps(bad), lambda: True)["error"] == "invalid"
    moved = dict(data, device=dict(data["device"], clinic="clinic-b"))
    answer = reload_config(path, tomli_w.dumps(moved), lambda: True)
    assert answer == {"ok": False, "error": "identity_change", "fields": ["clinic"]}
    assert reload_config(path, "", lambda: True)["error"] == "no_config"
    assert path.read_text() == before


def test_a_station_that_does_not_come_up_is_rolled_back(site, store, tmp_path) -> None:
    path, data = _box(site, store, tmp_path)
    before = path.read_text()
    data["station"] = {"camera": "/dev/video9"}
    outcomes = iter([False, True])  # the new config fails to start; the old one starts again
    answer = reload_config(path, tomli_w.dumps(data), lambda: next(outcomes))
    assert answer["ok"] is False and answer["rolled_back"] and answer["error"] == "not_ready"
    assert path.read_text() == before
