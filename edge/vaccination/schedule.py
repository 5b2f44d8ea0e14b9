"""Children's immunization schedule: the data model, the next dose of each vaccine, checks before a dose is given.

The schedule is data (``nip_2021.toml`` beside this module, plus optional self-paid vaccine files in the same
format); everything here is a pure function of a birth date, the doses already given and "today". See
docs/vaccination.md for the model, the statuses and the catch-up rules implemented.

Example::

    schedule = load_schedule()
    for nd in next_doses(schedule, birth, given, today):
        print(nd.series, nd.dose_number, nd.product, nd.status, nd.earliest, nd.recommended)
    verdict = check_administration(schedule, birth, given, "DTaP", today)
    if not verdict.ok:
        print(verdict.reason, verdict.message)
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
import logging
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_SCHEDULE = "nip_2021.toml"
RULES = ("polio", "dtp", "men")

_AGE_RE = re.compile(r"(\d+)([ymwd])")


class ScheduleError(ValueError):
    """A schedule file is malformed (unknown key, bad age, unknown product, duplicate code ...)."""


@dataclass(frozen=True, slots=True)
class Age:
    """A calendar age or interval: years and months are added on the calendar, then days.

    ``Age.parse("1y6m").after(date(2024, 1, 31))`` is 2025-07-31; a day past the end of a month is clamped
    (31 January + 1 month = 28 or 29 February)."""

    years: int = 0
    months: int = 0
    days: int = 0

    @classmethod
    def parse(cls, text: str) -> Age:
        """Parse ``"0d"``, ``"28d"``, ``"3m"``, ``"6y"``, ``"2w"``, ``"1y6m"``."""
        if not isinstance(text, str) or not text or _AGE_RE.sub("", text) != "":
            raise ScheduleError(f"bad age or interval {text!r} (expected e.g. '28d', '3m', '6y', '1y6m')")
        y = m = d = 0
        for num, unit in _AGE_RE.findall(text):
            n = int(num)
            if unit == "y":
                y += n
            elif unit == "m":
                m += n
            elif unit == "w":
                d += 7 * n
            else:
                d += n
        return cls(y, m, d)

    def after(self, start: dt.date) -> dt.date:
        """The date this age / interval after ``start``."""
        months = start.month - 1 + self.months + 12 * self.years
        year, month = start.year + months // 12, months % 12 + 1
        day = min(start.day, calendar.monthrange(year, month)[1])
        return dt.date(year, month, day) + dt.timedelta(days=self.days)

    def __str__(self) -> str:
        parts = [f"{n}{u}" for n, u in ((self.years, "y"), (self.months, "m"), (self.days, "d")) if n]
        return "".join(parts) or "0d"


@dataclass(frozen=True, slots=True)
class Vaccine:
    """A product that can be given or found in a record (``IPV``, ``bOPV``, ``JE-L`` ...)."""

    code: str
    name_zh: str
    name_en: str
    live_injectable: bool = False
    programme: bool = True
    source: str = ""


@dataclass(frozen=True, slots=True)
class Interval:
    """A minimum interval from the latest given of the doses ``from_doses`` of the same series."""

    from_doses: tuple[int, ...]
    min: Age


@dataclass(frozen=True, slots=True)
class DoseSpec:
    """One dose of a series. Ages are from birth; ``due_by`` and ``max_age`` are exclusive ("before 12 months")."""

    number: int
    product: str
    give: tuple[str, ...]
    accepts: tuple[str, ...]
    min_age: Age
    recommended_age: Age
    due_by: Age | None = None
    max_age: Age | None = None
    skip_after_max_age: bool = False
    min_interval: Age | None = None
    intervals: tuple[Interval, ...] = ()
    condition: str | None = None
    condition_from_age: Age | None = None
    min_age_for: tuple[tuple[str, Age], ...] = ()   # other minimum ages for some products (combination vaccines)
    source: str = ""


@dataclass(frozen=True, slots=True)
class Series:
    """What a child must receive against one disease (or one alternative way of doing it, see ``group``)."""

    code: str
    name_zh: str
    name_en: str
    doses: tuple[DoseSpec, ...]
    group: str
    preferred: bool = False
    max_age: Age | None = None
    rule: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    def counts(self, vaccine: str) -> bool:
        """Whether a record of ``vaccine`` counts towards this series."""
        return any(vaccine in d.accepts for d in self.doses)

    def gives(self, vaccine: str) -> bool:
        """Whether ``vaccine`` may be given for some dose of this series."""
        return any(vaccine in d.give for d in self.doses)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A loaded schedule: products, series (in display order), general catch-up limits."""

    edition: str
    vaccines: Mapping[str, Vaccine]
    series: tuple[Series, ...]
    catchup_max_age: Age
    live_interval: Age
    document: Mapping[str, Any] = field(default_factory=dict)

    def groups(self) -> list[tuple[Series, ...]]:
        """Series grouped by ``group``, in file order (alternative series share a group)."""
        out: dict[str, list[Series]] = {}
        for s in self.series:
            out.setdefault(s.group, []).append(s)
        return [tuple(v) for v in out.values()]

    def series_by_code(self, code: str) -> Series:
        for s in self.series:
            if s.code == code:
                return s
        raise KeyError(code)


