"""A structured report as a signed result (kind ``report``) through the outbox, and its printed summary.

The result body is the report JSON (no page image: a :class:`~edge.reports.model.Report` holds none) plus the
FHIR R4 bundle under ``fhir``. The patient part is never in the clear body: it goes as the sealed personal
part (``FlowContext.publish(..., personal=...)``); a box without the central sealing key records the result
without it (``personal_omitted: true``) rather than losing the clinical data.

Example::

    msg, error = publish_report(ctx, report)
    job = print_summary(ctx, report)
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from edge.reports.fhir import bundle_json
from edge.reports.model import Report
from mqtt import envelope

logger = logging.getLogger(__name__)


class ResultSink(Protocol):
    """Where a report goes: signed into the outbox and printed (:class:`edge.flows.base.FlowContext` on a box)."""

    outbox: Any

    def publish(self, kind: str, body: dict[str, Any], also: Any = None,
                personal: dict[str, Any] | None = None) -> tuple[envelope.Message | None, str | None]:
        """Sign and store one result; ``(message, None)`` or ``(None, reason)``."""
        ...

    def print_ticket(self, kind: str, fields: dict[str, Any]) -> str | None:
        """Queue a ticket; its job id, or None when it could not be queued."""
        ...

REPORT_KIND = "report"
TICKET_KIND = "report_summary"
FORMAT = "ehc-report/1"
MAX_BODY_BYTES = 160 * 1024       # under the broker's 256 KiB packet bound with room for the envelope
MAX_TICKET_ITEMS = 12

COLOUR_TEXT = {"green": "绿色 低风险 Green", "yellow": "黄色 一般风险 Yellow", "orange": "橙色 较高风险 Orange",
               "red": "红色 高风险 Red", "purple": "紫色 传染病 Purple"}
FLAG_TEXT = {"H": "↑", "L": "↓", "POS": "阳性", "NEG": "", "N": ""}
TICKET_NOTICE = "辅助决策提示，须医生核对原始报告后评估 Decision support only: a clinician must verify"


def report_body(report: Report, *, fhir: bool = True, bundle_id: str | None = None) -> dict[str, Any]:
    """The body of a ``report`` result: the report without its patient part, and the FHIR bundle.

    The bundle is left out (``fhir_omitted: true``) when the body would exceed :data:`MAX_BODY_BYTES`.
    """
    body: dict[str, Any] = {"format": FORMAT, **report.to_json(personal=False)}
    if fhir:
        body["fhir"] = bundle_json(report, bundle_id=bundle_id)
        if len(json.dumps(body, ensure_ascii=False).encode("utf-8")) > MAX_BODY_BYTES:
            del body["fhir"]
            body["fhir_omitted"] = True
            logger.warning("report body too large with its FHIR bundle; bundle left out")
    return body


def publish_report(ctx: ResultSink, report: Report, *, fhir: bool = True, send_personal: bool = True,
                   extra: dict[str, Any] | None = None, extra_personal: dict[str, Any] | None = None,
                   ) -> tuple[envelope.Message | None, str | None]:
    """Sign and store the report as a ``report`` result; ``(message, None)`` or ``(None, reason)``.

    ``extra`` adds fields such as the pseudonymous ``id_ref`` from ``ctx.identity_ref(...)``. The patient part
    (with ``extra_personal``, e.g. the holder's card index) is sealed when ``send_personal`` and the box can
    seal; otherwise it stays on the box.
    """
    body = report_body(report, fhir=fhir)
    if extra:
        clash = set(extra) & set(body)
        if clash:
            raise ValueError(f"extra fields would overwrite report fields: {', '.join(sorted(clash))}")
        body.update(extra)
    personal = {**report.patient.to_json(), **(extra_personal or {})} if send_personal else {}
    if personal and getattr(ctx.outbox, "seal_key", None) is None:
        logger.warning("report recorded without its patient part: this box has no central sealing key")
        personal = {}
        body = {**body, "personal_omitted": True}
    if personal:
        msg, error = ctx.publish(REPORT_KIND, body, personal=personal)
        if error != "no_seal_key":
            return msg, error
        logger.warning("report recorded without its patient part: this box has no central sealing key")
        body = {**body, "personal_omitted": True}
    msg, error = ctx.publish(REPORT_KIND, body)
    if msg is not None:
        logger.info("report result %s stored (%s, %d items, risk %s)", msg.msg_id, report.kind, len(report.items),
                    report.risk.colour)
    return msg, error


def summary_fields(report: Report, *, max_items: int = MAX_TICKET_ITEMS) -> dict[str, Any]:
    """Fields of the ``report_summary`` ticket: abnormal items, missing items, the items a person should check
    against the paper (read with low confidence), the grade and its rules."""
    abnormal = [i for i in report.items if i.abnormal]
    shown = abnormal[:max_items]
    items = [{"name": i.name, "value": _value_text(i.value, i.comparator), "unit": i.unit,
              "flag": FLAG_TEXT.get(i.flag or "", i.flag or "")} for i in shown]
    if len(abnormal) > len(shown):
        items.append({"name": f"… +{len(abnormal) - len(shown)}", "value": "", "unit": "", "flag": ""})
    risk = COLOUR_TEXT[report.risk.colour]
    if report.risk.also:
        risk += " + " + COLOUR_TEXT[report.risk.also]
    return {
        "title": report.title or "检验报告 Report",
        "kind": report.kind,
        "date": report.report_date or "",
        "items": items,
        "normal": "" if abnormal else "未见异常项目 No abnormal item",
        "missing": [{"name": m.name} for m in report.missing],
        "review": [{"name": f"{i.name} {_value_text(i.value, i.comparator)}".strip()} for i in report.items if i.review],
        "risk": risk,
        "rules": [{"text": f"{r.colour[0].upper()} {r.clause}"} for r in report.risk.rules],
        "notice": TICKET_NOTICE,
    }


def print_summary(ctx: ResultSink, report: Report) -> str | None:
    """Queue the summary ticket; the job id, or None when it could not be queued (logged, never raised)."""
    return ctx.print_ticket(TICKET_KIND, summary_fields(report))


def _value_text(value: float | str | None, comparator: str | None) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
        return f"{comparator or ''}{text}"
    return "" if value is None else str(value)
