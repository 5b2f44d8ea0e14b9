"""The README's first command: the simulated clinic station end to end."""

from __future__ import annotations

import json

from demo.site import run_demo
from edge.sources import simulated_queue


def test_demo_delivers_every_scan_and_refuses_the_forgery(tmp_path, capsys):
    assert run_demo(frames=48, workdir=tmp_path) == 0
    out = capsys.readouterr().out
    assert "demo: OK" in out
    assert "stored at central (verified)  12  (green 8, yellow 1, red 3)" in out
    assert "forged message refused        {'bad_signature': 1}" in out
    sample = json.loads(out.split("a stored result (no raw card token leaves the box): ", 1)[1].splitlines()[0])
    assert sample["kind"] == "scan" and len(sample["body"]["card_ref"]) == 16
    # The raw card tokens the people showed appear nowhere in the central database files.
    shown = [p[0] for p in simulated_queue(12, seed=7, odd_every=6, shown={2: "x", 8: "y"}).payloads
             if p and len(p[0]) > 64]
    assert len(shown) == 8
    import sqlite3

    db = sqlite3.connect(tmp_path / "central" / "central.db")
    stored = "\n".join(r[0] for r in db.execute("SELECT body_json FROM results")).encode()
    assert stored.count(b'"verified":true') >= 9  # tokens answered online, EHC1 cards checked offline
    assert stored and not [t for t in shown if t[:64].encode() in stored or t[:64].lower().encode() in stored]
    assert "王小明".encode() not in stored and "李四".encode() not in stored  # EHC1 holders' names stay on the box
    assert "verified offline" in out
