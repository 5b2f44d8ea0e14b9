"""EU DCC value sets: the shipped package data, the ``value_set`` check on every coded field, and newer value sets
reaching a box through the signed trust list (newest per id; older refused like a rollback).

Certificates are made here with own keys; the shared folder is needed only to compare the package data and the
field map with their upstream sources.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from central import trustlist_issuer as central_trust
from central.site import add_device
from edge import config as edge_config
from edge.credentials import TrustStore, verify_credential
from edge.credentials.valuesets import DCC_CODED_FIELDS, ONLY_WHEN, SCHEMA_VALUESET_FILES, DccValueSets, ValueSet
from edge.payloads import classify_payload
from edge.runtime import build_verifier
from edge.trustlist_store import TrustListFile
from edge.verify import Outcome
from foundation.keyfiles import generate_key
from mqtt.trustlist import TrustList, TrustListInvalid, sign
from tests.conftest import shared_dir
from tests.edge.credentials.test_cred_bad_input import DCC, NOW, claims, cose, hc1, signer, trust_for

SHARED = shared_dir() / "testdata"
DEVICES = "covid-19-lab-test-manufacturer-and-name"
RAT: dict[str, Any] = {k: v for k, v in DCC.items() if k != "v"} | {"t": [{
    "tg": "840539006", "tt": "LP217198-3", "ma": "1232", "sc": "2021-06-14T08:00:00Z", "tr": "260415000",
    "tc": "Testzentrum", "co": "PL", "is": "Centrum e-Zdrowia", "ci": "URN:UVCI:01:PL:1/ABCDEF"}]}
SHIPPED = {"disease-agent-targeted": "2021-04-27", "sct-vaccines-covid-19": "2023-01-25",
           "vaccines-covid-19-names": "2022-11-30", "vaccines-covid-19-auth-holders": "2022-01-26",
           "covid-19-lab-test-type": "2021-04-27", DEVICES: "2021-07-01", "covid-19-lab-result": "2021-04-27",
           "country-2-codes": "2019-11-01"}


def rat(**fields: Any) -> dict[str, Any]:
    return dict(RAT, t=[dict(RAT["t"][0], **fields)])


def vacc(**fields: Any) -> dict[str, Any]:
    return dict(DCC, v=[dict(DCC["v"][0], **fields)])


@pytest.fixture(scope="module")
def signed() -> tuple[Any, Any]:
    return signer()


def _verify(signed: tuple[Any, Any], payload: dict[str, Any], trust: TrustStore | None = None) -> Any:
    key, cert = signed
    store = trust or trust_for(cert)
    if trust is not None:
        store.add_dcc_certificate(cert)
    return verify_credential(hc1(cose(key, cert, claims(payload))), store, NOW)


def _devices(date: str, *extra: str) -> dict[str, Any]:
    """A device list in the gateway's format: the shipped codes plus ``extra``."""
    shipped = DccValueSets.packaged().get(DEVICES)
    assert shipped is not None
    return {"valueSetId": DEVICES, "valueSetDate": date,
            "valueSetValues": {c: {"display": c, "lang": "en", "active": True, "system": "x", "version": date}
                               for c in sorted(shipped.codes | set(extra))}}


# -- the package data ------------------------------------------------------------------------------------------------

def test_the_shipped_value_sets_with_their_dates_and_licence() -> None:
    packaged = DccValueSets.packaged()
    assert {v.id: v.date for v in packaged} == SHIPPED
    assert all(v.source == "package" for v in packaged)
    assert "1232" in packaged.get(DEVICES).codes and "EU/1/20/1528" in packaged.get("vaccines-covid-19-names").codes
    folder = resources.files("edge.credentials").joinpath("valuesets")
    assert "Apache License" in folder.joinpath("LICENSE").read_text(encoding="utf-8")
    assert "60ea3d8" in folder.joinpath("README.md").read_text(encoding="utf-8")


@pytest.mark.skipif(not (SHARED / "dcc-valuesets").is_dir(), reason=f"shared folder missing: {SHARED}/dcc-valuesets")
def test_the_package_data_is_upstreams_unchanged() -> None:
    folder = resources.files("edge.credentials").joinpath("valuesets")
    shipped = sorted(p.name for p in folder.iterdir() if p.name.endswith(".json") or p.name == "LICENSE")
    assert len(shipped) == 9
    for name in shipped:
        assert folder.joinpath(name).read_bytes() == (SHARED / "dcc-valuesets" / name).read_bytes(), name


