"""Output: the FHIR R4 bundle, the signed ``report`` result through a real outbox (patient part sealed), the
summary ticket, and the central ingest accepting the result."""

from __future__ import annotations

import json

import pytest
from fhir.resources.R4B.bundle import Bundle

from central.ingest import Verifier
from central.site import add_device
from drivers.ticket_layout import display_width, load_template, render
from edge.reports.fhir import INTERPRETATION, LOINC, SNOMED, UCUM, bundle_json, to_bundle
from edge.reports.publish import (
    MAX_BODY_BYTES,
    REPORT_KIND,
    TICKET_KIND,
    print_summary,
    publish_report,
    report_body,
    summary_fields,
)
from edge.reports.structure import structure
from foundation import keyfiles
from mqtt import envelope, sealed, topics
from tests.support.flow_helpers import make_ctx, stored
from tests.support.report_pages import page, table


@pytest.fixture(scope="module")
def report():
    p = page(["感染性疾病及血常规", "姓名: 赵敏  年龄: 30岁  住院号: ZY778899", "报告日期：2026-03-02"],
             [table(["项目", "结果", "单位", "参考范围"], [
                 ["血红蛋白", "98", "g/L", "115-150"], ["血小板计数", "210", "×10^9/L", "125-350"],
                 ["乙肝表面抗原(HBsAg)", "阳性(+)", None, "阴性"], ["HIV抗原抗体", "阴性", None, "阴性"],
                 ["D-二聚体", "<0.5", "mg/L", "0-0.55"], ["胎心率", "150", "次/分", "110-160"],
                 ["胎盘", "后壁", None, None]])])
    return structure(p)


def resources_of(b: dict) -> list[dict]:
    return [e["resource"] for e in b["entry"]]


def test_bundle_is_a_valid_collection_of_observations(report) -> None:
    b = bundle_json(report, bundle_id="rpt-1")
    assert b["resourceType"] == "Bundle" and b["type"] == "collection" and b["id"] == "rpt-1"
    obs = resources_of(b)
    assert len(obs) == len(report.items) == 7
    assert all(o["resourceType"] == "Observation" and o["status"] == "final" for o in obs)
    assert [o["code"]["coding"][0] for o in obs][0] == {"system": LOINC, "code": "718-7"}
    assert all(e["fullUrl"] == f"urn:uuid:{e['resource']['id']}" for e in b["entry"])
    assert Bundle.model_validate(b).entry[0].resource.code.text == "血红蛋白"   # round trip through the model
    assert bundle_json(report, bundle_id="rpt-1") == b                          # ids are stable per bundle id


def test_values_units_flags_and_ranges(report) -> None:
    obs = {o["code"]["coding"][0]["code"]: o for o in resources_of(bundle_json(report, bundle_id="x"))}
    hb = obs["718-7"]
    assert hb["valueQuantity"] == {"value": 98.0, "unit": "g/L", "system": UCUM, "code": "g/L"}
    assert hb["interpretation"][0]["coding"][0] == {"system": INTERPRETATION, "code": "L"}
    assert hb["referenceRange"][0]["low"]["value"] == 115.0 and hb["referenceRange"][0]["high"]["value"] == 150.0
    assert hb["effectiveDateTime"] == "2026-03-02"
    assert obs["777-3"]["valueQuantity"]["code"] == "10*9/L"
    assert obs["11948-7"]["valueQuantity"]["code"] == "/min"
    assert obs["11948-7"]["category"][0]["coding"][0]["code"] == "imaging"
    assert obs["48065-7"]["valueQuantity"]["comparator"] == "<"
    hbsag = obs["5196-1"]["valueCodeableConcept"]
    assert hbsag["coding"][0] == {"system": SNOMED, "code": "10828004", "display": "Positive"} and hbsag["text"] == "阳性"
    assert obs["5196-1"]["interpretation"][0]["coding"][0]["code"] == "POS"
    assert obs["56888-1"]["valueCodeableConcept"]["coding"][0]["code"] == "260385009"
    assert obs["11995-8"]["valueString"] == "后壁" and "interpretation" not in obs["11995-8"]


def test_bundle_holds_nothing_personal_and_takes_a_subject(report) -> None:
    text = json.dumps(bundle_json(report), ensure_ascii=False)
    assert "赵敏" not in text and "ZY778899" not in text
    b = to_bundle(report, subject="Patient/42")
    assert all(e.resource.subject.reference == "Patient/42" for e in b.entry)