@dataclass(frozen=True, slots=True)
class GivenDose:
    """A dose in the child's record. ``vaccine`` is a product code of the schedule; ``date`` may be unknown (an
    old paper record): the dose then counts, but no interval can be measured from it. ``product`` is free text
    (brand, traceability product), carried but not used by the rules."""

    vaccine: str
    date: dt.date | None = None
    dose_number: int | None = None
    product: str | None = None


class Status(enum.StrEnum):
    """Where the next dose of a series stands on a given day."""

    DUE = "due"                    # allowed today, not yet late
    OVERDUE = "overdue"            # allowed today, past the age it should have been given by
    NOT_YET_DUE = "not_yet_due"    # not allowed before ``earliest``
    COMPLETE = "complete"          # nothing more to give
    AGED_OUT = "aged_out"          # beyond the catch-up age: no longer given


class Reason(enum.StrEnum):
    """Outcome of :func:`check_administration`."""

    OK = "ok"
    SERIES_COMPLETE = "series_complete"
    TOO_YOUNG = "too_young"                    # minimum age of the dose not reached
    TOO_SOON = "too_soon"                      # minimum interval from an earlier dose not reached
    LIVE_INTERVAL = "live_interval"            # < 28 days after another injectable live vaccine
    BEYOND_CATCHUP_AGE = "beyond_catchup_age"
    WRONG_PRODUCT = "wrong_product"            # this dose must be another product (e.g. DT from age 6, IPV first)
    OTHER_SERIES = "other_series"              # the child is on the alternative series (JE-L vs JE-I ...)
    UNKNOWN_VACCINE = "unknown_vaccine"


@dataclass(frozen=True, slots=True)
class NextDose:
    """The next dose of one series (for alternative series: of the one the child is on, or the preferred one)."""

    group: str
    series: str
    name_zh: str
    name_en: str
    status: Status
    doses_given: int
    dose_number: int | None = None
    product: str | None = None
    give: tuple[str, ...] = ()
    earliest: dt.date | None = None
    recommended: dt.date | None = None
    due_by: dt.date | None = None
    last_date: dt.date | None = None
    condition: str | None = None
    alternatives: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True, slots=True)
class AdministrationCheck:
    """Verdict on giving ``vaccine`` today. ``ok`` is true only for :attr:`Reason.OK`; ``condition`` (e.g.
    ``ppd_negative`` for a late BCG) must still be confirmed by the nurse."""

    vaccine: str
    reason: Reason
    series: str | None = None
    dose_number: int | None = None
    earliest: dt.date | None = None
    overdue: bool = False
    condition: str | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is Reason.OK


# ---------------------------------------------------------------- loading

_TOP_KEYS = {"edition", "catchup_max_age", "live_interval", "document", "vaccine", "series", "counts_as"}
_VACCINE_KEYS = {"code", "name_zh", "name_en", "live_injectable", "programme", "source"}
_SERIES_KEYS = {"code", "name_zh", "name_en", "group", "preferred", "max_age", "rule", "params", "source", "dose"}
_DOSE_KEYS = {"number", "product", "give", "accepts", "min_age", "recommended_age", "due_by", "max_age",
              "skip_after_max_age", "min_interval", "intervals", "condition", "condition_from_age", "source"}
_COUNTS_KEYS = {"vaccine", "series", "doses", "give", "min_ages"}


