"""EU DCC value sets: the codes each coded field of a certificate may hold (vaccine, test device, country, ...).

The product ships the EU eHealth Network's value sets as package data (``valuesets/*.json``, Apache-2.0, each with
its ``valueSetDate``); the signed trust list may carry newer ones. Per value-set id the newest by date is kept, and
an older one than held is refused, as a trust-list rollback is. Membership is by code: a code upstream marks
inactive is still a member (certificates issued while it was active stay valid).

Which field takes which value set follows the ``valueset-uri`` annotations of the DCC JSON schema (1.3.x; the
tests check :data:`DCC_CODED_FIELDS` against every shared schema version).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

logger = logging.getLogger(__name__)

DCC_CODED_FIELDS: Mapping[str, Mapping[str, str]] = {
    "v": {"tg": "disease-agent-targeted", "vp": "sct-vaccines-covid-19", "mp": "vaccines-covid-19-names",
          "ma": "vaccines-covid-19-auth-holders", "co": "country-2-codes"},
    "t": {"tg": "disease-agent-targeted", "tt": "covid-19-lab-test-type",
          "ma": "covid-19-lab-test-manufacturer-and-name", "tr": "covid-19-lab-result", "co": "country-2-codes"},
    "r": {"tg": "disease-agent-targeted", "co": "country-2-codes"},
}
"""Per certificate group (``v``, ``t``, ``r``), each coded field and the id of its value set."""

RAPID_ANTIGEN_TEST = "LP217198-3"
ONLY_WHEN: Mapping[tuple[str, str], tuple[str, str]] = {("t", "ma"): ("tt", RAPID_ANTIGEN_TEST)}
"""Fields checked only under a condition: a test's ``ma`` (the schema's "RAT test name and manufacturer", the
device list) only on a rapid antigen test, as the EU rule TR-EU-0002 does. NAAT certificates carry no device and
some issuers fill ``ma`` with ``""`` or ``"N/A"`` there."""

SCHEMA_VALUESET_FILES: Mapping[str, str] = {
    "disease-agent-targeted.json": "disease-agent-targeted",
    "vaccine-prophylaxis.json": "sct-vaccines-covid-19",
    "vaccine-medicinal-product.json": "vaccines-covid-19-names",
    "vaccine-mah-manf.json": "vaccines-covid-19-auth-holders",
    "test-type.json": "covid-19-lab-test-type",
    "test-manf.json": "covid-19-lab-test-manufacturer-and-name",
    "test-result.json": "covid-19-lab-result",
    "test-results.json": "covid-19-lab-result",  # schema 1.0.x spelling
    "country-2-codes.json": "country-2-codes",
}
"""The file names of the schema's ``valueset-uri`` annotations and the value-set ids they stand for."""

MAX_VALUE_SETS = 32
MAX_CODES = 20_000
MAX_CODE_CHARS = 128
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
PACKAGE = "package"


@dataclass(frozen=True, slots=True)
class ValueSet:
    """One value set: its id, its date (``YYYY-MM-DD``), its codes and where it came from (``package`` or
    ``trust list N``)."""

    id: str
    date: str
    codes: frozenset[str] = field(repr=False)
    source: str = PACKAGE

    def __post_init__(self) -> None:
        if not (isinstance(self.id, str) and _ID_RE.fullmatch(self.id)):
            raise ValueError("value set id must be 1-64 letters, digits, '.', '_' or '-'")
        if not (isinstance(self.date, str) and _DATE_RE.fullmatch(self.date)):
            raise ValueError("value set date must be YYYY-MM-DD")
        dt.date.fromisoformat(self.date)  # ValueError when not a date
        if len(self.codes) > MAX_CODES:
            raise ValueError(f"value set {self.id} holds more than {MAX_CODES} codes")
        if not all(isinstance(c, str) and 0 < len(c) <= MAX_CODE_CHARS for c in self.codes):
            raise ValueError(f"value set {self.id}: codes must be text of 1-{MAX_CODE_CHARS} characters")

    @classmethod
    def from_upstream(cls, doc: Mapping[str, Any], source: str = PACKAGE) -> ValueSet:
        """A value set in the EU format: ``{"valueSetId", "valueSetDate", "valueSetValues": {code: {...}}}``."""
        if not isinstance(doc, Mapping):
            raise ValueError("a value set must be a JSON object")
        values = doc.get("valueSetValues")
        if not isinstance(values, Mapping):
            raise ValueError("valueSetValues must be an object")
        return cls(doc.get("valueSetId"), doc.get("valueSetDate"), frozenset(values), source)  # type: ignore[arg-type]

    @classmethod
    def from_compact(cls, doc: Mapping[str, Any], source: str) -> ValueSet:
        """A value set in the trust list's form: ``{"id", "date", "codes": [code, ...]}``."""
        if not isinstance(doc, Mapping):
            raise ValueError("a value set must be a JSON object")
        codes = doc.get("codes")
        if not isinstance(codes, list):
            raise ValueError("codes must be a list")
        return cls(doc.get("id"), doc.get("date"), frozenset(codes), source)  # type: ignore[arg-type]

    def compact(self) -> dict[str, Any]:
        """The trust list's form (codes sorted)."""
        return {"id": self.id, "date": self.date, "codes": sorted(self.codes)}


