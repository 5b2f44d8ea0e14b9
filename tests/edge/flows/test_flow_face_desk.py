"""The identity desk flow with a signed outbox: references, live capture, decisions, enrolment with consent."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from edge.feedback import Signal
from edge.flows.base import ButtonPress, IdPresented, PageCapture
from edge.flows.identity import FaceDesk, IdentityFlow
from edge.identity import PresentedId, pseudonym
from mqtt import face
from tests.conftest import shared_dir
from tests.hw_sim.faces import DeskCamera, FaceAnimator
from tests.support.flow_helpers import CENTRAL_SEAL, make_ctx, personal, stored, with_seal

FACES = shared_dir() / "testdata" / "faces"
pytestmark = pytest.mark.skipif(not FACES.is_dir(), reason=f"shared test data folder not found: {FACES}")
KEY = b"k" * 32
PERSON, SAME, OTHER = "obama3.jpg", "obama.jpg", "biden.jpg"


def _photo(name: str) -> Image.Image:
    with Image.open(FACES / name) as im:
        return im.convert("RGB")


@pytest.fixture(scope="module")
def pipe():
    from edge.face.pipeline import FacePipeline

    return FacePipeline()


@pytest.fixture(scope="module")
def person(pipe) -> FaceAnimator:
    return FaceAnimator(_photo(PERSON), pipe, seed=2)


class Templates:
    """The central template store as the desk sees it (the real one runs in test_face_desk_e2e)."""

    def __init__(self) -> None:
        self.held: dict[str, np.ndarray] = {}
        self.asked: list[str] = []

    def face_template(self, id_ref: str):
        self.asked.append(id_ref)
        return ("found", self.held[id_ref]) if id_ref in self.held else ("not_found", None)


def _desk(flow_holder: list, person: FaceAnimator, act: str = "answer", replay=None, **kw) -> FaceDesk:
    def frames() -> Iterator[tuple[float, np.ndarray]]:
        cam = DeskCamera(person, lambda: flow_holder[0].asked(), lambda: True, act=act, replay=replay, limit=250)
        for i in range(250):
            frame = cam.next_frame()
            if frame is None:
                return
            yield i / 10.0, np.ascontiguousarray(frame[:, :, ::-1])
    return FaceDesk(frames=frames, rng=random.Random(4), **kw)


def _flow(box, person, **kw) -> tuple[IdentityFlow, object]:
    ctx = make_ctx(with_seal(box))
    ctx.pseudonym_key = KEY
    holder: list = []
    flow = IdentityFlow(ctx, _desk(holder, person, **kw))
    holder.append(flow)
    return flow, ctx


def _id(number: str = "X1234567", source: str = "id_card", birth: dt.date = dt.date(1980, 1, 1),
        name: str = "JOHN SMITH") -> PresentedId:
    return PresentedId(source=source, document="resident" if source == "id_card" else "mrz_P_UTO", number=number,
                       name=name, valid=True, code="ok", birth_date=birth)


def test_id_card_without_wlt_decoder_and_not_enrolled_needs_an_enrolled_reference(box, key, person) -> None:
    flow, ctx = _flow(box, person, templates=Templates())
    out = flow.handle(IdPresented(_id()))
    assert out.signal is Signal.ATTENTION and out.reason == "no_reference"
    (msg,) = stored(box, key)
    face.check_face_check(msg.body)
    assert msg.kind == "face_check" and msg.body["decision"] == "no_reference" and msg.body["reason"] == "needs_enrolled"
    assert msg.body["id_ref"] == pseudonym(KEY, "resident", "X1234567") and "X1234567" not in str(msg.body)
    kind, fields = ctx.tickets.tickets[-1]
    assert kind == "face_check" and "enrolled reference" in fields["note"] and fields["name"] == "J*** SMITH"


def test_enrolled_person_answering_the_prompts_is_a_signed_match(box, key, person, pipe) -> None:
    templates = Templates()
    templates.held[pseudonym(KEY, "resident", "X1234567")] = pipe.faces(_photo(SAME))[0].embedding
    flow, ctx = _flow(box, person, templates=templates)
    out = flow.handle(IdPresented(_id()))
    assert out.signal is Signal.ACCEPTED and out.detail["decision"] == "match", flow.last_check
    (msg,) = stored(box, key)
    face.check_face_check(msg.body)
    b = msg.body
    assert b["reference"] == "enrolled" and b["same"] is True and b["score"] >= b["threshold"]
    assert b["liveness"]["outcome"] == "live" and b["liveness"]["completed"] == 2 and b["liveness"]["frames_used"] >= 3
    assert "personal" not in b and "embedding" not in str(b) and "template" not in str(b)
    assert Signal.PROMPT in ctx.feedback.shown
    kinds = [k for k, _ in ctx.tickets.tickets]
    assert kinds == ["face_guidance", "face_check"]
    guidance = ctx.tickets.tickets[0][1]
    assert guidance["step1"].startswith("Please") and guidance["step2"].startswith("Please")


def test_someone_else_in_front_of_the_camera_is_no_match(box, key, person, pipe) -> None:
    templates = Templates()
    templates.held[pseudonym(KEY, "resident", "X1234567")] = pipe.faces(_photo(OTHER))[0].embedding
    flow, _ = _flow(box, person, templates=templates)
    out = flow.handle(IdPresented(_id()))
    assert out.signal is Signal.REJECTED and out.reason == "no_match"
    (msg,) = stored(box, key)
    assert msg.body["same"] is False and msg.body["score"] < msg.body["threshold"]


@pytest.mark.parametrize("act", ["still", "replay"])
def test_photo_held_up_and_replayed_video_are_refused(box, key, person, pipe, act) -> None:
    templates = Templates()
    templates.held[pseudonym(KEY, "resident", "X1234567")] = pipe.faces(_photo(SAME))[0].embedding
    flow, _ = _flow(box, person, templates=templates, act=act, replay=["turn_right", "move_closer", "turn_left"],
                    time_limit=8.0)
    out = flow.handle(IdPresented(_id()))
    (msg,) = stored(box, key)
    assert out.signal is not Signal.ACCEPTED and msg.body["same"] is None and msg.body["score"] is None
    assert msg.body["decision"] == ("timeout" if act == "still" else "not_live"), msg.body


def test_passport_page_portrait_is_the_reference(box, key, person, pipe, tmp_path) -> None:
    tess = shared_dir() / "models" / "tessdata"
    if not (tess / "mrz.traineddata").is_file():
        pytest.skip(f"shared models folder not found: {tess}")
    from edge.documents.mrz_ocr import MrzReader, MrzSettings
    from edge.identity import from_mrz
    from tests.hw_sim.faces import passport_frame

    frame, _ = passport_frame(_photo(SAME), pipe, seed=3)
    with MrzReader(MrzSettings(tessdata=str(tess), cache_dir=str(tmp_path))) as reader:
        zone = reader.read(frame)
        corners = reader.last_zone
    assert zone is not None and zone.valid and corners is not None
    flow, _ = _flow(box, person, templates=Templates())
    out = flow.handle(IdPresented(from_mrz(zone), page=PageCapture(frame, corners, "TD3", 44)))
    assert out.detail["decision"] == "match", flow.last_check
    (msg,) = stored(box, key)
    assert msg.body["reference"] == "document_photo" and msg.body["id_kind"] == "mrz"
    assert flow.desk.templates.asked == []  # the page gave the reference: nothing fetched


def test_enrolment_needs_consent_and_seals_the_template(box, key, person, pipe) -> None:
    flow, ctx = _flow(box, person, mode="enrol")
    assert flow.handle(ButtonPress("close")) is None  # nothing to consent to
    out = flow.handle(IdPresented(_id()))
    assert out.signal is Signal.ATTENTION and out.reason == "consent_needed" and stored(box, key) == []
    out = flow.handle(ButtonPress("close"))
    assert out.signal is Signal.ACCEPTED and out.detail["decision"] == "enrolled", flow.last_check
    (msg,) = stored(box, key)
    assert msg.kind == "face_enrol"
    face.check_face_enrol(msg.body)
    assert msg.body["consent"]["by"] == "self" and msg.body["consent"]["guardian_ref"] is None
    fields = personal(msg)  # sealed to the central key: the broker sees ciphertext only
    template = face.check_template_fields(fields)
    same = pipe.faces(_photo(SAME))[0].embedding
    assert float(np.dot(template, same / np.linalg.norm(same))) >= 0.36
    assert "template" not in {k for k in msg.body if k != "personal"}


def test_a_child_is_enrolled_only_after_the_guardian_passes_their_own_check(box, key, person, pipe) -> None:
    templates = Templates()
    guardian = _id("G7654321", name="MARY SMITH")
    templates.held[pseudonym(KEY, "resident", "G7654321")] = pipe.faces(_photo(SAME))[0].embedding
    flow, ctx = _flow(box, person, mode="enrol", templates=templates)
    child = _id("C1111111", birth=dt.date(2020, 5, 5), name="TOM SMITH")
    out = flow.handle(IdPresented(child))
    assert out.reason == "guardian_first" and stored(box, key) == []
    assert flow.handle(ButtonPress("close")) is None  # no consent can be given yet
    out = flow.handle(IdPresented(guardian))  # the guardian's face check, against their enrolled reference
    assert out.reason == "consent_needed", flow.last_check
    check = stored(box, key)[0]
    assert check.kind == "face_check" and check.body["decision"] == "match"
    out = flow.handle(ButtonPress("close"))
    assert out.detail["decision"] == "enrolled"
    enrol = stored(box, key)[1]
    face.check_face_enrol(enrol.body)
    c = enrol.body["consent"]
    assert c["by"] == "guardian" and c["guardian_ref"] == pseudonym(KEY, "resident", "G7654321")
    assert c["guardian_check"] == str(check.msg_id) and enrol.body["id_ref"] == pseudonym(KEY, "resident", "C1111111")


def test_a_guardian_who_fails_their_check_enrols_no_child(box, key, person, pipe) -> None:
    templates = Templates()
    templates.held[pseudonym(KEY, "resident", "G7654321")] = pipe.faces(_photo(OTHER))[0].embedding
    flow, _ = _flow(box, person, mode="enrol", templates=templates)
    flow.handle(IdPresented(_id("C1111111", birth=dt.date(2020, 5, 5))))
    out = flow.handle(IdPresented(_id("G7654321")))
    assert out.reason == "no_match" and flow.handle(ButtonPress("close")) is None
    assert [m.kind for m in stored(box, key)] == ["face_check"]


def test_central_seal_key_opens_nothing_of_a_face_check(box, key, person) -> None:
    flow, _ = _flow(box, person, templates=Templates())
    flow.handle(IdPresented(_id()))
    (msg,) = stored(box, key)
    assert personal(msg) == {} and CENTRAL_SEAL is not None


def test_a_licensed_wlt_decoder_gives_the_card_photo_as_reference(box, key, person) -> None:
    import dataclasses
    import io

    from drivers.idcard.card import set_photo_decoder
    from edge.face.reference import load_wlt_plugins

    class VendorWlt:
        """Stands in for a licensed decoder: the 'decoded' WLT blob is a photo of the holder."""

        name = "test-wlt"

        def decode(self, wlt: bytes) -> bytes:
            assert wlt == b"\x01" * 1024
            buf = io.BytesIO()
            _photo(SAME).save(buf, "PNG")
            return buf.getvalue()

    assert load_wlt_plugins() is None  # none installed here: cards need an enrolled reference
    set_photo_decoder(VendorWlt())
    try:
        assert load_wlt_plugins() == "test-wlt"
        flow, _ = _flow(box, person, templates=Templates())
        out = flow.handle(IdPresented(dataclasses.replace(_id(), photo=b"\x01" * 1024)))
    finally:
        set_photo_decoder(None)
    assert out.detail["decision"] == "match", flow.last_check
    (msg,) = stored(box, key)
    assert msg.body["reference"] == "id_card_photo" and flow.desk.templates.asked == []


def test_a_health_card_code_is_an_identity_whose_reference_must_be_enrolled(box, key, person) -> None:
    from tests.hw_sim.camera import health_card_tokens
    from tests.support.flow_helpers import qr

    (token,) = health_card_tokens(1, seed=8)
    templates = Templates()
    flow, _ = _flow(box, person, templates=templates)
    out = flow.handle(qr(token))
    (msg,) = stored(box, key)
    assert out.reason == "no_reference" and msg.body["id_kind"] == "health_card"
    assert msg.body["reason"] == "needs_enrolled" and templates.asked == [msg.body["id_ref"]]
    assert token not in str(msg.body) and token[:64] not in str(msg.body)
    assert flow.handle(qr("https://example.org/not-a-card")).signal is Signal.REJECTED