def _keys(table: Mapping[str, Any], allowed: set[str], where: str, required: Iterable[str] = ()) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ScheduleError(f"{where}: unknown key(s) {', '.join(unknown)}")
    missing = [k for k in required if k not in table]
    if missing:
        raise ScheduleError(f"{where}: missing key(s) {', '.join(missing)}")


def _opt_age(value: Any) -> Age | None:
    return None if value is None else Age.parse(value)


def _dose(raw: Mapping[str, Any], where: str) -> DoseSpec:
    _keys(raw, _DOSE_KEYS, where, ("number", "product", "min_age"))
    give = tuple(raw.get("give", [raw["product"]]))
    if raw["product"] not in give:
        raise ScheduleError(f"{where}: product {raw['product']!r} must be in give")
    try:
        intervals = tuple(Interval(tuple(i["from"]), Age.parse(i["min"])) for i in raw.get("intervals", []))
    except (KeyError, TypeError) as exc:
        raise ScheduleError(f"{where}: intervals entries need 'from' (list of dose numbers) and 'min'") from exc
    min_age = Age.parse(raw["min_age"])
    return DoseSpec(
        number=int(raw["number"]), product=raw["product"], give=give, accepts=tuple(raw.get("accepts", give)),
        min_age=min_age, recommended_age=_opt_age(raw.get("recommended_age")) or min_age,
        due_by=_opt_age(raw.get("due_by")), max_age=_opt_age(raw.get("max_age")),
        skip_after_max_age=bool(raw.get("skip_after_max_age", False)), min_interval=_opt_age(raw.get("min_interval")),
        intervals=intervals, condition=raw.get("condition"), condition_from_age=_opt_age(raw.get("condition_from_age")),
        source=raw.get("source", ""))


def _series(raw: Mapping[str, Any], where: str) -> Series:
    _keys(raw, _SERIES_KEYS, where, ("code", "name_zh", "name_en", "dose"))
    doses = tuple(_dose(d, f"{where} dose {i + 1}") for i, d in enumerate(raw["dose"]))
    if [d.number for d in doses] != list(range(1, len(doses) + 1)):
        raise ScheduleError(f"{where}: doses must be numbered 1..{len(doses)} in order")
    rule = raw.get("rule")
    if rule is not None and rule not in RULES:
        raise ScheduleError(f"{where}: unknown rule {rule!r} (known: {', '.join(RULES)})")
    return Series(code=raw["code"], name_zh=raw["name_zh"], name_en=raw["name_en"], doses=doses,
                  group=raw.get("group", raw["code"]), preferred=bool(raw.get("preferred", False)),
                  max_age=_opt_age(raw.get("max_age")), rule=rule, params=dict(raw.get("params", {})),
                  source=raw.get("source", ""))


def _merge(data: Mapping[str, Any], base: Schedule | None, where: str) -> Schedule:
    _keys(data, _TOP_KEYS, where)
    vaccines = dict(base.vaccines) if base else {}
    for i, raw in enumerate(data.get("vaccine", [])):
        _keys(raw, _VACCINE_KEYS, f"{where} vaccine {i + 1}", ("code", "name_zh", "name_en"))
        if raw["code"] in vaccines:
            raise ScheduleError(f"{where}: vaccine {raw['code']!r} defined twice")
        vaccines[raw["code"]] = Vaccine(raw["code"], raw["name_zh"], raw["name_en"],
                                        bool(raw.get("live_injectable", False)), bool(raw.get("programme", True)),
                                        raw.get("source", ""))
    series = list(base.series) if base else []
    for i, raw in enumerate(data.get("series", [])):
        s = _series(raw, f"{where} series {raw.get('code', i + 1)}")
        if any(s.code == o.code for o in series):
            raise ScheduleError(f"{where}: series {s.code!r} defined twice")
        series.append(s)
    for i, raw in enumerate(data.get("counts_as", [])):
        w = f"{where} counts_as {i + 1}"
        _keys(raw, _COUNTS_KEYS, w, ("vaccine", "series", "doses"))
        idx = next((k for k, s in enumerate(series) if s.code == raw["series"]), None)
        if idx is None:
            raise ScheduleError(f"{w}: unknown series {raw['series']!r}")
        s = series[idx]
        doses = list(s.doses)
        min_ages = [Age.parse(a) for a in raw.get("min_ages", [])]
        if min_ages and len(min_ages) != len(raw["doses"]):
            raise ScheduleError(f"{w}: min_ages needs one age per dose")
        for k, n in enumerate(raw["doses"]):
            if not 1 <= n <= len(doses):
                raise ScheduleError(f"{w}: series {s.code} has no dose {n}")
            d = doses[n - 1]
            give = d.give + ((raw["vaccine"],) if raw.get("give", False) else ())
            extra_age = ((raw["vaccine"], min_ages[k]),) if min_ages else ()
            doses[n - 1] = replace(d, give=give, accepts=d.accepts + (raw["vaccine"],),
                                   min_age_for=d.min_age_for + extra_age)
        series[idx] = replace(s, doses=tuple(doses))
    for s in series:
        for d in s.doses:
            unknown = [v for v in d.give + d.accepts if v not in vaccines]
            if unknown:
                raise ScheduleError(f"{where}: series {s.code} dose {d.number}: unknown vaccine(s) {unknown}")
    return Schedule(
        edition=data.get("edition", base.edition if base else ""), vaccines=vaccines, series=tuple(series),
        catchup_max_age=Age.parse(data["catchup_max_age"]) if "catchup_max_age" in data else (
            base.catchup_max_age if base else Age(18)),
        live_interval=Age.parse(data["live_interval"]) if "live_interval" in data else (
            base.live_interval if base else Age(days=28)),
        document=data.get("document", base.document if base else {}))


