"""``ehc-edge face enroll``: a reference template from a recorded clip, with consent, into the box's outbox.

The same record as the desk's enrolment mode (:mod:`edge.flows.identity`): the clip must be live (two different
actions seen, :func:`edge.face.desk.check_clip`); the mean embedding of its best frontal frames is the template,
sealed to the central X25519 key as the ``personal`` part of a signed ``face_enrol`` result, with the consent
record in clear (who consented, the guardian's pseudonym and passed face check for a child). Only the ID number's
pseudonym leaves the box; the uplink delivers the result. The command writes the outbox as a process of its own:
it starts a new boot of the outbox's sequence, as a station restart does. Prints ``{"enrolled", "id_ref", "message_id", "live",
"reason"}``; exits 0 when enrolled, 2 when the clip is not live or the consent is incomplete.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from edge import config as edge_config
from edge.boxfiles import load_identity, load_pseudonym_key, open_outbox
from edge.identity import pseudonym
from models_tflite.loader import spec
from mqtt import face

logger = logging.getLogger(__name__)


def enrol_from_clip(args: Any, frames: Iterable[tuple[float, np.ndarray]]) -> int:
    """Run the enrolment described by the parsed command line ``args`` over ``frames``."""
    from edge.face.desk import check_clip
    from edge.face.embed import MODEL
    from edge.face.landmarks import IrisModel
    from edge.face.passive import PassiveLiveness
    from edge.face.pipeline import FacePipeline

    if args.consent == "guardian" and not (args.guardian_ref and args.guardian_check):
        print(json.dumps({"enrolled": False, "reason": "guardian_consent_needs_guardian_ref_and_check"}))
        return 2
    cfg = edge_config.load(args.config)
    key = load_pseudonym_key(cfg)
    if key is None:
        print(json.dumps({"enrolled": False, "reason": "no_pseudonym_key"}))
        return 2
    id_ref = pseudonym(key, args.document, args.id_number)
    pipe = FacePipeline()
    kept: list[np.ndarray] = []
    result = check_clip(frames, None, pipe, IrisModel(),
                        PassiveLiveness.from_dir(args.model_dir or (cfg.path(cfg.face.model_dir)
                                                                     if cfg.face.model_dir else None)), template=kept)
    if not result.live or not kept:
        print(json.dumps({"enrolled": False, "id_ref": id_ref, "live": False, "reason": result.reason}))
        return 2
    body = {"flow": "identity", "id_ref": id_ref,
            "id_kind": "mrz" if args.document.startswith("mrz_") else "id_card",
            "consent": {"by": args.consent, "guardian_ref": args.guardian_ref, "guardian_check": args.guardian_check,
                        "text": cfg.face.consent_text, "at_ms": int(time.time() * 1000)},
            "liveness": result.evidence(), "models": result.models}
    face.check_face_enrol({**body, "personal": {}})
    box = open_outbox(cfg, load_identity(cfg))
    box.start_boot()  # a writer of its own: a new boot, as a station restart would (the centre sees a new boot)
    try:
        msg = box.enqueue(face.ENROL_KIND, body, personal={"template": face.encode_template(kept[0]),
                                                           "model": spec(MODEL).version})
    finally:
        box.close()
    logger.info("face template enrolled from a clip (%s consent)", args.consent)
    print(json.dumps({"enrolled": True, "id_ref": id_ref, "message_id": str(msg.msg_id), "live": True,
                      "reason": result.reason}))
    return 0

