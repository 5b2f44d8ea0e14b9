"""Immunization schedule (NIP 2021): worked examples for every programme vaccine, catch-up rules, properties."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.vaccination import (
    Age,
    GivenDose,
    NextDose,
    Reason,
    Schedule,
    ScheduleError,
    Status,
    check_administration,
    load_schedule,
    next_doses,
)

SCHEDULE = load_schedule()
BIRTH = dt.date(2023, 3, 10)
PROGRAMME = ["HepB", "BCG", "IPV", "bOPV", "DTaP", "DT", "MMR", "JE-L", "JE-I", "MPSV-A", "MPSV-AC", "HepA-L", "HepA-I"]


def d(text: str, birth: dt.date = BIRTH) -> dt.date:
    """A date ``text`` (an age such as '8m' or '1y6m', optionally '+Nd') after birth."""
    age, _, extra = text.partition("+")
    return Age.parse(age).after(birth) + dt.timedelta(days=int(extra.rstrip("d") or 0))


def g(vaccine: str, when: str, birth: dt.date = BIRTH) -> GivenDose:
    return GivenDose(vaccine, d(when, birth))


def nxt(series: str, given: list[GivenDose], today: dt.date, birth: dt.date = BIRTH,
        schedule: Schedule = SCHEDULE) -> NextDose:
    return next(n for n in next_doses(schedule, birth, given, today) if n.series == series or n.group == series)


def chk(vaccine: str, given: list[GivenDose], today: dt.date, birth: dt.date = BIRTH) -> Reason:
    return check_administration(SCHEDULE, birth, given, vaccine, today).reason


# ---------------------------------------------------------------- the data


def test_every_programme_vaccine_is_in_the_data_with_names_and_source() -> None:
    for code in PROGRAMME:
        v = SCHEDULE.vaccines[code]
        assert v.programme and v.name_zh and v.name_en and v.source.startswith("NIP2021")
    for s in SCHEDULE.series:
        assert s.source.startswith("NIP2021")
        for dose in s.doses:
            assert dose.source.startswith("NIP2021"), (s.code, dose.number)
    assert [s.code for s in SCHEDULE.series] == ["HepB", "BCG", "Polio", "DTP", "MMR", "JE-L", "JE-I", "MEN",
                                                 "HepA-L", "HepA-I"]
    assert {v for v in SCHEDULE.vaccines.values() if v.live_injectable} == {
        SCHEDULE.vaccines[c] for c in ("BCG", "MMR", "MR", "MV", "JE-L", "HepA-L")}


def test_age_arithmetic() -> None:
    assert Age.parse("1y6m").after(dt.date(2024, 1, 31)) == dt.date(2025, 7, 31)
    assert Age.parse("1m").after(dt.date(2024, 1, 31)) == dt.date(2024, 2, 29)
    assert Age.parse("28d").after(dt.date(2024, 2, 20)) == dt.date(2024, 3, 19)
    assert Age.parse("2w") == Age(days=14) and str(Age.parse("1y6m")) == "1y6m"
    for bad in ("", "6", "3x", "m3", "1.5y"):
        with pytest.raises(ScheduleError):
            Age.parse(bad)


def test_newborn_plan() -> None:
    plan = {n.series: n for n in next_doses(SCHEDULE, BIRTH, [], BIRTH)}
    assert plan["HepB"].status is Status.DUE and plan["HepB"].due_by == BIRTH + dt.timedelta(days=1)
    assert plan["BCG"].status is Status.DUE and plan["BCG"].condition is None
    assert plan["Polio"].status is Status.NOT_YET_DUE and plan["Polio"].earliest == d("2m")
    assert plan["Polio"].product == "IPV"
    assert plan["DTP"].earliest == d("3m") and plan["MMR"].earliest == d("8m")
    assert plan["JE-L"].alternatives == ("JE-I",) and plan["HepA-L"].alternatives == ("HepA-I",)
    assert plan["MEN"].product == "MPSV-A" and plan["MEN"].earliest == d("6m")
    assert all(n.doses_given == 0 for n in plan.values())


# ---------------------------------------------------------------- hepatitis B


def test_hepb_routine_and_overdue() -> None:
    assert nxt("HepB", [], d("0d+1d")).status is Status.OVERDUE          # not within 24 hours
    n = nxt("HepB", [g("HepB", "0d")], d("20d"))
    assert (n.dose_number, n.status, n.earliest) == (2, Status.NOT_YET_DUE, d("1m"))
    n = nxt("HepB", [g("HepB", "0d"), g("HepB", "1m")], d("6m"))
    assert (n.dose_number, n.status, n.earliest) == (3, Status.DUE, d("6m"))
    assert nxt("HepB", [g("HepB", "0d"), g("HepB", "1m")], d("12m")).status is Status.OVERDUE
    assert nxt("HepB", [g("HepB", "0d"), g("HepB", "1m"), g("HepB", "6m")], d("5y")).status is Status.COMPLETE


def test_hepb_catch_up_intervals() -> None:
    # started late at 5 months: dose 2 ≥ 28 days later; dose 3 ≥ 60 days after dose 2 and ≥ 4 months after dose 1
    given = [g("HepB", "5m")]
    assert nxt("HepB", given, d("5m+10d")).earliest == d("5m+28d")
    assert chk("HepB", given, d("5m+27d")) is Reason.TOO_SOON
    given.append(g("HepB", "6m"))
    n = nxt("HepB", given, d("7m"))
    assert n.earliest == d("9m") and n.status is Status.NOT_YET_DUE     # 4 months after dose 1 > 60 days after 2
    assert chk("HepB", given, d("8m+15d")) is Reason.TOO_SOON
    assert chk("HepB", given, d("9m")) is Reason.OK


def test_hepb_minimum_age_and_complete() -> None:
    assert chk("HepB", [g("HepB", "0d")], d("0d+28d")) is Reason.TOO_YOUNG   # 28 days but not 1 month old
    done = [g("HepB", "0d"), g("HepB", "1m"), g("HepB", "6m")]
    assert chk("HepB", done, d("2y")) is Reason.SERIES_COMPLETE


def test_hepb_catch_up_ends_at_18() -> None:
    n = nxt("HepB", [], d("18y"))
    assert n.status is Status.AGED_OUT and n.last_date == d("18y") - dt.timedelta(days=1)
    assert chk("HepB", [], d("17y11m")) is Reason.OK
    assert chk("HepB", [], d("18y")) is Reason.BEYOND_CATCHUP_AGE


def test_undated_paper_record_counts_without_interval() -> None:
    n = nxt("HepB", [GivenDose("HepB", None, 1), GivenDose("HepB", None, 2)], d("8m"))
    assert (n.dose_number, n.status, n.earliest) == (3, Status.DUE, d("6m"))


# ---------------------------------------------------------------- BCG


def test_bcg_catch_up_windows() -> None:
    assert nxt("BCG", [], d("2m")).status is Status.DUE
    late = nxt("BCG", [], d("5m"))
    assert late.status is Status.OVERDUE and late.condition == "ppd_negative"   # 3 months-3 years: test first
    v = check_administration(SCHEDULE, BIRTH, [], "BCG", d("3y11m"))
    assert v.ok and v.overdue and v.condition == "ppd_negative"
    assert nxt("BCG", [], d("4y")).status is Status.AGED_OUT                   # ≥ 4 years: not caught up
    assert chk("BCG", [], d("4y")) is Reason.BEYOND_CATCHUP_AGE
    assert chk("BCG", [g("BCG", "0d")], d("1y")) is Reason.SERIES_COMPLETE    # no revaccination without a scar


# ---------------------------------------------------------------- polio


def test_polio_routine() -> None:
    assert chk("IPV", [], d("2m")) is Reason.OK
    assert chk("bOPV", [], d("2m")) is Reason.WRONG_PRODUCT                    # first dose is IPV
    given = [g("IPV", "2m"), g("IPV", "3m")]
    n = nxt("Polio", given, d("4m"))
    assert (n.dose_number, n.product, n.give, n.status) == (3, "bOPV", ("bOPV", "IPV"), Status.DUE)
    given.append(g("bOPV", "4m"))
    n = nxt("Polio", given, d("2y"))
    assert (n.dose_number, n.status, n.earliest, n.due_by) == (4, Status.NOT_YET_DUE, d("4y"), d("5y"))
    assert chk("bOPV", given, d("3y")) is Reason.TOO_YOUNG
    given.append(g("bOPV", "4y"))
    assert nxt("Polio", given, d("6y")).status is Status.COMPLETE


def test_polio_interval_and_overdue() -> None:
    assert chk("IPV", [g("IPV", "2m")], d("2m+20d")) is Reason.TOO_YOUNG      # 3 months not reached
    assert chk("IPV", [g("IPV", "2m+10d")], d("3m+5d")) is Reason.TOO_SOON    # < 28 days
    assert nxt("Polio", [g("IPV", "2m")], d("12m")).status is Status.OVERDUE
    assert nxt("Polio", [g("IPV", "2m"), g("IPV", "3m"), g("bOPV", "4m")], d("5y")).status is Status.OVERDUE


def test_polio_catch_up_under_4_needs_3_doses_then_4th_at_4() -> None:
    given = [g("IPV", "2y"), g("IPV", "2y+28d"), g("bOPV", "2y+56d")]
    n = nxt("Polio", given, d("3y"))
    assert n.status is Status.NOT_YET_DUE and n.earliest == d("4y")


def test_polio_catch_up_from_4_needs_4_doses_28_days_apart() -> None:
    given: list[GivenDose] = []
    day = d("4y6m")
    for expected in ("IPV", "IPV", "bOPV", "bOPV"):
        n = nxt("Polio", given, day)
        assert n.product == expected and n.earliest == (day if given else d("2m"))
        given.append(GivenDose(expected, day))
        day += dt.timedelta(days=28)
    assert nxt("Polio", given, day).status is Status.COMPLETE


def test_polio_bopv_only_history_gets_ipv_and_topv_history_does_not() -> None:
    bopv = [g("bOPV", "2m"), g("bOPV", "3m"), g("bOPV", "4m"), g("bOPV", "4y")]
    n = nxt("Polio", bopv, d("5y"))
    assert (n.dose_number, n.product, n.status) == (5, "IPV", Status.DUE)
    assert chk("bOPV", bopv, d("5y")) is Reason.WRONG_PRODUCT
    assert nxt("Polio", bopv + [g("IPV", "5y")], d("5y1m")).status is Status.COMPLETE
    # a campaign bOPV dose first: the next one is IPV
    assert nxt("Polio", [g("bOPV", "2m")], d("3m")).product == "IPV"
    topv = [g("tOPV", "2m"), g("tOPV", "3m"), g("tOPV", "4m"), g("bOPV", "4y")]
    assert nxt("Polio", topv, d("5y")).status is Status.COMPLETE


def test_polio_four_ipv_doses_replace_bopv() -> None:
    given = [g("IPV", "2m"), g("IPV", "3m"), g("IPV", "4m"), g("IPV", "4y")]
    assert nxt("Polio", given, d("5y")).status is Status.COMPLETE


# ---------------------------------------------------------------- DTaP / DT


def test_dtp_routine() -> None:
    given = [g("DTaP", "3m"), g("DTaP", "4m"), g("DTaP", "5m")]
    n = nxt("DTP", given, d("12m"))
    assert (n.dose_number, n.earliest, n.due_by) == (4, d("18m"), d("24m"))
    given.append(g("DTaP", "18m"))
    n = nxt("DTP", given, d("3y"))
    assert (n.dose_number, n.product, n.earliest, n.due_by) == (5, "DT", d("6y"), d("7y"))
    assert chk("DT", given, d("5y")) is Reason.TOO_YOUNG
    assert chk("DT", given, d("6y")) is Reason.OK
    assert nxt("DTP", given + [g("DT", "6y")], d("8y")).status is Status.COMPLETE


def test_dtp_minimum_intervals() -> None:
    assert chk("DTaP", [g("DTaP", "3m+10d")], d("4m+5d")) is Reason.TOO_SOON     # < 28 days
    three = [g("DTaP", "3m"), g("DTaP", "4m"), g("DTaP", "14m")]
    n = nxt("DTP", three, d("18m"))
    assert n.earliest == d("20m") and n.status is Status.NOT_YET_DUE             # dose 4 ≥ 6 months after dose 3
    assert chk("DTaP", three, d("19m")) is Reason.TOO_SOON


def test_dtp_switch_to_dt_from_6_years() -> None:
    n = nxt("DTP", [], d("6y6m"))
    assert (n.dose_number, n.product, n.status) == (1, "DT", Status.OVERDUE)
    assert chk("DTaP", [], d("6y6m")) is Reason.WRONG_PRODUCT
    assert chk("DTaP", [], d("5y11m")) is Reason.OK                              # DTaP up to 5 years
    # ≥ 6 with fewer than 3 doses: DT up to 3, dose 2 ≥ 1 month after 1, dose 3 ≥ 6 months after 2
    given = [g("DT", "6y6m")]
    assert nxt("DTP", given, d("6y6m+10d")).earliest == d("6y7m")
    given.append(g("DT", "6y7m"))
    n = nxt("DTP", given, d("6y8m"))
    assert (n.dose_number, n.earliest) == (3, d("7y1m"))
    assert chk("DT", given, d("7y")) is Reason.TOO_SOON
    given.append(g("DT", "7y1m"))
    assert nxt("DTP", given, d("8y")).status is Status.COMPLETE


def test_dtp_after_6_with_three_dtap_needs_one_dt() -> None:
    three = [g("DTaP", "3m"), g("DTaP", "4m"), g("DTaP", "5y10m")]
    n = nxt("DTP", three, d("6y1m"))
    assert (n.dose_number, n.product, n.earliest) == (4, "DT", d("6y4m"))          # ≥ 6 months after DTaP 3
    assert chk("DT", three, d("6y2m")) is Reason.TOO_SOON
    assert nxt("DTP", three + [g("DT", "6y4m")], d("7y")).status is Status.COMPLETE
    mixed = [g("DTaP", "3m"), g("DTaP", "4m"), g("DT", "6y2m")]                      # 3 doses incl. a DT
    assert nxt("DTP", mixed, d("7y")).status is Status.COMPLETE


def test_dtp_four_dtap_late_fourth_dose_waits_12_months() -> None:
    four = [g("DTaP", "3m"), g("DTaP", "4m"), g("DTaP", "5m"), g("DTaP", "5y6m")]
    n = nxt("DTP", four, d("6y"))
    assert (n.dose_number, n.product, n.earliest) == (5, "DT", d("6y6m"))
    assert nxt("DTP", four, d("7y")).status is Status.OVERDUE


# ---------------------------------------------------------------- MMR


def test_mmr_routine_catch_up_and_older_products() -> None:
    assert chk("MMR", [], d("7m")) is Reason.TOO_YOUNG
    assert nxt("MMR", [], d("8m")).status is Status.DUE
    assert nxt("MMR", [], d("12m")).status is Status.OVERDUE
    n = nxt("MMR", [g("MMR", "8m")], d("1y"))
    assert (n.dose_number, n.earliest, n.due_by) == (2, d("18m"), d("24m"))
    # a 4-year-old with no dose: two doses ≥ 28 days apart
    late = [g("MMR", "4y")]
    assert nxt("MMR", late, d("4y+1d")).earliest == d("4y+28d")
    assert chk("MMR", late, d("4y+27d")) is Reason.TOO_SOON
    assert nxt("MMR", [g("MR", "8m"), g("MMR", "18m")], d("3y")).status is Status.COMPLETE
    assert chk("MR", [], d("8m")) is Reason.WRONG_PRODUCT                          # history only, not given now


# ---------------------------------------------------------------- Japanese encephalitis (JE-L / JE-I)


def test_je_live_routine_and_catch_up() -> None:
    n = nxt("JE", [], d("8m"))
    assert (n.series, n.status, n.alternatives) == ("JE-L", Status.DUE, ("JE-I",))
    given = [g("JE-L", "8m")]
    n = nxt("JE", given, d("1y"))
    assert (n.series, n.dose_number, n.earliest, n.alternatives) == ("JE-L", 2, d("2y"), ())
    late = [g("JE-L", "3y")]                                                       # catch-up: 2 doses ≥ 12 months apart
    assert nxt("JE", late, d("3y6m")).earliest == d("4y")
    assert chk("JE-L", late, d("3y11m")) is Reason.TOO_SOON
    assert nxt("JE", late + [g("JE-L", "4y")], d("5y")).status is Status.COMPLETE


def test_je_inactivated_series() -> None:
    assert chk("JE-I", [], d("8m")) is Reason.OK                                   # alternative chosen by the nurse
    given = [g("JE-I", "8m")]
    n = nxt("JE", given, d("8m+3d"))
    assert (n.series, n.dose_number, n.earliest) == ("JE-I", 2, d("8m+7d"))        # 7-10 days apart
    assert chk("JE-I", given, d("8m+6d")) is Reason.TOO_SOON
    given.append(g("JE-I", "8m+7d"))
    assert nxt("JE", given, d("1y")).earliest == d("2y")
    given.append(g("JE-I", "2y"))
    n = nxt("JE", given, d("5y"))
    assert (n.dose_number, n.earliest, n.due_by) == (4, d("6y"), d("7y"))
    given.append(g("JE-I", "6y"))
    assert nxt("JE", given, d("8y")).status is Status.COMPLETE


def test_je_inactivated_catch_up_intervals() -> None:
    given = [g("JE-I", "5y"), g("JE-I", "5y+7d")]
    assert nxt("JE", given, d("5y+10d")).earliest == d("5y+7d") + dt.timedelta(days=31)  # ≥ 1 month after 2
    given.append(g("JE-I", "5y2m"))
    n = nxt("JE", given, d("6y"))
    assert n.earliest == d("8y2m") and n.status is Status.NOT_YET_DUE              # ≥ 3 years after dose 3


def test_je_series_are_not_mixed() -> None:
    assert chk("JE-I", [g("JE-L", "8m")], d("2y")) is Reason.OTHER_SERIES
    assert chk("JE-L", [g("JE-I", "8m")], d("2y")) is Reason.OTHER_SERIES
    assert nxt("JE", [g("JE-L", "8m"), g("JE-I", "9m")], d("2y")).dose_number == 2


# ---------------------------------------------------------------- meningococcal A / A+C


def test_men_routine() -> None:
    n = nxt("MEN", [], d("6m"))
    assert (n.dose_number, n.product, n.status) == (1, "MPSV-A", Status.DUE)
    given = [g("MPSV-A", "6m")]
    assert nxt("MEN", given, d("7m")).earliest == d("9m")
    given = [g("MPSV-A", "7m")]
    assert nxt("MEN", given, d("8m")).earliest == d("10m")                         # ≥ 3 months apart
    assert chk("MPSV-A", given, d("9m+15d")) is Reason.TOO_SOON
    given.append(g("MPSV-A", "10m"))
    n = nxt("MEN", given, d("2y"))
    assert (n.dose_number, n.product, n.earliest, n.due_by) == (3, "MPSV-AC", d("3y"), d("4y"))
    given.append(g("MPSV-AC", "3y"))
    n = nxt("MEN", given, d("4y"))
    assert (n.dose_number, n.earliest, n.due_by) == (4, d("6y"), d("7y"))
    given.append(g("MPSV-AC", "6y"))
    assert nxt("MEN", given, d("8y")).status is Status.COMPLETE


def test_men_ac_at_least_12_months_after_second_a_dose() -> None:
    given = [g("MPSV-A", "1y"), g("MPSV-A", "2y11m")]
    assert nxt("MEN", given, d("3y")).earliest == d("3y11m")
    assert chk("MPSV-AC", given, d("3y6m")) is Reason.TOO_SOON


def test_men_catch_up_from_24_months_without_a_doses() -> None:
    n = nxt("MEN", [], d("30m"))
    assert (n.dose_number, n.product, n.status, n.earliest) == (3, "MPSV-AC", Status.DUE, d("24m"))
    assert chk("MPSV-A", [], d("30m")) is Reason.WRONG_PRODUCT                      # no MPSV-A from 24 months
    assert chk("MPSV-AC", [], d("30m")) is Reason.OK
    assert chk("MPSV-AC", [], d("20m")) is Reason.WRONG_PRODUCT                     # under 24 months: MPSV-A first
    assert nxt("MEN", [], d("23m")).product == "MPSV-A"


def test_men_one_a_dose_then_ac_three_months_later() -> None:
    given = [g("MPSV-A", "22m")]
    n = nxt("MEN", given, d("25m"))                                                # A dose 2 can no longer be given
    assert (n.product, n.earliest) == ("MPSV-AC", d("25m"))
    assert chk("MPSV-AC", given, d("24m+5d")) is Reason.TOO_SOON
    ac = given + [g("MPSV-AC", "25m")]
    n = nxt("MEN", ac, d("3y"))
    assert (n.dose_number, n.earliest) == (4, d("6y"))                             # ≥ 3 years after AC 1, and 6 years


# ---------------------------------------------------------------- hepatitis A (HepA-L / HepA-I)


def test_hepa_live_one_dose() -> None:
    n = nxt("HepA", [], d("18m"))
    assert (n.series, n.status, n.alternatives) == ("HepA-L", Status.DUE, ("HepA-I",))
    assert nxt("HepA", [], d("24m")).status is Status.OVERDUE
    assert chk("HepA-L", [], d("17m")) is Reason.TOO_YOUNG
    assert nxt("HepA", [g("HepA-L", "18m")], d("3y")).status is Status.COMPLETE


def test_hepa_inactivated_two_doses_or_live_completes() -> None:
    given = [g("HepA-I", "18m")]
    n = nxt("HepA", given, d("20m"))
    assert (n.series, n.dose_number, n.earliest, n.give) == ("HepA-I", 2, d("2y"), ("HepA-I", "HepA-L"))
    late = [g("HepA-I", "4y")]
    assert nxt("HepA", late, d("4y1m")).earliest == d("4y6m")                      # ≥ 6 months apart
    assert chk("HepA-I", late, d("4y5m")) is Reason.TOO_SOON
    assert chk("HepA-L", late, d("4y6m")) is Reason.OK                              # HepA-L may complete
    assert nxt("HepA", late + [g("HepA-L", "4y6m")], d("5y")).status is Status.COMPLETE
    assert chk("HepA-I", [g("HepA-L", "18m")], d("3y")) is Reason.OTHER_SERIES


# ---------------------------------------------------------------- cross-vaccine rules


def test_two_live_injectables_same_day_or_28_days_apart() -> None:
    given = [g("MMR", "8m")]
    assert chk("JE-L", given, d("8m")) is Reason.OK                                 # same day
    assert chk("JE-L", given, d("8m+10d")) is Reason.LIVE_INTERVAL
    n = nxt("JE", given, d("8m+10d"))
    assert n.status is Status.NOT_YET_DUE and n.earliest == d("8m+28d")
    assert chk("JE-L", given, d("8m+28d")) is Reason.OK
    assert chk("JE-I", given, d("8m+10d")) is Reason.OK                              # inactivated: no restriction
    assert chk("bOPV", [g("IPV", "2m"), g("IPV", "3m"), g("BCG", "3m+20d")],
               d("4m")) is Reason.OK                                                 # oral live: no restriction


def test_unknown_vaccine() -> None:
    assert chk("EV71", [], d("1y")) is Reason.UNKNOWN_VACCINE


# ---------------------------------------------------------------- extra (self-paid) vaccine files

EXTRA = """
[[vaccine]]
code = "VAR"
name_zh = "水痘减毒活疫苗"
name_en = "Varicella vaccine, live"
live_injectable = true
programme = false
source = "product insert (self-paid)"