@pytest.mark.skipif(not (SHARED / "dcc" / "schemas").is_dir(), reason=f"shared folder missing: {SHARED}/dcc/schemas")
def test_the_coded_fields_follow_the_schemas_valueset_annotations() -> None:
    """Every ``valueset-uri`` of every schema version is in DCC_CODED_FIELDS; 1.3.x annotates exactly those."""
    groups = {"vaccination_entry": "v", "test_entry": "t", "recovery_entry": "r"}
    for path in sorted((SHARED / "dcc" / "schemas").glob("*.json")):
        defs = json.loads(path.read_text(encoding="utf-8"))["$defs"]
        annotated: dict[str, dict[str, str]] = {}
        for entry, group in groups.items():
            for name, spec in defs[entry]["properties"].items():
                ref = spec.get("$ref", "").rsplit("/", 1)[-1]
                uri = spec.get("valueset-uri") or defs.get(ref, {}).get("valueset-uri")
                if uri:
                    annotated.setdefault(group, {})[name] = SCHEMA_VALUESET_FILES[uri.rsplit("/", 1)[-1]]
        for group, fields in annotated.items():
            assert fields.items() <= DCC_CODED_FIELDS[group].items(), path.name
        if path.stem.startswith("1.3."):
            assert annotated == {g: dict(f) for g, f in DCC_CODED_FIELDS.items()}, path.name


# -- the value_set check --------------------------------------------------------------------------------------------

def test_known_codes_pass(signed: tuple[Any, Any]) -> None:
    recovery = {k: v for k, v in DCC.items() if k != "v"} | {"r": [{
        "tg": "840539006", "fr": "2021-05-01", "co": "AT", "is": "BMSGPK", "df": "2021-05-15", "du": "2021-10-28",
        "ci": "URN:UVCI:01:AT:X"}]}
    for payload in (DCC, RAT, rat(tt="LP6464-4", ma=""), rat(tt="LP6464-4", ma="N/A"), recovery):
        result = _verify(signed, payload)
        assert result.valid and result.checks["value_set"] is True, (result.reason, result.detail)
    assert ONLY_WHEN[("t", "ma")] == ("tt", "LP217198-3")  # NAAT tests name no device


@pytest.mark.parametrize("payload, field, code, value_set", [
    (rat(ma="9999"), "t[0].ma", "9999", DEVICES),                                     # unknown device
    (vacc(mp="EU/1/99/9999"), "v[0].mp", "EU/1/99/9999", "vaccines-covid-19-names"),  # unknown vaccine product
    (vacc(co="XX"), "v[0].co", "XX", "country-2-codes"),                              # unknown country
    (rat(co="XY"), "t[0].co", "XY", "country-2-codes"),
    (vacc(vp="J07BX03X"), "v[0].vp", "J07BX03X", "sct-vaccines-covid-19"),
    (vacc(ma="ORG-1"), "v[0].ma", "ORG-1", "vaccines-covid-19-auth-holders"),
    (vacc(tg="840539007"), "v[0].tg", "840539007", "disease-agent-targeted"),
    (rat(tt="LP0000-0"), "t[0].tt", "LP0000-0", "covid-19-lab-test-type"),
    (rat(tr="positive"), "t[0].tr", "positive", "covid-19-lab-result"),
    (vacc(mp=1528), "v[0].mp", None, "vaccines-covid-19-names"),                     # not even text
])
def test_unknown_codes_are_refused_naming_field_code_and_list(signed: tuple[Any, Any], payload: dict[str, Any],
                                                              field: str, code: str | None, value_set: str) -> None:
    result = _verify(signed, payload)
    assert (result.valid, result.reason, result.checks["value_set"]) == (False, "unknown_code", False)
    assert result.checks["signature"] is True and result.claims  # every other check passed and ran
    (miss,) = result.unknown_codes
    assert (miss.field, miss.code, miss.value_set, miss.date, miss.source) == (
        field, code, value_set, SHIPPED[value_set], "package")
    assert field in result.detail and value_set in result.detail and SHIPPED[value_set] in result.detail


def test_all_unknown_codes_are_listed(signed: tuple[Any, Any]) -> None:
    result = _verify(signed, rat(ma="9999", co="XX"))
    assert [u.field for u in result.unknown_codes] == ["t[0].ma", "t[0].co"]
    assert result.detail == ("t[0].ma: code '9999' is not in value set covid-19-lab-test-manufacturer-and-name of "
                             "2021-07-01 (package); t[0].co: code 'XX' is not in value set country-2-codes of "
                             "2019-11-01 (package)")


def test_other_failures_come_first_and_codes_are_still_listed(signed: tuple[Any, Any]) -> None:
    key, cert = signed
    text = hc1(cose(key, cert, claims(rat(ma="9999"))))
    result = verify_credential(text, trust_for(cert), datetime(2030, 1, 1, tzinfo=UTC))
    assert result.reason == "cert_expired" and result.checks["value_set"] is False and result.unknown_codes


