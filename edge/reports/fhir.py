"""A structured report as a FHIR R4 ``Bundle`` (type ``collection``) of ``Observation`` resources.

Built and validated with ``fhir.resources`` (pydantic 2). Its R4-family models are in the ``R4B`` package
(FHIR 4.3.0); ``Bundle`` and ``Observation`` are unchanged from R4 (4.0.1) in every element used here, so the
JSON is valid R4. Codes: LOINC for the item, UCUM for units, HL7 v3 ObservationInterpretation for the flag,
SNOMED CT for qualitative results. No personal data goes in: the bundle has no ``Patient``; a caller that
has one may pass ``subject`` (a reference such as ``Patient/123``).

Example::

    bundle = to_bundle(report)
    body = bundle_json(report)   # plain JSON types, ready for a signed result body
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation

from edge.reports.catalogue import valid_loinc
from edge.reports.model import Item, Report

logger = logging.getLogger(__name__)

LOINC = "http://loinc.org"
LOCAL_ITEMS = "urn:ehc:report-item"
"""Code system of the catalogue's local codes (items without a LOINC code we are sure of)."""
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
FHIR_VERSION = "4.0.1"

UCUM_CODES: dict[str, str] = {
    "10^9/L": "10*9/L", "10^12/L": "10*12/L", "10^3/μL": "10*3/uL", "g/L": "g/L", "g/dL": "g/dL", "%": "%",
    "fL": "fL", "pg": "pg", "U/L": "U/L", "μmol/L": "umol/L", "mmol/L": "mmol/L", "pmol/L": "pmol/L",
    "mIU/L": "m[IU]/L", "mIU/mL": "m[IU]/mL", "IU/mL": "[IU]/mL", "s": "s", "mg/L": "mg/L", "mg/dL": "mg/dL",
    "mm": "mm", "cm": "cm", "g": "g", "kg": "kg", "bpm": "/min", "mmHg": "mm[Hg]", "": "1",
}
_QUALITATIVE = {"NEG": ("260385009", "Negative"), "POS": ("10828004", "Positive")}
_CATEGORIES = {"laboratory": "laboratory", "imaging": "imaging", "clinical": "exam"}


def _quantity(value: float, unit: str, comparator: str | None = None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": round(value, 6), "unit": unit or "1"}
    code = UCUM_CODES.get(unit)
    if code is not None:
        q["system"], q["code"] = UCUM, code
    if comparator:
        q["comparator"] = comparator
    return q


def observation(item: Item, report: Report, subject: str | None = None) -> Observation:
    """One validated Observation for ``item``."""
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": _CATEGORIES.get(item.category, "laboratory")}]}],
        "code": {"coding": [{"system": LOINC if valid_loinc(item.code) else LOCAL_ITEMS, "code": item.code}],
                 "text": item.name},
        "note": [{"text": f"Read from a paper report by OCR (confidence {item.confidence:.2f}); "
                          f"printed as {item.label!r}: {item.printed!r} {item.printed_unit}".strip()}],
    }
    if report.report_date:
        obs["effectiveDateTime"] = report.report_date
    if subject:
        obs["subject"] = {"reference": subject}
    if isinstance(item.value, float):
        obs["valueQuantity"] = _quantity(item.value, item.unit, item.comparator)
    elif item.flag in _QUALITATIVE and isinstance(item.value, str):
        code, display = _QUALITATIVE[item.flag]
        obs["valueCodeableConcept"] = {"coding": [{"system": SNOMED, "code": code, "display": display}],
                                       "text": item.value}
    elif item.value is not None:
        obs["valueString"] = str(item.value)
    if item.flag:
        obs["interpretation"] = [{"coding": [{"system": INTERPRETATION, "code": item.flag}]}]
    ref = item.ref
    if not ref.empty and ref.source != "none":
        rr: dict[str, Any] = {}
        if ref.low is not None:
            rr["low"] = _quantity(ref.low, item.unit)
        if ref.high is not None:
            rr["high"] = _quantity(ref.high, item.unit)
        text = ref.text or ("阴性" if ref.qualitative == "NEG" else "")
        if text:
            rr["text"] = text + (" (typical range; none printed)" if ref.source == "catalogue" else "")
        if rr:
            obs["referenceRange"] = [rr]
    return Observation.model_validate(obs)


def to_bundle(report: Report, *, subject: str | None = None, bundle_id: str | None = None) -> Bundle:
    """The report's items as a validated Bundle of Observations (ids derived from ``bundle_id``)."""
    bid = bundle_id or str(uuid.uuid4())
    entries = []
    for n, item in enumerate(report.items):
        oid = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:ehc:report:{bid}:{n}:{item.code}")
        obs = observation(item, report, subject)
        obs.id = str(oid)
        entries.append({"fullUrl": f"urn:uuid:{oid}", "resource": obs})
    return Bundle.model_validate({"resourceType": "Bundle", "id": bid, "type": "collection",
                                  "meta": {"tag": [{"code": "ocr", "display": "machine-read paper report"}]},
                                  "entry": entries})


def bundle_json(report: Report, *, subject: str | None = None, bundle_id: str | None = None) -> dict[str, Any]:
    """The bundle as plain JSON types (numbers, text, lists, maps)."""
    return json.loads(to_bundle(report, subject=subject, bundle_id=bundle_id).model_dump_json())