def parse_schedule(data: Mapping[str, Any], base: Schedule | None = None, where: str = "schedule") -> Schedule:
    """Build a schedule from parsed TOML; with ``base``, add the file's vaccines and series to it."""
    return _merge(data, base, where)


def load_schedule(extra: Sequence[str | Path] = (), path: str | Path | None = None) -> Schedule:
    """Load the NIP 2021 schedule (or ``path``), then each extra file (self-paid vaccines) on top of it."""
    if path is None:
        text = resources.files(__package__).joinpath(DEFAULT_SCHEDULE).read_text(encoding="utf-8")
        where = DEFAULT_SCHEDULE
    else:
        text, where = Path(path).read_text(encoding="utf-8"), str(path)
    try:
        schedule = _merge(tomllib.loads(text), None, where)
        for p in extra:
            where = str(p)
            schedule = _merge(tomllib.loads(Path(p).read_text(encoding="utf-8")), schedule, where)
    except tomllib.TOMLDecodeError as exc:
        raise ScheduleError(f"{where}: {exc}") from exc
    logger.debug("schedule %s loaded: %s series, %s vaccines", schedule.edition, len(schedule.series),
                 len(schedule.vaccines))
    return schedule


# ---------------------------------------------------------------- computation


@dataclass(frozen=True, slots=True)
class _Plan:
    """The next dose of one series before the cross-series live-vaccine rule and status are applied."""

    series: Series
    matched: tuple[GivenDose, ...]
    complete: bool = False
    number: int | None = None
    product: str | None = None
    give: tuple[str, ...] = ()
    age_floor: dt.date | None = None
    interval_floor: dt.date | None = None
    recommended: dt.date | None = None
    due_by: dt.date | None = None
    limit: dt.date | None = None     # exclusive
    condition: str | None = None
    source: str = ""

    @property
    def floor(self) -> dt.date | None:
        dates = [d for d in (self.age_floor, self.interval_floor) if d is not None]
        return max(dates) if dates else None


def _sorted(given: Iterable[GivenDose]) -> list[GivenDose]:
    return sorted(given, key=lambda g: (g.date or dt.date.min, g.dose_number or 0))


def _match(series: Series, records: Sequence[GivenDose]) -> tuple[dict[int, GivenDose], int]:
    """Assign records (in date order) to dose positions; returns ``{dose number: record}`` and the next index."""
    given: dict[int, GivenDose] = {}
    p = 0
    for r in records:
        q = p
        while q < len(series.doses) and r.vaccine not in series.doses[q].accepts and series.doses[q].skip_after_max_age:
            q += 1
        if q < len(series.doses) and r.vaccine in series.doses[q].accepts:
            given[series.doses[q].number] = r
            p = q + 1
    return given, p


def _latest(records: Iterable[GivenDose | None]) -> dt.date | None:
    dates = [r.date for r in records if r is not None and r.date is not None]
    return max(dates) if dates else None


def _limit(schedule: Schedule, series: Series, dose: DoseSpec | None, birth: dt.date) -> dt.date:
    ages = [series.max_age or schedule.catchup_max_age] + ([dose.max_age] if dose and dose.max_age else [])
    return min(a.after(birth) for a in ages)