@dataclass(frozen=True, slots=True)
class UnknownCode:
    """A coded field whose code is not in its value set: the field (``t[0].ma``), the code (None when the field
    is not text), and the value set that refused it with its date and source."""

    field: str
    code: str | None
    value_set: str
    date: str
    source: str

    def describe(self) -> str:
        """One line for a verdict or a log (codes are product, device or country codes: not personal data)."""
        code = "a non-text value" if self.code is None else f"code {self.code!r}"
        return f"{self.field}: {code} is not in value set {self.value_set} of {self.date} ({self.source})"

    def as_dict(self) -> dict[str, str | None]:
        return {"field": self.field, "code": self.code, "value_set": self.value_set, "date": self.date,
                "source": self.source}


@functools.cache
def _packaged() -> tuple[ValueSet, ...]:
    folder = resources.files(__package__).joinpath("valuesets")
    sets = []
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".json"):
            sets.append(ValueSet.from_upstream(json.loads(item.read_text(encoding="utf-8"))))
    return tuple(sets)


class DccValueSets:
    """The value sets a box holds, newest per id: ``DccValueSets.packaged().check(payload)``."""

    def __init__(self, sets: Iterable[ValueSet] = ()) -> None:
        self._sets: dict[str, ValueSet] = {}
        for value_set in sets:
            self.offer(value_set)

    @classmethod
    def packaged(cls) -> DccValueSets:
        """The value sets shipped with the product (read once per process)."""
        return cls(_packaged())

    def offer(self, value_set: ValueSet) -> bool:
        """Keep ``value_set`` unless one of the same id with a later date is held (an equal date replaces it).
        Returns whether it was kept; an older one is refused with a warning, like a trust-list rollback."""
        held = self._sets.get(value_set.id)
        if held is not None and value_set.date < held.date:
            logger.warning("value set %s of %s (%s) refused: older than the one of %s (%s)", value_set.id,
                           value_set.date, value_set.source, held.date, held.source)
            return False
        if len(self._sets) >= MAX_VALUE_SETS and held is None:
            logger.warning("value set %s refused: already %d value sets", value_set.id, MAX_VALUE_SETS)
            return False
        self._sets[value_set.id] = value_set
        return True

    def get(self, value_set_id: str) -> ValueSet | None:
        """The value set held for ``value_set_id``."""
        return self._sets.get(value_set_id)

    def __iter__(self) -> Iterator[ValueSet]:
        return iter(self._sets.values())

    def __len__(self) -> int:
        return len(self._sets)

    def check(self, payload: Mapping[str, Any]) -> tuple[UnknownCode, ...] | None:
        """Every coded field of every entry of an EU DCC payload against its value set: the codes that are not
        members (empty when all are). None when no value set applies (none held)."""
        if not self._sets:
            return None
        misses: list[UnknownCode] = []
        for group, fields in DCC_CODED_FIELDS.items():
            entries = payload.get(group)
            if not isinstance(entries, list):
                continue
            for index, entry in enumerate(entries):
                if not isinstance(entry, Mapping):
                    continue
                for name, set_id in fields.items():
                    value_set = self._sets.get(set_id)
                    if name not in entry or value_set is None:
                        continue
                    condition = ONLY_WHEN.get((group, name))
                    if condition is not None and entry.get(condition[0]) != condition[1]:
                        continue
                    code = entry[name]
                    if not (isinstance(code, str) and code in value_set.codes):
                        misses.append(UnknownCode(f"{group}[{index}].{name}", code if isinstance(code, str) else None,
                                                  value_set.id, value_set.date, value_set.source))
        return tuple(misses)
