"""EU DCC JSON schemas: loaded from a folder of ``<version>.json`` files, chosen by the payload's ``ver``.

The schemas are not part of the product: a box receives them with its trust list, and without them the schema
check is skipped (None). ``format`` keywords (``date``, ``date-time``) are not enforced, since real certificates
carry partial dates; value-set membership is a check of its own (:mod:`edge.credentials.valuesets`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from edge.credentials.result import Reason

logger = logging.getLogger(__name__)

_VERSION_RE = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
CERT_TYPES = ("v", "t", "r")
DCC_DATE_TIME_FIELDS = frozenset({("t", "*", "sc"), ("t", "*", "dr")})
"""Where the DCC schema expects a ``date-time`` string (test sample collection and result times, every version):
the only places a CBOR tag 0 / tag 1 date-time is accepted, converted to its text before the schema check."""


@dataclass(frozen=True, slots=True)
class SchemaOutcome:
    """The schema check's result: ``ok`` and, when not ok, the reason (``schema_error`` or ``unknown_schema_version``)."""

    ok: bool
    reason: Reason | None = None
    version: str | None = None


class DccSchemas:
    """Compiled DCC schemas by version, e.g. ``DccSchemas.from_dir(Path("schemas")).check(payload).ok``."""

    def __init__(self, schemas: dict[str, dict[str, Any]]) -> None:
        self._validators: dict[tuple[int, int, int], jsonschema.protocols.Validator] = {}
        for version, schema in schemas.items():
            m = _VERSION_RE.fullmatch(version)
            if not m:
                raise ValueError(f"schema version {version!r} is not x.y.z")
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            cls.check_schema(schema)
            self._validators[tuple(int(g) for g in m.groups())] = cls(schema)  # type: ignore[assignment]

    @classmethod
    def from_dir(cls, folder: Path) -> DccSchemas:
        """Load every ``<x.y.z>.json`` in ``folder``."""
        schemas = {}
        for path in sorted(folder.glob("*.json")):
            if _VERSION_RE.fullmatch(path.stem):
                schemas[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        if not schemas:
            raise FileNotFoundError(f"no DCC schemas (x.y.z.json) in {folder}")
        logger.info("loaded %d DCC schemas from %s", len(schemas), folder)
        return cls(schemas)

    @property
    def versions(self) -> list[str]:
        """The loaded versions, oldest first."""
        return [".".join(map(str, v)) for v in sorted(self._validators)]

    def _validator_for(self, ver: Any) -> tuple[str, jsonschema.protocols.Validator] | None:
        """The exact version, else the newest patch release below it with the same major.minor."""
        m = _VERSION_RE.fullmatch(ver) if isinstance(ver, str) else None
        if not m:
            return None
        want = tuple(int(g) for g in m.groups())
        if want in self._validators:
            return ver, self._validators[want]
        same = [v for v in self._validators if v[:2] == want[:2] and v < want]
        if not same:
            return None
        best = max(same)
        return ".".join(map(str, best)), self._validators[best]

    def check(self, payload: dict[str, Any]) -> SchemaOutcome:
        """Validate a DCC payload against the schema of its ``ver``, plus the rule of exactly one v/t/r entry."""
        chosen = self._validator_for(payload.get("ver"))
        if chosen is None:
            return SchemaOutcome(False, Reason.UNKNOWN_SCHEMA_VERSION)
        version, validator = chosen
        if not validator.is_valid(payload):
            return SchemaOutcome(False, Reason.SCHEMA_ERROR, version)
        if cert_type(payload) is None:
            return SchemaOutcome(False, Reason.SCHEMA_ERROR, version)
        return SchemaOutcome(True, None, version)


def cert_type(payload: dict[str, Any]) -> str | None:
    """``"v"``, ``"t"`` or ``"r"`` when the payload holds exactly one group with exactly one entry, else None."""
    present = [k for k in CERT_TYPES if k in payload]
    if len(present) != 1:
        return None
    entries = payload[present[0]]
    if not (isinstance(entries, list) and len(entries) == 1 and isinstance(entries[0], dict)):
        return None
    return present[0]