def test_without_value_sets_the_check_is_not_applicable(signed: tuple[Any, Any]) -> None:
    key, cert = signed
    store = TrustStore(dcc_value_sets=DccValueSets())
    store.add_dcc_certificate(cert)
    result = verify_credential(hc1(cose(key, cert, claims(rat(ma="9999")))), store, NOW)
    assert result.valid and result.checks["value_set"] is None


def test_ddcc_has_no_value_set_check(signed: tuple[Any, Any]) -> None:
    key, cert = signed
    ddcc = {"name": "Test Person", "birthDate": "1990-01-01", "vaccination": {"date": "2021-05-01", "vaccine": "X"}}
    result = verify_credential(hc1(cose(key, cert, claims(hcert={1: ddcc}))), trust_for(cert), NOW)
    assert result.valid and result.format == "ddcc" and result.checks["value_set"] is None


# -- newer value sets through the trust list --------------------------------------------------------------------------

def test_newest_per_id_wins_older_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    sets = DccValueSets.packaged()
    newer = ValueSet.from_upstream(_devices("2023-05-01", "2695"), "trust list 4")
    older = ValueSet.from_upstream(_devices("2021-06-01", "1111"), "trust list 5")
    assert sets.offer(newer) and sets.get(DEVICES) is newer
    with caplog.at_level(logging.WARNING):
        assert not sets.offer(older)
    assert sets.get(DEVICES) is newer and "older" in caplog.text
    same_day = ValueSet.from_upstream(_devices("2023-05-01", "2695", "3000"), "trust list 6")
    assert sets.offer(same_day) and "3000" in sets.get(DEVICES).codes  # an equal date replaces
    assert len(DccValueSets.packaged().get(DEVICES).codes) == 88  # the shipped copy is untouched


def test_a_newer_device_list_in_the_trust_list_admits_a_newer_device(signed: tuple[Any, Any]) -> None:
    payload = rat(ma="2695")
    refused = _verify(signed, payload)
    assert refused.reason == "unknown_code" and "of 2021-07-01 (package)" in refused.detail
    compact = ValueSet.from_upstream(_devices("2023-05-01", "2695")).compact()
    listed = TrustList.from_body(TrustList(7, dcc_valuesets=(compact,)).body())
    store = TrustStore.from_trust_list(listed)
    assert store.dcc_value_sets.get(DEVICES).source == "trust list 7"
    assert _verify(signed, payload, store).valid
    unknown = _verify(signed, rat(ma="9999"), TrustStore.from_trust_list(listed))
    assert unknown.unknown_codes[0].as_dict() == {"field": "t[0].ma", "code": "9999", "value_set": DEVICES,
                                                  "date": "2023-05-01", "source": "trust list 7"}
    stale = ValueSet.from_upstream(_devices("2020-01-01", "2695")).compact()
    old_store = TrustStore.from_trust_list(TrustList(8, dcc_valuesets=(stale,)))  # older than shipped: refused
    assert old_store.dcc_value_sets.get(DEVICES).date == "2021-07-01"
    assert _verify(signed, payload, old_store).reason == "unknown_code"


@pytest.mark.parametrize("entry", [
    {"id": DEVICES, "date": "2023-13-01", "codes": ["1"]},
    {"id": DEVICES, "date": "20230501", "codes": ["1"]},
    {"id": DEVICES, "date": "2023-05-01", "codes": "1232"},
    {"id": DEVICES, "date": "2023-05-01", "codes": ["1", "1"]},
    {"id": DEVICES, "date": "2023-05-01", "codes": [1]},
    {"id": DEVICES, "date": "2023-05-01", "codes": ["x" * 129]},
    {"id": DEVICES, "date": "2023-05-01", "codes": [str(i) for i in range(20_001)]},
    {"id": "../etc", "date": "2023-05-01", "codes": []},
    {"date": "2023-05-01", "codes": []},
    "not an object",
])
def test_malformed_value_sets_make_the_list_invalid(entry: Any) -> None:
    with pytest.raises(TrustListInvalid):
        TrustList.from_body({"version": 1, "issued": 1.0, "dcc_valuesets": [entry]})


def test_too_many_or_repeated_value_sets_make_the_list_invalid() -> None:
    one = {"id": DEVICES, "date": "2023-05-01", "codes": []}
    with pytest.raises(TrustListInvalid):
        TrustList.from_body({"version": 1, "issued": 1.0, "dcc_valuesets": [one, one]})
    many = [{"id": f"set-{i}", "date": "2023-05-01", "codes": []} for i in range(33)]
    with pytest.raises(TrustListInvalid):
        TrustList.from_body({"version": 1, "issued": 1.0, "dcc_valuesets": many})