def _dose_plan(schedule: Schedule, series: Series, dose: DoseSpec, birth: dt.date, given: dict[int, GivenDose],
               matched: tuple[GivenDose, ...], min_age: Age | None = None) -> _Plan:
    floors = []
    last = _latest(matched[-1:]) if matched else None
    if dose.min_interval and last:
        floors.append(dose.min_interval.after(last))
    for iv in dose.intervals:
        ref = _latest(given.get(n) for n in iv.from_doses)
        if ref:
            floors.append(iv.min.after(ref))
    age_floor = (min_age or dose.min_age).after(birth)
    interval_floor = max(floors) if floors else None
    floor = max([age_floor] + floors)
    return _Plan(series, matched, number=dose.number, product=dose.product, give=dose.give, age_floor=age_floor,
                 interval_floor=interval_floor, recommended=max(floor, dose.recommended_age.after(birth)),
                 due_by=dose.due_by.after(birth) if dose.due_by else None,
                 limit=_limit(schedule, series, dose, birth), condition=dose.condition, source=dose.source)


def _generic(schedule: Schedule, series: Series, birth: dt.date, records: Sequence[GivenDose], today: dt.date,
             min_age_override: dict[int, Age] | None = None) -> _Plan:
    given, p = _match(series, records)
    matched = tuple(given[n] for n in sorted(given))
    while p < len(series.doses):
        dose = series.doses[p]
        plan = _dose_plan(schedule, series, dose, birth, given, matched, (min_age_override or {}).get(dose.number))
        if dose.skip_after_max_age and plan.limit is not None and plan.floor is not None and (
                today >= plan.limit or plan.floor >= plan.limit):
            p += 1
            continue
        if dose.condition and dose.condition_from_age and max(today, plan.floor or today) < \
                dose.condition_from_age.after(birth):
            plan = replace(plan, condition=None)
        return plan
    return _Plan(series, matched, complete=True)


def _polio(schedule: Schedule, series: Series, birth: dt.date, records: Sequence[GivenDose], today: dt.date) -> _Plan:
    plan = _generic(schedule, series, birth, records, today)
    prm = series.params
    opv = set(prm.get("opv_products", ["bOPV", "tOPV"]))
    if any(r.vaccine in prm.get("topv_products", ["tOPV"]) for r in records):
        return plan
    missing_ipv = int(prm.get("ipv_required", 1)) - sum(r.vaccine not in opv for r in records)
    if missing_ipv <= 0 or not records:
        return plan
    ipv_give = tuple(v for v in series.doses[0].give if v not in opv) or (prm.get("ipv_product", "IPV"),)
    if not plan.complete:
        give = tuple(v for v in plan.give if v not in opv) or ipv_give
        return plan if plan.product not in opv else replace(plan, product=give[0], give=give)
    # all positions filled by OPV only: one more dose, IPV
    last = _latest(records[-1:])
    interval_floor = Age.parse(prm.get("extra_interval", "28d")).after(last) if last else None
    floor = max(d for d in (birth, interval_floor) if d is not None)
    return _Plan(series, tuple(records), number=len(records) + 1, product=ipv_give[0], give=ipv_give,
                 age_floor=birth, interval_floor=interval_floor, recommended=floor,
                 limit=_limit(schedule, series, None, birth), source=series.source)


def _dtp(schedule: Schedule, series: Series, birth: dt.date, records: Sequence[GivenDose], today: dt.date) -> _Plan:
    plan = _generic(schedule, series, birth, records, today)
    prm = series.params
    switch = Age.parse(prm.get("switch_age", "6y")).after(birth)
    if today < switch and (plan.complete or plan.floor is None or plan.floor < switch):
        return plan
    dt_code = prm.get("dt_product", "DT")
    counted = [r for r in records if series.counts(r.vaccine)]
    n, n_dt = len(counted), sum(r.vaccine == dt_code for r in counted)
    if n >= int(prm.get("dt_total", 3)) and n_dt >= 1:
        return _Plan(series, tuple(counted), complete=True)
    # fewer than 3 doses: DT up to 3 (1 month, then 6 months apart); 3 or more without DT: one DT after the last
    key = {0: None, 1: "dt_after_1", 2: "dt_after_2"}.get(n, "dt_after_dtap3" if n == 3 else "dt_after_dtap4")
    last = _latest(counted[-1:])
    interval_floor = Age.parse(prm[key]).after(last) if key and last else None
    floor = max(d for d in (switch, interval_floor) if d is not None)
    return _Plan(series, tuple(counted), number=n + 1, product=dt_code, give=(dt_code,), age_floor=switch,
                 interval_floor=interval_floor, recommended=floor,
                 due_by=_dtp_due_by(series, n, birth),
                 limit=_limit(schedule, series, None, birth), source=series.source)