[[vaccine]]
code = "DTaP-IPV/Hib"
name_zh = "五联疫苗"
name_en = "DTaP-IPV/Hib combination"
programme = false

[[series]]
code = "VAR"
name_zh = "水痘疫苗"
name_en = "Varicella"
source = "self-paid"

[[series.dose]]
number = 1
product = "VAR"
min_age = "12m"
source = "insert"

[[series.dose]]
number = 2
product = "VAR"
min_age = "4y"
min_interval = "3m"
source = "insert"

[[counts_as]]
vaccine = "DTaP-IPV/Hib"
series = "DTP"
doses = [1, 2, 3, 4]
give = true

[[counts_as]]
vaccine = "DTaP-IPV/Hib"
series = "Polio"
doses = [1, 2, 3, 4]
give = true
min_ages = ["2m", "3m", "4m", "18m"]
"""


def test_extra_file_adds_self_paid_vaccines(tmp_path: Path) -> None:
    extra = tmp_path / "selfpaid.toml"
    extra.write_text(EXTRA, encoding="utf-8")
    sched = load_schedule(extra=[extra])
    assert sched.series[-1].code == "VAR" and not sched.vaccines["VAR"].programme
    n = nxt("VAR", [], d("1y"), schedule=sched)
    assert n.status is Status.DUE and n.earliest == d("12m")
    combo = [g("DTaP-IPV/Hib", "2m"), g("DTaP-IPV/Hib", "3m"), g("DTaP-IPV/Hib", "4m")]
    assert nxt("DTP", combo, d("5m"), schedule=sched).dose_number == 4
    assert nxt("Polio", combo, d("5m"), schedule=sched).dose_number == 4
    v = check_administration(sched, BIRTH, combo, "DTaP-IPV/Hib", d("18m"))
    assert v.ok                                   # the combination's own minimum age for polio dose 4
    assert check_administration(sched, BIRTH, combo, "bOPV", d("18m")).reason is Reason.TOO_YOUNG
    assert nxt("Polio", combo + [g("DTaP-IPV/Hib", "18m")], d("2y"), schedule=sched).status is Status.COMPLETE
    v = check_administration(sched, BIRTH, combo, "DTaP-IPV/Hib", d("12m"))        # DTP dose 4 not before 18 months
    assert v.reason is Reason.TOO_YOUNG and v.earliest == d("18m")
    # a live self-paid vaccine is subject to the 28-day rule with programme live vaccines
    assert check_administration(sched, BIRTH, [g("MMR", "12m")], "VAR", d("12m+7d")).reason is Reason.LIVE_INTERVAL


@pytest.mark.parametrize("text,message", [
    ("[[vaccine]]\ncode='X'\nname_zh='x'\nname_en='x'\ncolour='red'\n", "unknown key"),
    ("[[vaccine]]\ncode='HepB'\nname_zh='x'\nname_en='x'\n", "defined twice"),
    ("[[series]]\ncode='X'\nname_zh='x'\nname_en='x'\n[[series.dose]]\nnumber=1\nproduct='NOPE'\nmin_age='1m'\n",
     "unknown vaccine"),
    ("[[series]]\ncode='X'\nname_zh='x'\nname_en='x'\n[[series.dose]]\nnumber=2\nproduct='HepB'\nmin_age='1m'\n",
     "numbered"),
    ("[[series]]\ncode='X'\nname_zh='x'\nname_en='x'\nrule='magic'\n[[series.dose]]\nnumber=1\nproduct='HepB'\n"
     "min_age='1m'\n", "unknown rule"),
    ("[[series]]\ncode='X'\nname_zh='x'\nname_en='x'\n[[series.dose]]\nnumber=1\nproduct='HepB'\nmin_age='soon'\n",
     "bad age"),
    ("this is = not toml =", "schedule"),
])
def test_bad_extra_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    extra = tmp_path / "bad.toml"
    extra.write_text(text, encoding="utf-8")
    with pytest.raises(ScheduleError, match=message if message != "schedule" else "bad.toml"):
        load_schedule(extra=[extra])


# ---------------------------------------------------------------- properties

_GENERIC = {"HepB", "BCG", "MMR", "JE-L", "JE-I", "HepA-L", "HepA-I"}


def _simulate(birth: dt.date, delays: list[int], start: int) -> tuple[list[GivenDose], dt.date]:
    """Give every due or overdue dose on each visit, visits ``delays`` days apart, checking invariants."""
    given: list[GivenDose] = []
    today = birth + dt.timedelta(days=start)
    end = Age(18).after(birth)
    for delay in delays:
        if today >= end:
            break
        for n in next_doses(SCHEDULE, birth, given, today):
            _invariants(birth, given, today, n)
            if n.status in (Status.DUE, Status.OVERDUE):
                assert n.product is not None
                verdict = check_administration(SCHEDULE, birth, given, n.product, today)
                assert verdict.ok, (n, verdict)
                given.append(GivenDose(n.product, today, n.dose_number))
            elif n.status is Status.NOT_YET_DUE:
                assert n.product is not None and n.earliest is not None
                verdict = check_administration(SCHEDULE, birth, given, n.product, today)
                assert not verdict.ok and verdict.reason in (Reason.TOO_YOUNG, Reason.TOO_SOON, Reason.LIVE_INTERVAL)
        today += dt.timedelta(days=delay)
    return given, today


def _invariants(birth: dt.date, given: list[GivenDose], today: dt.date, n: NextDose) -> None:
    if n.status in (Status.COMPLETE,):
        return
    assert n.earliest is not None and n.recommended is not None and n.earliest >= birth
    assert n.recommended >= n.earliest
    series = SCHEDULE.series_by_code(n.series)
    mine = sorted(x.date for x in given if series.counts(x.vaccine) and x.date)
    if mine:
        assert n.earliest > mine[-1]                          # never the same day as the previous dose
    if n.series in _GENERIC and n.dose_number is not None:
        spec = series.doses[n.dose_number - 1]
        assert n.earliest >= spec.min_age.after(birth)
        if spec.min_interval and mine:
            assert n.earliest >= spec.min_interval.after(mine[-1])


@settings(max_examples=60, deadline=None)
@given(birth=st.dates(dt.date(2005, 1, 1), dt.date(2030, 12, 31)),
       delays=st.lists(st.integers(1, 400), min_size=80, max_size=80), start=st.integers(0, 3))
def test_following_the_schedule_completes_every_series(birth: dt.date, delays: list[int], start: int) -> None:
    given, today = _simulate(birth, delays, start)
    final = next_doses(SCHEDULE, birth, given, max(today, Age(7).after(birth)))
    for n in final:
        # BCG at a first visit later than day 0 can still be given; everything is complete by 18 at the latest
        assert n.status in (Status.COMPLETE, Status.NOT_YET_DUE, Status.DUE, Status.OVERDUE), n
    if today >= Age(18).after(birth) - dt.timedelta(days=400):
        assert all(n.status is Status.COMPLETE for n in final), final


@settings(max_examples=60, deadline=None)
@given(birth=st.dates(dt.date(2005, 1, 1), dt.date(2030, 12, 31)),
       delays=st.lists(st.integers(1, 200), min_size=40, max_size=40), later=st.integers(0, 10000))
def test_complete_series_stay_complete(birth: dt.date, delays: list[int], later: int) -> None:
    given, today = _simulate(birth, delays, 0)
    before = {n.series: n.status for n in next_doses(SCHEDULE, birth, given, today)}
    after = {n.series: n.status for n in next_doses(SCHEDULE, birth, given, today + dt.timedelta(days=later))}
    for code, status in before.items():
        if status is Status.COMPLETE:
            assert after[code] is Status.COMPLETE
            series = SCHEDULE.series_by_code(code)
            verdict = check_administration(SCHEDULE, birth, given, series.doses[0].product, today)
            assert verdict.reason in (Reason.SERIES_COMPLETE, Reason.OTHER_SERIES)


@settings(max_examples=100, deadline=None)
@given(birth=st.dates(dt.date(2005, 1, 1), dt.date(2030, 12, 31)), age_days=st.integers(0, 18 * 366),
       history=st.lists(st.tuples(st.sampled_from(PROGRAMME), st.integers(0, 18 * 366)), max_size=12))
def test_earliest_date_is_tight_for_any_record(birth: dt.date, age_days: int,
                                              history: list[tuple[str, int]]) -> None:
    today = birth + dt.timedelta(days=age_days)
    given = [GivenDose(v, birth + dt.timedelta(days=min(a, age_days))) for v, a in history]
    for n in next_doses(SCHEDULE, birth, given, today):
        if n.status is Status.COMPLETE:
            continue
        assert n.earliest is not None and n.product is not None
        verdict = check_administration(SCHEDULE, birth, given, n.product, max(today, n.earliest))
        if n.status is Status.AGED_OUT:
            assert verdict.reason is Reason.BEYOND_CATCHUP_AGE
            continue
        if n.series in ("JE-L", "JE-I", "HepA-L", "HepA-I") and verdict.reason is Reason.OTHER_SERIES:
            continue
        assert verdict.ok, (n, verdict)                        # allowed on the earliest date ...
        if n.earliest > today:
            early = check_administration(SCHEDULE, birth, given, n.product, n.earliest - dt.timedelta(days=1))
            assert not early.ok                                 # ... and not the day before
