"""The identity desk (``[station] flow = "identity"``): is the person in front of the camera the holder of this identity?

States, for each identity presented (a health-card code, the resident ID card on the reader, a passport or
foreign ID under the camera)::

    identity -> reference -> live capture (challenges, LEDs, buzzer, printed guidance) -> decision -> face_check

* **Identity**: its pseudonym (``id_ref``, :meth:`~edge.flows.base.FlowContext.identity_ref`; a health card's
  ``card_ref``). An invalid document is refused at once.
* **Reference** (:mod:`edge.face.reference`), trusted sources only: the data page's portrait from the frame the
  zone was read in; the ID card's photo through a licensed WLT plug-in; else the template enrolled earlier,
  fetched from the central service (``templates.face_template``), held in memory only. None of them:
  ``no_reference`` (``needs_enrolled`` for an ID card without a WLT decoder or a health card never enrolled).
* **Live capture** (:class:`edge.face.desk.LiveCheck`): two random challenges; each is shown as the ``prompt``
  signal (amber light, short beep) and printed on the guidance ticket; the time limit ends it.
* **Decision**: a signed ``face_check`` result (:mod:`mqtt.face`), the ``face_check`` receipt, and the signal:
  accepted for ``match``, rejected for ``no_match`` and ``not_live``, attention for the rest.

Enrolment (``[face] mode = "enrol"``): the identity is presented, the consent ticket printed, and the button
press is the consent; the live capture's best frames become the template, sealed to the central key in a
``face_enrol`` result. For a child (under ``adult_age`` by the document's birth date) a guardian first passes
their own face check at this desk (within ``guardian_window`` seconds), then the child's document and capture follow.

Nothing of a face reaches the disk, a log or a message: frames, crops and embeddings live in this thread's memory.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge.feedback import Signal
from edge.flows.base import ButtonPress, Event, FlowContext, FlowOutcome, IdPresented, PageCapture, Scan
from edge.identity import mask_name
from edge.payloads import classify_payload
from models_tflite.loader import spec
from mqtt.face import encode_template

logger = logging.getLogger(__name__)

CHECK_KIND = "face_check"
ENROL_KIND = "face_enrol"
_SIGNALS = {"match": Signal.ACCEPTED, "no_match": Signal.REJECTED, "not_live": Signal.REJECTED}
_TEXT = {"match": "通过 Verified", "no_match": "不一致 Not the same person", "not_live": "未通过 Not live",
         "no_face": "未见人脸 No face seen", "several_faces": "多人 Several faces", "too_dark": "太暗 Too dark",
         "timeout": "超时 Time is up", "no_reference": "无参考照片 No reference",
         "enrolled": "已录入 Enrolled", "consent_needed": "请按键同意 Press to consent",
         "guardian_first": "请监护人先核验 Guardian first"}
_NOTES = {"needs_enrolled": "此证件需先录入 This card needs an enrolled reference",
          "reference_unavailable": "暂无法获取参考 Reference not reachable",
          "not_live": "请工作人员协助 Please see staff"}


@dataclass(frozen=True, slots=True)
class Subject:
    """Who is being checked: the pseudonym and what the receipt may show (name masked; birth date for the
    guardian rule). Personal data: never logged."""

    id_kind: str
    id_ref: str
    name: str = field(default="", repr=False)
    birth_date: dt.date | None = field(default=None, repr=False)
    page: PageCapture | None = field(default=None, repr=False)
    photo: bytes = field(default=b"", repr=False)


@dataclass
class FaceDesk:
    """What the desk needs besides the flow context; built in the flow thread on first use (interpreters are
    per thread). ``frames()`` opens a capture on the camera (:meth:`edge.face.tap.FrameTap.frames`)."""

    frames: Callable[[], Iterable[tuple[float, np.ndarray]]]
    templates: Any = None  # has face_template(id_ref) -> ("found", embedding) | ("not_found"|"unavailable", None)
    model_dir: Any = None
    threshold: float = 0.36
    time_limit: float = 20.0
    mode: str = "verify"
    adult_age: int = 18
    guardian_window: float = 300.0
    consent_text: str = "face-consent-v1"
    rng: Any = None
    _models: tuple[Any, Any, Any] | None = field(default=None, repr=False)

    def models(self) -> tuple[Any, Any, Any]:
        """(pipeline, iris, passive or None), loaded once in the calling (flow) thread."""
        if self._models is None:
            from edge.face.landmarks import IrisModel
            from edge.face.passive import PassiveLiveness
            from edge.face.pipeline import FacePipeline
            from edge.face.reference import load_wlt_plugins

            load_wlt_plugins()
            self._models = (FacePipeline(), IrisModel(), PassiveLiveness.from_dir(self.model_dir))
        return self._models


class IdentityFlow:
    """The identity desk state machine (verify, or enrol with consent)."""

    name = "identity"

    def __init__(self, ctx: FlowContext, desk: FaceDesk) -> None:
        self.ctx, self.desk = ctx, desk
        self.pending: tuple[Subject, str] | None = None  # enrolment waiting for consent: (subject, by)
        self.child: Subject | None = None  # a child waiting for their guardian's check
        self.guardian: tuple[str, str, float] | None = None  # (guardian id_ref, face_check msg id, valid until)
        self.last_check = None  # the last FaceCheck (decision and counts only), for status lines and benchmarks
        self.current: Any = None  # the LiveCheck of the capture under way (its session says what is asked now)

    # -- events ------------------------------------------------------------------------------------------
    def handle(self, event: Event) -> FlowOutcome | None:
        if isinstance(event, ButtonPress):
            return self._consent() if event.button in ("consent", "close") and self.desk.mode == "enrol" else None
        subject = self._subject(event)
        if isinstance(subject, FlowOutcome) or subject is None:
            return subject
        if self.desk.mode == "enrol":
            return self._enrol_start(subject)
        outcome, _ = self._verify(subject)
        return outcome

    def _subject(self, event: Event) -> Subject | FlowOutcome | None:
        if isinstance(event, Scan):
            verdict = self.ctx.verifier.verify(classify_payload(event.text))
            if verdict.card_ref is None:
                return FlowOutcome(Signal.REJECTED, reason="not_an_identity")
            return Subject("health_card", verdict.card_ref)
        if isinstance(event, IdPresented):
            ident = event.identity
            if not ident.valid:
                return FlowOutcome(Signal.REJECTED, reason=ident.code)
            ref = self.ctx.identity_ref(ident)["id_ref"]
            if ref is None:
                logger.error("identity desk needs the deployment's pseudonym key")
                return FlowOutcome(Signal.NOT_RECORDED, reason="no_pseudonym_key")
            return Subject(ident.source, ref, ident.name, ident.birth_date, event.page, ident.photo)
        return None

    # -- reference ---------------------------------------------------------------------------------------
    def reference(self, subject: Subject) -> tuple[Any, str | None]:
        """The trusted reference for ``subject`` and, without one, why (a stable name)."""
        from edge.face.reference import Reference, ReferenceRefused, card_reference, page_reference

        pipe = self.desk.models()[0]
        problem: str | None = None
        try:
            if subject.page is not None:
                p = subject.page
                from edge.face.desk import to_rgb

                return page_reference(to_rgb(p.frame), p.corners, p.format, p.chars, pipe), None
            if subject.id_kind == "id_card":
                return card_reference(subject.photo, pipe), None
        except ReferenceRefused as exc:
            problem = exc.reason
            logger.info("identity desk: document reference refused (%s)", exc.reason)
        if subject.id_kind == "health_card":
            problem = "needs_enrolled"
        found, template = ("unavailable", None) if self.desk.templates is None else \
            self.desk.templates.face_template(subject.id_ref)
        if found == "found":
            return Reference("enrolled", template), None
        if found == "unavailable" and problem in (None, "needs_enrolled"):
            problem = "reference_unavailable" if self.desk.templates is not None else problem or "needs_enrolled"
        return None, problem or "needs_enrolled"

    def asked(self) -> str | None:
        """The challenge the person is asked to do now (None outside a capture): what the LEDs and ticket say."""
        checker = self.current
        session = getattr(checker, "session", None)
        if session is None or session.decision is not None or session.index >= len(session.challenges):
            return None
        return str(session.challenges[session.index])

    # -- capture -----------------------------------------------------------------------------------------
    def capture(self, reference: np.ndarray | None) -> Any:
        """One live capture with its guidance; the :class:`edge.face.desk.FaceCheck` (and the checker)."""
        from edge.face.desk import LiveCheck, prompt_text

        pipe, iris, passive = self.desk.models()
        checker = LiveCheck(pipe, iris, passive, threshold=self.desk.threshold, time_limit=self.desk.time_limit,
                            rng=self.desk.rng)
        self.current = checker
        self.ctx.print_ticket("face_guidance", {"step1": prompt_text(checker.challenges[0]),
                                                "step2": prompt_text(checker.challenges[1]), "time": self._time()})

        def prompt(challenge: Any) -> None:
            if challenge is not None:
                self.ctx.feedback.show(Signal.PROMPT)

        try:
            result = checker.run(self.desk.frames(), reference, prompt)
        finally:
            self.current = None
        self.last_check = result
        return result, checker

    def _verify(self, subject: Subject) -> tuple[FlowOutcome, str | None]:
        ref, problem = self.reference(subject)
        if ref is None:
            body = self._body(subject, None, "no_reference", problem, None)
            return self._record(CHECK_KIND, body, subject, "no_reference", _NOTES.get(problem or "", "")), None
        check, _ = self.capture(ref.embedding)
        body = self._body(subject, ref.source, check.decision, _reason_code(check), check)
        outcome = self._record(CHECK_KIND, body, subject, check.decision, _NOTES.get(check.decision, ""))
        return outcome, outcome.message_id

    def _body(self, subject: Subject, source: str | None, decision: str, reason: str | None,
              check: Any) -> dict[str, Any]:
        from edge.face.desk import desk_models

        return {"flow": "identity", "id_ref": subject.id_ref, "id_kind": subject.id_kind, "reference": source,
                "decision": decision, "reason": reason,
                "same": check.same if check is not None else None,
                "score": check.score if check is not None else None, "threshold": self.desk.threshold,
                "liveness": check.evidence() if check is not None else None,
                "models": check.models if check is not None else desk_models(False)}

    def _record(self, kind: str, body: dict[str, Any], subject: Subject, decision: str, note: str,
                personal: dict[str, Any] | None = None) -> FlowOutcome:
        msg, error = self.ctx.publish(kind, body, personal=personal)
        detail = {"decision": decision, "score": body.get("score")}
        if msg is None:
            return FlowOutcome(Signal.NOT_RECORDED, reason=error, detail=detail)
        logger.info("identity desk %s %s: %s", kind, msg.msg_id, decision)
        ticket = self.ctx.print_ticket("face_check", {"name": mask_name(subject.name), "outcome": _TEXT[decision],
                                                      "note": note, "time": self._time()})
        signal = Signal.ACCEPTED if decision == "enrolled" else _SIGNALS.get(decision, Signal.ATTENTION)
        return FlowOutcome(signal, reason=None if decision in ("match", "enrolled") else decision,
                           message_id=str(msg.msg_id), ticket=ticket, detail=detail)

    # -- enrolment ---------------------------------------------------------------------------------------
    def _minor(self, subject: Subject) -> bool:
        b = subject.birth_date
        if b is None:
            return False
        today = dt.datetime.fromtimestamp(self.ctx.wall_clock()).date()
        age = today.year - b.year - ((today.month, today.day) < (b.month, b.day))
        return age < self.desk.adult_age

    def _guardian_valid(self) -> bool:
        return self.guardian is not None and self.guardian[2] >= time.monotonic()

    def _enrol_start(self, subject: Subject) -> FlowOutcome:
        if self._minor(subject):
            if not self._guardian_valid():
                self.child, self.pending = subject, None
                self.ctx.audit("face_enrol", {"step": "guardian_first"})
                return self._ask(subject, "guardian_first")
            return self._await_consent(subject, "guardian")
        if self.child is not None and not self._guardian_valid():
            # the guardian's own identity is checked first: a face check against their own reference
            outcome, msg_id = self._verify(subject)
            if outcome.detail.get("decision") == "match" and msg_id is not None:
                self.guardian = (subject.id_ref, msg_id, time.monotonic() + self.desk.guardian_window)
                child, self.child = self.child, None
                if child.id_ref == subject.id_ref:
                    return FlowOutcome(Signal.REJECTED, reason="guardian_is_child")
                return self._await_consent(child, "guardian")
            return outcome
        return self._await_consent(subject, "self")

    def _await_consent(self, subject: Subject, by: str) -> FlowOutcome:
        self.pending = (subject, by)
        self.ctx.audit("face_enrol", {"step": "consent_asked", "by": by, "text": self.desk.consent_text})
        return self._ask(subject, "consent_needed")

    def _ask(self, subject: Subject, what: str) -> FlowOutcome:
        ticket = self.ctx.print_ticket("face_check", {"name": mask_name(subject.name), "outcome": _TEXT[what],
                                                      "note": self.desk.consent_text if what == "consent_needed" else "",
                                                      "time": self._time()})
        return FlowOutcome(Signal.ATTENTION, reason=what, ticket=ticket, detail={"decision": what})

    def _consent(self) -> FlowOutcome | None:
        if self.pending is None:
            return None
        subject, by = self.pending
        self.pending = None
        if by == "guardian" and not self._guardian_valid():
            return FlowOutcome(Signal.ATTENTION, reason="guardian_first", detail={"decision": "guardian_first"})
        check, checker = self.capture(None)
        template = checker.template()
        if not check.live or template is None:
            body = self._body(subject, None, check.decision, _reason_code(check), check)
            return self._record(CHECK_KIND, body, subject, check.decision, _NOTES.get(check.decision, ""))
        from edge.face.embed import MODEL
        guardian_ref, guardian_check = (self.guardian[0], self.guardian[1]) if by == "guardian" and self.guardian \
            else (None, None)
        body = {"flow": "identity", "id_ref": subject.id_ref, "id_kind": subject.id_kind,
                "consent": {"by": by, "guardian_ref": guardian_ref, "guardian_check": guardian_check,
                            "text": self.desk.consent_text, "at_ms": int(self.ctx.wall_clock() * 1000)},
                "liveness": check.evidence(), "models": check.models}
        personal = {"template": encode_template(template), "model": spec(MODEL).version}
        if by == "guardian":
            self.guardian = None  # one child per guardian check
        return self._record(ENROL_KIND, body, subject, "enrolled", "", personal=personal)

    def _time(self) -> str:
        return dt.datetime.fromtimestamp(self.ctx.wall_clock()).strftime("%Y-%m-%d %H:%M")


def _reason_code(check: Any) -> str | None:
    """A stable name for why a check did not pass (None for a match)."""
    if check.decision in ("match",):
        return None
    r = check.reason
    for key, name in (("frozen", "frozen_picture"), ("when asked", "unasked_action"),
                      ("different person", "different_person"), ("passive", "passive_spoof"),
                      ("faces in view", "several_faces"), ("too dark", "too_dark"), ("time limit", "timeout"),
                      ("not in view", "no_face"), ("no face", "no_face"), ("all challenges", "other_person")):
        if key in r:
            return name
    return check.decision