def _dtp_due_by(series: Series, given: int, birth: dt.date) -> dt.date | None:
    """A DT catch-up dose is late if the routine dose of the same number is late (DT at 6: before 7)."""
    dose = series.doses[min(given, len(series.doses) - 1)]
    return dose.due_by.after(birth) if dose.due_by else None


def _men(schedule: Schedule, series: Series, birth: dt.date, records: Sequence[GivenDose], today: dt.date) -> _Plan:
    prm = series.params
    given, _ = _match(series, records)
    a_doses = list(prm.get("a_doses", [1, 2]))
    override = {}
    if any(n not in given for n in a_doses):
        override[int(prm.get("ac_first_dose", 3))] = Age.parse(prm.get("ac_early_min_age", "24m"))
    return _generic(schedule, series, birth, records, today, override)


_RULE_FUNCS = {"polio": _polio, "dtp": _dtp, "men": _men}


def _plan(schedule: Schedule, series: Series, birth: dt.date, given: Sequence[GivenDose], today: dt.date) -> _Plan:
    records = _sorted(g for g in given if series.counts(g.vaccine))
    func = _RULE_FUNCS.get(series.rule or "")
    return func(schedule, series, birth, records, today) if func else _generic(schedule, series, birth, records, today)


def _live_dates(schedule: Schedule, given: Iterable[GivenDose]) -> list[dt.date]:
    return sorted({g.date for g in given if g.date and schedule.vaccines.get(g.vaccine, _NO_VACCINE).live_injectable})


_NO_VACCINE = Vaccine("", "", "")


def _live_blocked(schedule: Schedule, day: dt.date, live: Sequence[dt.date]) -> dt.date | None:
    """The end of the live-vaccine window ``day`` falls in (another live dose < 28 days before), or None."""
    ends = [schedule.live_interval.after(d) for d in live if d < day < schedule.live_interval.after(d)]
    return max(ends) if ends else None


def _live_clear(schedule: Schedule, day: dt.date, live: Sequence[dt.date]) -> dt.date:
    while (end := _live_blocked(schedule, day, live)) is not None:
        day = end
    return day


def _chosen(group: Sequence[Series], given: Sequence[GivenDose]) -> tuple[Series, bool]:
    """The series of a group the child is on (the first one a record starts) and whether it was started."""
    if len(group) > 1:
        for r in _sorted(given):
            for s in group:
                if r.vaccine in s.doses[0].accepts:
                    return s, True
    started = any(group[0].counts(g.vaccine) for g in given)
    return next((s for s in group if s.preferred), group[0]), started


def _next(schedule: Schedule, group: Sequence[Series], series: Series, started: bool, birth: dt.date,
          given: Sequence[GivenDose], today: dt.date) -> tuple[NextDose, _Plan]:
    plan = _plan(schedule, series, birth, given, today)
    alternatives = tuple(s.code for s in group if s is not series) if not started else ()
    base = NextDose(group=series.group, series=series.code, name_zh=series.name_zh, name_en=series.name_en,
                    status=Status.COMPLETE, doses_given=len(plan.matched), alternatives=alternatives,
                    source=plan.source or series.source)
    if plan.complete:
        return base, plan
    earliest = plan.floor or birth
    if schedule.vaccines.get(plan.product or "", _NO_VACCINE).live_injectable:
        live = _live_dates(schedule, given)
        if earliest <= today and _live_blocked(schedule, today, live) is not None:
            earliest = _live_clear(schedule, today, live)
        else:
            earliest = _live_clear(schedule, earliest, live)
    last_date = plan.limit - dt.timedelta(days=1) if plan.limit else None
    if plan.limit is not None and (today >= plan.limit or earliest >= plan.limit):
        status = Status.AGED_OUT
    elif today < earliest:
        status = Status.NOT_YET_DUE
    elif plan.due_by is not None and today >= plan.due_by:
        status = Status.OVERDUE
    else:
        status = Status.DUE
    nd = replace(base, status=status, dose_number=plan.number, product=plan.product, give=plan.give,
                 earliest=earliest, recommended=max(earliest, plan.recommended or earliest), due_by=plan.due_by,
                 last_date=last_date, condition=plan.condition)
    return nd, plan


