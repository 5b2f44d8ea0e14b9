"""A passport under the camera at a check-in desk: read in the background, checked, pseudonymised, recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.config import EdgeConfig
from edge.identity import pseudonym
from edge.runtime import build_station
from tests.conftest import shared_dir
from tests.hw_sim.camera import MemoryCamera
from tests.hw_sim.documents import sample_documents
from tests.support.flow_helpers import stored
from tests.support.mqtt_helpers import wait_until

TESSDATA = shared_dir() / "models" / "tessdata"


def test_a_passport_is_checked_in_once(tmp_path: Path, key, box) -> None:
    if not (TESSDATA / "mrz.traineddata").exists():
        pytest.skip(f"MRZ model folder not found: {TESSDATA} (set EHC_SHARED_DIR)")
    (tmp_path / "pseudonym.key").write_bytes(b"q" * 32)
    cfg = EdgeConfig.model_validate({
        "device": {"id": "box-1", "clinic": "clinic-a", "key": "k.pem", "cert": "c.pem", "state_dir": str(tmp_path)},
        "mqtt": {"host": "localhost", "ca": "ca.pem"},
        "station": {"document_every": 2},
        "identity": {"pseudonym_key": str(tmp_path / "pseudonym.key")},
        "mrz": {"tessdata": str(TESSDATA), "cache_dir": str(tmp_path / "cache")},
    })
    (doc,) = list(sample_documents(1, seed=5))
    parts = build_station(cfg, box, source=MemoryCamera([doc.frame] * 8))
    parts.runner.start()
    try:
        parts.station.run()
        assert parts.documents.wait_idle(30)
        wait_until(lambda: len(stored(box, key)) == 1, 30, "the passport's result")
        assert parts.runner.wait_idle(10)
    finally:
        parts.close()
    (msg,) = stored(box, key)  # one presentation, one result, although several frames were read
    body = msg.body
    assert body["kind"] == "mrz" and body["document"].startswith("mrz_")
    number = doc.lines[0][5:14].rstrip("<") if doc.format.value == "TD1" else doc.lines[1][:9].rstrip("<")
    assert body["id_ref"] == pseudonym(b"q" * 32, body["document"], number)
    assert number not in str(body) and parts.documents.found == 1


def test_unconfirmed_zones_wait_for_a_second_identical_read() -> None:
    from types import SimpleNamespace

    from edge.documents.worker import DocumentWorker

    class Reader:
        model = "mrz"

        def __init__(self, results):
            self.results = list(results)

        def read(self, frame):
            return self.results.pop(0)

    good = SimpleNamespace(valid=True, lines=("P<UTOA", "1"))
    bad, bad2 = SimpleNamespace(valid=False, lines=("P<UTOB", "2")), SimpleNamespace(valid=False, lines=("P<UTOB", "3"))
    seen: list = []
    worker = DocumentWorker(Reader([bad, bad2, good, bad2, bad2]), seen.append, every=1)
    frame = np.zeros((8, 8), dtype=np.uint8)
    for _ in range(5):
        worker._read(frame)
    assert seen == [good, bad2]  # an invalid zone only once read identically twice in a row
    eng = DocumentWorker(Reader([good, good]), seen.append, every=1)
    eng.reader.model = "eng"
    eng._read(frame)
    assert seen == [good, bad2]
    eng._read(frame)
    assert seen == [good, bad2, good]
