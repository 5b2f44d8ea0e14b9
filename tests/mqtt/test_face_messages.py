"""Face messages as hostile input: face_check and face_enrol bodies, template requests and sealed answers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from foundation.keyfiles import generate_key
from mqtt import face, sealed, topics

GOOD = {"flow": "identity", "id_ref": "ab" * 16, "id_kind": "mrz", "reference": "document_photo",
        "decision": "no_match", "reason": "other_person", "same": False, "score": 0.12, "threshold": 0.36,
        "liveness": {"outcome": "live", "challenges": ["move_closer", "blink"], "completed": 2, "frames": 41,
                     "frames_used": 5, "passive": 0.93, "passive_checked": True, "min_same_person": 0.62},
        "models": {"face_recognition_sface": "sface"}}


def _with(path: str, value):  # type: ignore[no-untyped-def]
    body = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target = body
    for p in parents:
        target = target[p]
    target[last] = value
    return body


def test_a_well_formed_check_passes() -> None:
    face.check_face_check(GOOD)
    face.check_face_check({**GOOD, "decision": "timeout", "reason": "timeout", "same": None, "score": None,
                           "liveness": {**GOOD["liveness"], "outcome": "timeout", "completed": 1}})
    face.check_face_check({**GOOD, "decision": "no_reference", "reason": "needs_enrolled", "reference": None,
                           "same": None, "score": None, "liveness": None})


@pytest.mark.parametrize("body", [
    _with("decision", "match"),                       # a match whose score is under the threshold
    _with("same", True),                              # same disagrees with the decision
    _with("score", 1.5), _with("score", float("nan")), _with("score", "0.9"), _with("threshold", True),
    _with("id_ref", "WANG FANG 110105"), _with("id_ref", "AB" * 16), _with("id_kind", "selfie"),
    _with("reference", "phone_screen"), _with("reason", "x" * 80), _with("reason", "Robert'); DROP"),
    _with("liveness.outcome", "timeout"),             # compared although not live
    _with("liveness.completed", 3), _with("liveness.challenges", ["smile", "blink"]),
    _with("liveness.challenges", ["blink"] * 5), _with("liveness.frames", -1), _with("liveness.frames", True),
    _with("liveness.passive", None),                  # passive said to be checked but no score
    _with("liveness.passive", 2.0), _with("liveness.extra", 1), _with("models", {}),
    _with("models", {"m": "x" * 500}), _with("models", ["sface"]), _with("flow", "checkin"),
    {**GOOD, "embedding": [0.1] * 128}, {k: v for k, v in GOOD.items() if k != "models"}, [GOOD], None,
    {**GOOD, "decision": "no_reference", "reason": None, "reference": None, "same": None, "score": None,
     "liveness": None},
    {**GOOD, "decision": "timeout", "reason": "timeout", "same": None, "score": None},  # live outcome, timeout decision
], ids=lambda b: str(b)[:40])
def test_malformed_or_inconsistent_checks_are_refused(body) -> None:
    with pytest.raises(face.FaceInvalid):
        face.check_face_check(body)


ENROL = {"flow": "identity", "id_ref": "cd" * 16, "id_kind": "id_card",
         "consent": {"by": "guardian", "guardian_ref": "ef" * 16, "guardian_check": "01a246cd-0e5c-7f86-9102-fba0c2ba8950",
                     "text": "face-consent-v1", "at_ms": 1_764_000_000_000},
         "liveness": GOOD["liveness"], "models": GOOD["models"], "personal": {"v": 1}}


def test_enrolments_need_consent_a_real_guardian_and_a_live_capture() -> None:
    assert face.check_face_enrol(ENROL) == {"v": 1}
    for bad in ({**ENROL, "consent": {**ENROL["consent"], "guardian_check": None}},
                {**ENROL, "consent": {**ENROL["consent"], "guardian_ref": "cd" * 16}},  # the child as own guardian
                {**ENROL, "consent": {**ENROL["consent"], "by": "nobody"}},
                {**ENROL, "consent": {**ENROL["consent"], "by": "self"}},  # names a guardian without one
                {**ENROL, "liveness": {**GOOD["liveness"], "outcome": "not_live"}},
                {k: v for k, v in ENROL.items() if k != "personal"}, {**ENROL, "personal": "template"},
                {**ENROL, "id_ref": None}):
        with pytest.raises(face.FaceInvalid):
            face.check_face_enrol(bad)


def test_template_fetch_is_signed_and_sealed_to_the_request_key_only() -> None:
    central, box_key = generate_key(), x25519.X25519PrivateKey.generate()
    template = np.random.default_rng(1).normal(size=128)
    body = face.request_body("0123456789abcdef", "ab" * 16, box_key.public_key())
    rid, ref, epk = face.check_request(body)
    payload = face.sign_answer("clinic-a", "box-1", rid, template, "sface", epk, central)
    topic = topics.reply("clinic-a", "box-1", face.TEMPLATE_KIND)
    got_rid, answer = face.open_answer(payload, topic, central.public_key())
    assert got_rid == rid and answer.found
    back = face.open_template(answer, box_key, topic)
    assert float(np.dot(back, template / np.linalg.norm(template))) > 0.999
    with pytest.raises(face.FaceInvalid):  # another key (the broker, another box) cannot open it
        face.open_template(answer, x25519.X25519PrivateKey.generate(), topic)
    with pytest.raises(face.FaceInvalid):  # not signed by the centre
        face.open_answer(face.sign_answer("clinic-a", "box-1", rid, template, "m", epk, generate_key()), topic,
                         central.public_key())
    with pytest.raises(face.FaceInvalid):  # redirected to another box's topic
        face.open_answer(payload, topics.reply("clinic-a", "box-2", face.TEMPLATE_KIND), central.public_key())
    none = face.sign_answer("clinic-a", "box-1", rid, None, "", epk, central)
    assert face.open_answer(none, topic, central.public_key())[1].found is False


@pytest.mark.parametrize("body", [
    {"rid": "0123456789abcdef", "id_ref": "ab" * 16, "epk": "A" * 42},
    {"rid": "0123456789ABCDEF", "id_ref": "ab" * 16, "epk": "A" * 43},
    {"rid": "0123456789abcdef", "id_ref": "x", "epk": "A" * 43},
    {"rid": "0123456789abcdef", "id_ref": "ab" * 16, "epk": "!" * 43},
    {"rid": "0123456789abcdef", "id_ref": "ab" * 16, "epk": "A" * 43, "more": 1}, "text", None,
])
def test_malformed_template_requests_are_refused(body) -> None:
    with pytest.raises(face.FaceInvalid):
        face.check_request(body)


def test_template_fields_are_checked_after_opening() -> None:
    key = sealed.generate_key()
    good = {"template": face.encode_template(np.ones(128)), "model": "sface"}
    assert face.check_template_fields(good).shape == (128,)
    for bad in ({"template": face.encode_template(np.ones(128))}, {**good, "extra": 1},
                {**good, "template": "AAAA"}, {**good, "template": [0.1] * 128}, {**good, "model": 5}):
        with pytest.raises(face.FaceInvalid):
            face.check_template_fields(bad)
    part = sealed.seal(good, key.public_key(), "t", b"\0" * 16)
    with pytest.raises(sealed.SealedInvalid):  # bound to its message: another message id does not open it
        sealed.open_sealed(part, key, "t", b"\1" * 16)
