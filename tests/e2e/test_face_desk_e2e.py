"""The identity desk end to end: simulated camera and card reader, the station, the uplink, a real Mosquitto,
the central ingest and store: enrolment with consent, verification against the enrolled template and against a
passport's portrait, a still photo refused, clinic scope, revocation, and hostile face results held."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from PIL import Image

from central.ingest import Ingest
from central.site import add_device
from central.store import open_store
from edge import config as edge_config
from edge.boxfiles import load_identity, open_outbox
from edge.feedback import Signal
from edge.flows.base import ButtonPress, IdPresented
from edge.identity import from_id_card, pseudonym
from edge.runtime import build_lookup, build_station
from mqtt import face
from tests.conftest import shared_dir
from tests.hw_sim.faces import DeskCamera, FaceAnimator
from tests.hw_sim.idcard_reader import sample_cards
from tests.support.flow_helpers import RecordingFeedback, RecordingTickets
from tests.support.mqtt_helpers import wait_until

FACES = shared_dir() / "testdata" / "faces"
TESSDATA = shared_dir() / "models" / "tessdata"
MINIFAS = shared_dir() / "models" / "minifasnet"
pytestmark = pytest.mark.skipif(not FACES.is_dir(), reason=f"shared test data folder not found: {FACES}")
TODAY = dt.date(2026, 11, 25)


def _photo(name: str) -> Image.Image:
    with Image.open(FACES / name) as im:
        return im.convert("RGB")


@pytest.fixture(scope="module")
def person():
    from edge.face.pipeline import FacePipeline

    return FaceAnimator(_photo("obama3.jpg"), FacePipeline(), seed=21)


@pytest.fixture
def running(site, store, broker):
    ingest = Ingest(site.config, open_store(site.config.database_url)).start()
    assert ingest.connected.wait(10)
    yield ingest
    ingest.stop()


def _config(site, store, tmp_path: Path, device: str, clinic: str, **face_settings) -> edge_config.EdgeConfig:
    cfg = edge_config.load(add_device(site, store, device, clinic, tmp_path / device))
    face_cfg = {"time_limit": 20.0, **face_settings}
    if MINIFAS.is_dir():
        face_cfg.setdefault("model_dir", str(MINIFAS))
    station = cfg.station.model_copy(update={"flow": "identity", "document_every": 1, "lookup_timeout": 5.0})
    return cfg.model_copy(update={"station": station, "face": cfg.face.model_copy(update=face_cfg)})


@pytest.fixture
def uplinks():
    from edge.runtime import build_uplink

    started = []

    def start(cfg):
        up = build_uplink(cfg).start()
        assert up.connected.wait(10)
        started.append(up)
        return up
    yield start
    for up in started:
        up.stop()


class Desk:
    """A station built from the configuration, its camera showing ``person`` (acting as asked, or not)."""

    def __init__(self, cfg, person, act: str = "answer", document=None) -> None:
        self.outbox = open_outbox(cfg, load_identity(cfg))
        self.outbox.start_boot()
        self.lights, self.tickets = RecordingFeedback(), RecordingTickets()
        holder: dict = {}
        self.camera = DeskCamera(person, lambda: holder["flow"].asked(), lambda: holder["tap"].capturing, act=act,
                                 document=document, limit=10**6, idle=0.02)
        self.parts = build_station(cfg, self.outbox, feedback=self.lights, tickets=self.tickets,
                                   source=self.camera.source)
        self.parts.tap.lossless = True  # the simulated camera waits for the desk instead of dropping frames
        holder["flow"], holder["tap"] = self.parts.runner.flow, self.parts.tap
        self.outcomes: list = []
        self.parts.runner.on_outcome = lambda event, outcome, ms: self.outcomes.append(outcome)
        self.stop = threading.Event()
        self.parts.runner.start()
        self.thread = threading.Thread(target=self.parts.station.run, kwargs={"stop": self.stop}, daemon=True)
        self.thread.start()

    def present(self, event, n: int = 1, timeout: float = 90.0):
        want = len(self.outcomes) + n
        self.parts.runner.submit(event)
        wait_until(lambda: len(self.outcomes) >= want, timeout, "the desk's outcome")
        return self.outcomes[-1]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.parts.close()
        self.outbox.close()


def _stored(store, kind: str) -> list[dict]:
    import json

    rows = store.execute("SELECT body_json FROM results WHERE kind = ?", (kind,)).fetchall()
    store.end_read()
    return [json.loads(r[0]) for r in rows]


def test_enrol_then_verify_then_refuse_a_still_photo_then_scope_and_revocation(
        site, store, running, uplinks, tmp_path, person) -> None:
    card = sample_cards()["resident"]
    subject = from_id_card(card, TODAY)
    cfg = _config(site, store, tmp_path, "box-0001", "clinic-a", mode="enrol")
    uplinks(cfg)
    key = cfg.path(cfg.identity.pseudonym_key).read_bytes()
    id_ref = pseudonym(key, "resident", card.id_number)

    # 1. desk enrolment: the card on the reader, consent by the button, the live capture
    desk = Desk(cfg, person)
    try:
        out = desk.present(IdPresented(subject))
        assert out.reason == "consent_needed" and desk.tickets.tickets[-1][0] == "face_check"
        out = desk.present(ButtonPress("close"))
        assert out.signal is Signal.ACCEPTED and out.detail["decision"] == "enrolled", desk.parts.runner.flow.last_check
        assert Signal.PROMPT in desk.lights.shown and desk.tickets.tickets[-2][0] == "face_guidance"
    finally:
        desk.close()
    wait_until(lambda: store.face_template(id_ref) is not None, 30, "the template at the centre")
    row = store.face_template(id_ref)
    assert row["clinic"] == "clinic-a" and row["consent"]["by"] == "self" and set(row["sealed"]) == {"v", "alg", "epk", "ct"}
    assert store.personal(row["msg_id"]) is None  # the template never lands in the personal table

    # 2. verification at the desk: no WLT decoder, so the enrolled template is fetched (signed, sealed to the request)
    cfg_v = cfg.model_copy(update={"face": cfg.face.model_copy(update={"mode": "verify"})})
    desk = Desk(cfg_v, person)
    try:
        out = desk.present(IdPresented(from_id_card(card, TODAY)))
        assert out.signal is Signal.ACCEPTED and out.detail["decision"] == "match", desk.parts.runner.flow.last_check
    finally:
        desk.close()

    # 3. a still photo held up in front of the same desk: refused, never compared
    desk = Desk(cfg_v.model_copy(update={"face": cfg_v.face.model_copy(update={"time_limit": 6.0})}), person,
                act="still")
    try:
        out = desk.present(IdPresented(from_id_card(card, TODAY)))
        assert out.signal is not Signal.ACCEPTED and out.detail["decision"] == "timeout"
    finally:
        desk.close()
    wait_until(lambda: len(_stored(store, "face_check")) == 2, 30, "both face checks at the centre")
    checks = _stored(store, "face_check")
    assert sorted(c["decision"] for c in checks) == ["match", "timeout"]
    assert all(c["id_ref"] == id_ref and c["reference"] == "enrolled" for c in checks)

    # 4. scope: a box of another clinic does not get the template; the enrolling clinic's box does
    other = _config(site, store, tmp_path, "box-0002", "clinic-b")
    uplinks(other)
    client_b = build_lookup(other, load_identity(other))
    client_a = build_lookup(cfg, load_identity(cfg))
    try:
        assert client_b.connected.wait(10) and client_a.connected.wait(10)
        assert client_b.face_template(id_ref) == ("not_found", None)
        found, template = client_a.face_template(id_ref)
        assert found == "found" and template.shape == (128,)
        # 5. revoked by an admin: no longer handed out
        assert store.revoke_face_template(id_ref, "admin") is True
        assert client_a.face_template(id_ref) == ("not_found", None)
    finally:
        client_a.stop()
        client_b.stop()
    assert running.counters["face_out_of_scope"] == 1


@pytest.mark.skipif(not (TESSDATA / "mrz.traineddata").is_file(), reason=f"shared models folder not found: {TESSDATA}")
def test_passport_under_the_camera_then_its_holder_live(site, store, running, uplinks, tmp_path, person) -> None:
    from edge.documents.mrz_ocr import MrzSettings
    from edge.face.pipeline import FacePipeline
    from tests.hw_sim.faces import passport_frame

    cfg = _config(site, store, tmp_path, "box-0003", "clinic-a")
    cfg = cfg.model_copy(update={"mrz": MrzSettings(tessdata=str(TESSDATA), cache_dir=str(tmp_path / "cache"))})
    uplinks(cfg)
    page, _ = passport_frame(_photo("obama.jpg"), FacePipeline(), seed=11)
    desk = Desk(cfg, person, document=page)
    try:
        wait_until(lambda: len(desk.outcomes) >= 1, 90, "the passport's check")
        out = desk.outcomes[0]
        assert out.detail["decision"] == "match", desk.parts.runner.flow.last_check
    finally:
        desk.close()
    wait_until(lambda: len(_stored(store, "face_check")) == 1, 30, "the check at the centre")
    (body,) = _stored(store, "face_check")
    assert body["reference"] == "document_photo" and body["id_kind"] == "mrz" and body["same"] is True


def test_hostile_face_results_are_held_not_stored(site, store, running, uplinks, tmp_path) -> None:
    cfg = _config(site, store, tmp_path, "box-0004", "clinic-a")
    uplinks(cfg)
    box = open_outbox(cfg, load_identity(cfg))
    box.start_boot()
    good = {"flow": "identity", "id_ref": "ab" * 16, "id_kind": "id_card", "reference": "enrolled",
            "decision": "match", "reason": None, "same": True, "score": 0.8, "threshold": 0.36,
            "liveness": {"outcome": "live", "challenges": ["blink", "turn_left"], "completed": 2, "frames": 30,
                         "frames_used": 5, "passive": None, "passive_checked": False, "min_same_person": 0.7},
            "models": {"face_recognition_sface": "x"}}
    face.check_face_check(good)
    bad = [{**good, "score": 0.1},  # a match below the threshold
           {**good, "liveness": {**good["liveness"], "outcome": "timeout"}},  # compared without being live
           {**good, "decision": "approved"}, {**good, "extra": 1}, {**good, "id_ref": "WANG FANG"}]
    try:
        box.enqueue("face_check", good)
        for body in bad:
            box.enqueue("face_check", body)
    finally:
        box.close()
    wait_until(lambda: store.execute("SELECT COUNT(*) FROM quarantine WHERE kind = 'face_check'").fetchone()[0] == 5,
               30, "the hostile results held")
    store.end_read()
    assert _stored(store, "face_check") == [good]
