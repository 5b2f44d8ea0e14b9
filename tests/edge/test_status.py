"""The station status file that feeds the uplink's health report."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edge.station_status import read_status, write_status


def test_status_round_trip_and_alerts(tmp_path: Path) -> None:
    path = tmp_path / "station-status.json"
    assert read_status(path, 15) == (None, [])
    write_status(path, {"camera": "running", "scans": 3})
    status, alerts = read_status(path, 15)
    assert status is not None and status["scans"] == 3 and alerts == []
    write_status(path, {"camera": "error"})
    assert read_status(path, 15)[1] == ["camera_error"]
    data = json.loads(path.read_text())
    data["written_at"] = time.time() - 60
    path.write_text(json.dumps(data))
    assert read_status(path, 15)[1] == ["station_down"]
    path.write_text("{broken")
    assert read_status(path, 15) == (None, ["station_down"])