def next_doses(schedule: Schedule, birth: dt.date, given: Sequence[GivenDose], today: dt.date) -> list[NextDose]:
    """The next dose of every series (one entry per group of alternative series), in schedule order."""
    out = []
    for group in schedule.groups():
        series, started = _chosen(group, given)
        out.append(_next(schedule, group, series, started, birth, given, today)[0])
    logger.debug("schedule computed: %s series, %s due or overdue", len(out),
                 sum(nd.status in (Status.DUE, Status.OVERDUE) for nd in out))
    return out


def _check_group(schedule: Schedule, group: Sequence[Series], vaccine: str, birth: dt.date,
                 given: Sequence[GivenDose], today: dt.date) -> AdministrationCheck:
    series, started = _chosen(group, given)
    if not series.gives(vaccine) and not series.counts(vaccine):
        other = next((s for s in group if s.gives(vaccine)), None)
        if started or other is None:
            return AdministrationCheck(vaccine, Reason.OTHER_SERIES, series.code,
                                       message=f"the child is on the {series.code} series, not {vaccine}")
        series, started = other, False
    nd, plan = _next(schedule, group, series, started, birth, given, today)
    common = {"series": series.code, "dose_number": nd.dose_number, "earliest": nd.earliest}
    if nd.status is Status.COMPLETE:
        return AdministrationCheck(vaccine, Reason.SERIES_COMPLETE, series.code,
                                   message=f"{series.code}: all doses already given")
    if nd.status is Status.AGED_OUT:
        return AdministrationCheck(vaccine, Reason.BEYOND_CATCHUP_AGE, **common,
                                   message=f"{series.code}: not given at this age (catch-up limit)")
    if vaccine not in nd.give:
        return AdministrationCheck(vaccine, Reason.WRONG_PRODUCT, **common,
                                   message=f"{series.code} dose {nd.dose_number} must be {'/'.join(nd.give)}")
    age_floor = plan.age_floor
    if plan.number is not None and plan.number <= len(series.doses):
        own = dict(series.doses[plan.number - 1].min_age_for).get(vaccine)
        age_floor = own.after(birth) if own is not None else age_floor
    if age_floor is not None and today < age_floor:
        common["earliest"] = max(age_floor, plan.interval_floor or age_floor)
        return AdministrationCheck(vaccine, Reason.TOO_YOUNG, **common,
                                   message=f"{series.code} dose {nd.dose_number} not before {age_floor}")
    if plan.interval_floor is not None and today < plan.interval_floor:
        return AdministrationCheck(vaccine, Reason.TOO_SOON, **common,
                                   message=f"{series.code} dose {nd.dose_number}: minimum interval until "
                                           f"{plan.interval_floor}")
    vac = schedule.vaccines.get(vaccine, _NO_VACCINE)
    if vac.live_injectable and _live_blocked(schedule, today, _live_dates(schedule, given)) is not None:
        return AdministrationCheck(vaccine, Reason.LIVE_INTERVAL, **common,
                                   message=f"another live vaccine less than {schedule.live_interval} ago")
    return AdministrationCheck(vaccine, Reason.OK, **common, overdue=nd.status is Status.OVERDUE,
                               condition=nd.condition, message="ok")


def check_administration(schedule: Schedule, birth: dt.date, given: Sequence[GivenDose], vaccine: str,
                         today: dt.date) -> AdministrationCheck:
    """Whether ``vaccine`` may be given today. For a product that counts in several series (a combination
    vaccine from an extra file), the first refusal wins."""
    if vaccine not in schedule.vaccines:
        return AdministrationCheck(vaccine, Reason.UNKNOWN_VACCINE, message=f"{vaccine!r} is not in the schedule")
    checks = [_check_group(schedule, g, vaccine, birth, given, today) for g in schedule.groups()
              if any(s.gives(vaccine) or s.counts(vaccine) for s in g)]
    if not checks:
        return AdministrationCheck(vaccine, Reason.UNKNOWN_VACCINE, message=f"{vaccine!r} is in no series")
    return next((c for c in checks if not c.ok), checks[0])
