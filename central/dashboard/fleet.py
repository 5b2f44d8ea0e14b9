"""The device view model: registry, presence, birth and health documents, alerts and gaps, per device.

The ingest stores the latest status, birth (``state``) and health documents in ``devices``; the
dashboard's own MQTT watcher (``live``) lays what it has just received on top, so that a page shows a
change as soon as the broker delivers it. Only device facts and counts are read: result bodies are
opened for ``alert`` results (part and state) and, in :mod:`throughput`, for a scan's outcome and reason.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from central.dashboard.accounts import Accounts
from central.store import SAFE_SUM, safe_count

logger = logging.getLogger(__name__)

DAY = 86400.0
CERT_WARN_DAYS = 14
STATES = ("online", "offline", "alerting", "revoked", "unknown")

# What a box reports in ``health.alerts`` → (text, level).
HEALTH_ALERTS = {
    "outbox_near_full": ("outbox nearly full", "error"),
    "camera_error": ("camera down", "error"),
    "station_down": ("station not running", "error"),
    "no_trust_list": ("no trust list", "error"),
    "trust_list_stale": ("trust list out of date", "warning"),
}


@dataclass(frozen=True, slots=True)
class Alert:
    """Something a technician should look at."""

    code: str
    text: str
    level: str  # warning | error


@dataclass(frozen=True, slots=True)
class DeviceView:
    """What the dashboard shows of one box (device facts only)."""

    device_id: str
    clinic: str
    status: str  # active | revoked (registry)
    presence: str | None  # online | offline | None (never connected)
    last_seen: float | None
    software: str | None
    models: str | None
    config_revision: int | None
    boot: int | None
    cert_expires: float | None
    queue_depth: int | None
    oldest_queued_s: float | None
    trust_version: int | None
    trust_age_s: float | None
    results: int
    missing: int
    gaps_24h: int
    restarts_24h: int
    alerts: tuple[Alert, ...] = ()
    station: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """online, offline, alerting, revoked or unknown (the filter and the colour of the row)."""
        if self.status == "revoked":
            return "revoked"
        if self.presence == "online":
            return "alerting" if self.alerts else "online"
        return self.presence or "unknown"


@dataclass
class _Live:
    presence: str | None = None
    presence_at: float = 0.0
    health: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    seen: float = 0.0


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _cert_expiry(pem: str) -> float | None:
    try:
        return x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc.timestamp()
    except ValueError:
        return None


def _num(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _models(state: dict[str, Any]) -> str | None:
    models = state.get("models")
    if isinstance(models, dict) and models:
        return ", ".join(f"{k} {v}" for k, v in sorted(models.items()))
    return str(models) if isinstance(models, str) else None


class Fleet:
    """Builds :class:`DeviceView` objects from the store and the live overlay."""

    def __init__(self, accounts: Accounts, clock: Callable[[], float] = time.time) -> None:
        self.accounts, self.clock = accounts, clock
        self._live: dict[str, _Live] = {}
        self._lock = threading.Lock()

    # -- live overlay (the MQTT watcher) ---------------------------------------------------------------
    def apply(self, device_id: str, *, presence: str | None = None, health: dict[str, Any] | None = None,
              state: dict[str, Any] | None = None) -> None:
        """Record what the watcher just received from a device."""
        now = self.clock()
        with self._lock:
            live = self._live.setdefault(device_id, _Live())
            if presence is not None:
                live.presence, live.presence_at = presence, now
                if presence == "online":
                    live.seen = now
            if health is not None:
                live.health, live.seen = health, now
            if state is not None:
                live.state, live.seen = state, now

    # -- queries ---------------------------------------------------------------------------------------
    def clinics(self) -> list[str]:
        """Every clinic with a registered device."""
        with self.accounts.db() as s:
            rows = s.execute("SELECT DISTINCT clinic FROM devices ORDER BY clinic").fetchall()
            s.end_read()
        return [r[0] for r in rows]

    def device(self, device_id: str) -> DeviceView | None:
        """One device, or None when it is not registered."""
        found = self._load(device_id=device_id)
        return found[0] if found else None

    def devices(self, clinic: str | None = None, state: str | None = None) -> list[DeviceView]:
        """Devices (of one clinic, in one state), by clinic then id."""
        views = self._load(clinic=clinic)
        return [v for v in views if state is None or v.state == state]

    def _load(self, clinic: str | None = None, device_id: str | None = None) -> list[DeviceView]:
        now = self.clock()
        sql = ("SELECT device_id, clinic, status, presence, presence_at, state_json, health_json, last_seen, cert_pem "
               "FROM devices")
        where, params = "", []
        if device_id is not None:
            where, params = " WHERE device_id = ?", [device_id]
        elif clinic is not None:
            where, params = " WHERE clinic = ?", [clinic]
        with self.accounts.db() as s:
            rows = s.execute(sql + where + " ORDER BY clinic, device_id", params).fetchall()
            ids = [r[0] for r in rows]
            counts = self._per_device(s, f"""SELECT device_id, {SAFE_SUM.format("received")},
                                                    {SAFE_SUM.format("max_seq - received")},
                                                    CAST(SUM(CASE WHEN first_seen > ? THEN 1 ELSE 0 END) AS BIGINT)
                                             FROM device_boots WHERE 1 = 1""", [now - DAY], ids)
            gaps = self._per_device(s, "SELECT device_id, count(*) FROM sequence_gaps WHERE detected_at > ?",
                                    [now - DAY], ids)
            alert_rows = s.query(self._scoped("SELECT device_id, body_json FROM results WHERE kind = 'alert' "
                                              "AND received_at > ?", ids) + " ORDER BY received_at",
                                 [now - 7 * DAY, *ids])
            s.end_read()
        parts: dict[str, dict[str, dict[str, Any]]] = {}
        for dev, body_json in alert_rows:  # the latest state of each part wins
            body = _json(body_json)
            if isinstance(body.get("part"), str):
                parts.setdefault(dev, {})[body["part"]] = body
        with self._lock:
            live = {d: _Live(**vars(v)) for d, v in self._live.items() if d in set(ids)}
        return [self._view(r, counts.get(r[0], (0, 0, 0)), gaps.get(r[0], (0,))[0], parts.get(r[0], {}),
                           live.get(r[0]), now) for r in rows]

    @staticmethod
    def _scoped(sql: str, ids: list[str]) -> str:
        return sql + (f" AND device_id IN ({', '.join('?' for _ in ids)})" if ids else " AND 1 = 0")

    def _per_device(self, s: Any, sql: str, params: list[Any], ids: list[str]) -> dict[str, tuple]:
        rows = s.execute(self._scoped(sql, ids) + " GROUP BY device_id", [*params, *ids]).fetchall()
        return {r[0]: tuple(r[1:]) for r in rows}

    def _view(self, row: tuple, counts: tuple, gaps: int, parts: dict[str, dict[str, Any]], live: _Live | None,
              now: float) -> DeviceView:
        device_id, clinic, status, presence, presence_at, state_json, health_json, last_seen, cert_pem = row
        state, health = _json(state_json), _json(health_json)
        seen = last_seen or 0.0
        if presence == "online" and presence_at:
            seen = max(seen, presence_at)
        if live is not None:
            if live.presence is not None and live.presence_at >= (presence_at or 0):
                presence = live.presence
            health = live.health if live.health is not None else health
            state = live.state if live.state is not None else state
            seen = max(seen, live.seen)
        results, missing, boots = (safe_count(c) for c in counts)
        trust = health.get("trust_list") if isinstance(health.get("trust_list"), dict) else {}
        expires = _cert_expiry(cert_pem)
        view = DeviceView(
            device_id=device_id, clinic=clinic, status=status, presence=presence, last_seen=seen or None,
            software=state.get("software") if isinstance(state.get("software"), str) else None,
            models=_models(state) or _models(health), config_revision=_num(state.get("config_revision")),
            boot=_num(state.get("boot")),
            cert_expires=expires, queue_depth=_num(health.get("queue_depth")),
            oldest_queued_s=_num(health.get("oldest_queued_s")), trust_version=_num(trust.get("version")),
            trust_age_s=_num(trust.get("age_s")), results=results, missing=missing, gaps_24h=int(gaps or 0),
            restarts_24h=max(0, boots - 1),
            station={k: v for k, v in (health.get("station") or {}).items() if k in ("flow", "camera", "scans")}
            if isinstance(health.get("station"), dict) else {})
        alerts = list(_alerts(view, health, parts, now))
        return DeviceView(**{**{f: getattr(view, f) for f in view.__dataclass_fields__}, "alerts": tuple(alerts)})


def _alerts(view: DeviceView, health: dict[str, Any], parts: dict[str, dict[str, Any]], now: float):
    """The alerts of a device, most severe kinds first."""
    for code in health.get("alerts") or []:
        if isinstance(code, str):
            text, level = HEALTH_ALERTS.get(code, (code.replace("_", " "), "warning"))
            yield Alert(code, text, level)
    for part, body in sorted(parts.items()):
        if body.get("state") in ("warning", "error"):
            problem = str(body.get("error") or body["state"]).replace("_", " ")
            code = f"{part}_{body['state']}"
            if not (part == "camera" and "camera_error" in (health.get("alerts") or [])):
                yield Alert(code, f"{part}: {problem}"[:80], str(body["state"]))
    if view.gaps_24h:
        yield Alert("sequence_gaps", f"{view.gaps_24h} sequence gap{'s' * (view.gaps_24h > 1)} (24 h)", "warning")
    if view.restarts_24h >= 2:
        yield Alert("restarts", f"restarted {view.restarts_24h}× (24 h)", "warning")
    if view.cert_expires is not None and view.status == "active":
        days = (view.cert_expires - now) / DAY
        if days < 0:
            yield Alert("cert_expired", "certificate expired", "error")
        elif days < CERT_WARN_DAYS:
            yield Alert("cert_expiring", f"certificate expires in {int(days)} d", "warning")


def utc(ts: float | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM UTC`` (— when unknown)."""
    if ts is None:
        return "—"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(seconds: float | None) -> str:
    """``42 s``, ``5 min``, ``3 h``, ``2 d`` (— when unknown)."""
    if seconds is None:
        return "—"
    s = max(0.0, float(seconds))
    for limit, unit, div in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if s < limit:
            return f"{int(s // div)} {unit}"
    return f"{int(s // 86400)} d"