def test_a_box_refuses_a_list_that_rolls_a_value_set_back(tmp_path: Path) -> None:
    central = generate_key()
    box = TrustListFile(tmp_path / "trust-list.cose", central.public_key())

    def signed_list(version: int, *dates: str) -> bytes:
        sets = tuple({"id": DEVICES, "date": d, "codes": ["1232"]} for d in dates)
        return sign(TrustList(version, dcc_valuesets=sets), central)

    assert box.offer(signed_list(1))
    assert box.offer(signed_list(2, "2023-05-01"))
    assert not box.offer(signed_list(3, "2022-01-01"))  # older value set: refused like a rollback
    assert not box.offer(signed_list(3))                # the value set dropped: back to the shipped one
    assert box.current().version == 2                   # type: ignore[union-attr]
    assert box.offer(signed_list(3, "2023-05-01"))      # same date
    assert box.offer(signed_list(4, "2024-02-01"))
    assert box.current().valueset_dates() == {DEVICES: "2024-02-01"}  # type: ignore[union-attr]


def test_central_cli_adds_value_sets_and_the_station_admits_the_device(site, store, tmp_path: Path) -> None:
    newer = tmp_path / "devices-2023-05-01.json"
    newer.write_text(json.dumps(_devices("2023-05-01", "2695")))
    older = tmp_path / "devices-2020.json"
    older.write_text(json.dumps(_devices("2020-12-01", "2695")))
    key, cert = signer(not_before=datetime(2021, 1, 1, tzinfo=UTC), days=3650)
    from cryptography.hazmat.primitives.serialization import Encoding

    (tmp_path / "signer.der").write_bytes(cert.public_bytes(Encoding.DER))
    central_trust.update(site.config, central_trust.Changes(dcc_certs=[tmp_path / "signer.der"]))
    cfg = edge_config.load(add_device(site, store, "box-0007", "clinic-a", tmp_path / "box"))
    verifier = build_verifier(cfg)
    text = hc1(cose(key, cert, claims(rat(ma="2695"), exp=datetime(2031, 1, 1, tzinfo=UTC))))
    verdict = verifier.verify(classify_payload(text))
    assert (verdict.outcome, verdict.reason) == (Outcome.RED, "unknown_code")

    def ehc_central(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "central.cli", "trust", "update", "--config",
                               str(site.config_path), "--no-publish", *args], capture_output=True, text=True,
                              timeout=60)

    done = ehc_central("--add-valueset", str(newer))
    assert done.returncode == 0, done.stderr
    assert "1 DCC value sets" in done.stdout
    source = json.loads((central_trust.trust_dir(site.config) / central_trust.SOURCE).read_text())
    assert [(v["id"], v["date"], "2695" in v["codes"]) for v in source["dcc_valuesets"]] == [
        (DEVICES, "2023-05-01", True)]
    done = ehc_central("--add-valueset", str(older))
    assert done.returncode == 1 and "older" in done.stderr
    signed_list = central_trust.signed_bytes(site.config)
    assert signed_list is not None and TrustListFile(cfg.trust_path, verifier.trust.central).offer(signed_list)
    assert verifier.verify(classify_payload(text)).outcome is Outcome.GREEN


def test_verify_cli_names_the_value_set_and_takes_a_newer_one(signed: tuple[Any, Any], tmp_path: Path) -> None:
    key, cert = signed
    from cryptography.hazmat.primitives.serialization import Encoding

    (tmp_path / "signer.der").write_bytes(cert.public_bytes(Encoding.DER))
    (tmp_path / "devices.json").write_text(json.dumps(_devices("2023-05-01", "2695")))
    text = hc1(cose(key, cert, claims(rat(ma="2695"))))

    def run(*args: str) -> tuple[int, dict[str, Any]]:
        done = subprocess.run([sys.executable, "-m", "edge.cli", "verify", "--trust-cert", str(tmp_path / "signer.der"),
                               "--at", NOW.isoformat(), *args, text], capture_output=True, text=True, timeout=60)
        return done.returncode, json.loads(done.stdout)

    rc, out = run()
    assert (rc, out["reason"], out["checks"]["value_set"]) == (1, "unknown_code", False)
    assert out["unknown_codes"] == [{"field": "t[0].ma", "code": "2695", "value_set": DEVICES, "date": "2021-07-01",
                                     "source": "package"}]
    assert "2021-07-01" in out["detail"] and "Musterfrau" not in json.dumps(out)
    rc, out = run("--valueset", str(tmp_path / "devices.json"))
    assert rc == 0 and out["valid"] and out["checks"]["value_set"] is True