def test_report_body_is_plain_json_without_the_patient(report) -> None:
    body = report_body(report, bundle_id="b")
    envelope.check_json_like(body)
    assert body["format"] == "ehc-report/1" and body["kind"] == report.kind and "patient" not in body
    assert body["fhir"]["type"] == "collection" and len(body["items"]) == 7
    assert body["risk"]["also"] == "purple" and body["risk"]["notice"]
    assert "赵敏" not in json.dumps(body, ensure_ascii=False)
    assert len(json.dumps(body).encode()) < MAX_BODY_BYTES


def test_published_through_the_outbox_with_the_patient_sealed(box, key, report) -> None:
    central = sealed.generate_key()
    box.seal_key = central.public_key()
    ctx = make_ctx(box)
    msg, error = publish_report(ctx, report, extra={"id_ref": "ref-1"})
    assert error is None and msg is not None
    (got,) = stored(box, key)
    assert got.kind == REPORT_KIND and got.msg_id == msg.msg_id
    assert got.body["id_ref"] == "ref-1" and got.body["items"][0]["code"] == "718-7"
    assert "赵敏" not in json.dumps(got.body, ensure_ascii=False)
    topic = topics.event("clinic-a", "box-1", REPORT_KIND)
    assert sealed.open_sealed(got.body["personal"], central, topic, got.msg_id.bytes) == \
        {"name": "赵敏", "age": 30, "record_no": "ZY778899"}


def test_without_a_sealing_key_the_result_is_kept_without_the_patient(box, key, report) -> None:
    msg, error = publish_report(make_ctx(box), report)
    assert error is None and msg is not None
    (got,) = stored(box, key)
    assert got.body["personal_omitted"] is True and "personal" not in got.body
    assert "赵敏" not in json.dumps(got.body, ensure_ascii=False)


def test_extra_fields_cannot_overwrite_the_report(box, report) -> None:
    with pytest.raises(ValueError, match="overwrite"):
        publish_report(make_ctx(box), report, extra={"risk": "green"})


def test_summary_ticket_lists_abnormal_items_and_the_grade(box, report) -> None:
    ctx = make_ctx(box)
    job = print_summary(ctx, report)
    assert job == "job-1"
    ((kind, fields),) = ctx.tickets.tickets  # type: ignore[attr-defined]
    assert kind == TICKET_KIND and fields == summary_fields(report)
    assert [i["name"] for i in fields["items"]] == ["血红蛋白", "乙肝表面抗原"]
    assert fields["items"][0] == {"name": "血红蛋白", "value": "98", "unit": "g/L", "flag": "↓"}
    assert fields["risk"] == "黄色 一般风险 Yellow + 紫色 传染病 Purple"
    assert "赵敏" not in json.dumps(fields, ensure_ascii=False)
    for paper, width in (("58mm", 32), ("80mm", 48)):
        lines = render(load_template(TICKET_KIND), fields, paper)
        texts = [ln.text for ln in lines]
        assert any(t.startswith("血红蛋白") and t.endswith("98 g/L ↓") for t in texts)
        assert any("附件3 黄色 2.6.2" in t for t in texts) and lines[-1].cut
        assert all(display_width(ln.text) * ln.size <= width for ln in lines if not ln.cut)


def test_summary_of_a_normal_report_says_so() -> None:
    p = page(["血常规"], [table(["项目", "结果", "单位", "参考范围"], [["血红蛋白", "128", "g/L", "115-150"]])])
    fields = summary_fields(structure(p))
    assert fields["items"] == [] and fields["normal"].startswith("未见异常") and fields["risk"].startswith("绿色")
    assert fields["missing"] == [{"name": "白细胞计数"}, {"name": "红细胞计数"}, {"name": "血小板计数"}]
    render(load_template(TICKET_KIND), fields, "58mm")


def test_central_ingest_accepts_report_results(site, store, tmp_path, report) -> None:
    add_device(site, store, "box-0001", "clinic-a", tmp_path / "box-0001")
    dev_key = keyfiles.load_private_key(tmp_path / "box-0001" / "device.key")
    msg = envelope.Message("box-0001", 1, 1, REPORT_KIND, report_body(report))
    topic = topics.event("clinic-a", "box-0001", REPORT_KIND)
    t, got = Verifier(store, max_bytes=256 * 1024).verify(topic, envelope.sign(msg, topic, dev_key))
    assert (t.channel, t.name, got.kind) == ("evt", REPORT_KIND, REPORT_KIND)
    assert got.body["items"] == msg.body["items"]
