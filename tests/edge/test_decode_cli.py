"""``ehc-edge decode``: one JSON line per image, exit 0 when nothing is found, 1 for unreadable files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.hw_sim.camera import Scene, health_card_tokens, render_qr_frame


def _decode(*args: str) -> tuple[int, list[dict]]:
    done = subprocess.run([sys.executable, "-m", "edge.cli", "decode", *args], capture_output=True, text=True,
                          timeout=120)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def test_decode_prints_codes_positions_and_time(tmp_path: Path) -> None:
    token = health_card_tokens(1, seed=1)[0]
    qr = tmp_path / "qr.png"
    Image.fromarray(render_qr_frame(token, Scene(size=200, dx=50), grayscale=True)).save(qr)
    tube = tmp_path / "tube.jpg"
    Image.fromarray(render_qr_frame("TUBE-42424242", Scene(size=220), grayscale=True, symbology="Code128")).save(
        tube, quality=92)
    empty = tmp_path / "empty.png"
    Image.fromarray(np.full((120, 160), 200, dtype=np.uint8)).save(empty)

    rc, lines = _decode(str(qr), str(tube), str(empty))
    assert rc == 0
    assert [ln["file"] for ln in lines] == [str(qr), str(tube), str(empty)]
    (code,) = lines[0]["codes"]
    assert code["text"] == token and code["format"] == "QRCode" and len(code["position"]) == 4
    xs = [p[0] for p in code["position"]]
    assert 320 + 50 - 110 < min(xs) < max(xs) < 320 + 50 + 110
    assert [(c["text"], c["format"]) for c in lines[1]["codes"]] == [("TUBE-42424242", "Code128")]
    assert lines[2]["codes"] == [] and all(ln["ms"] >= 0 for ln in lines)


def test_decode_folders_formats_and_unreadable_files(tmp_path: Path) -> None:
    Image.fromarray(render_qr_frame("TUBE-42424242", Scene(size=220), grayscale=True, symbology="Code128")).save(
        tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not an image")
    rc, lines = _decode(str(tmp_path), "--formats", "QRCode")
    assert rc == 1
    assert lines[0]["codes"] == []  # Code 128 not asked for
    assert "cannot read image" in lines[1]["error"]
