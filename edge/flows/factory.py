"""The one flow factory: the flow ``[station] flow`` names, built from its sections of edge.toml.

The identity desk and the report flow load their models' code only when configured, so a QR-only box never
imports them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from typing import Any

from edge.config import ConfigError, EdgeConfig
from edge.flows.base import Flow, FlowContext
from edge.flows.checkin import CheckinFlow
from edge.flows.masstest import MassTestFlow, PoolSettings
from edge.flows.vaccination import VaccinationFlow, load_products
from edge.vaccination.schedule import load_schedule


def vaccination_flow(cfg: EdgeConfig, ctx: FlowContext, records: Any = None) -> VaccinationFlow:
    """The vaccination-room flow with the configured product table and schedules."""
    products = []
    if cfg.vaccination.products:
        try:
            products = load_products(tomllib.loads(cfg.path(cfg.vaccination.products).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"vaccination.products: {exc}") from None
    schedule = load_schedule(extra=[cfg.path(p) for p in cfg.vaccination.extra_schedules])
    return VaccinationFlow(ctx, products, records=records, schedule=schedule)


def build_flow(cfg: EdgeConfig, ctx: FlowContext, *, records: Any = None,
               frames: Callable[[], Iterable[Any]] | None = None) -> Flow:
    """The configured flow over ``ctx``.

    ``records`` is the online lookup (vaccination records, the identity desk's reference templates);
    ``frames`` opens a capture on the camera for the identity desk (:meth:`edge.face.tap.FrameTap.frames`).
    """
    station = cfg.station
    if station.flow == "identity":
        from edge.flows.identity import FaceDesk, IdentityFlow

        if frames is None:
            raise ValueError("the identity flow needs the camera's frames (edge.face.tap.FrameTap)")
        f = cfg.face
        return IdentityFlow(ctx, FaceDesk(frames=frames, templates=records, threshold=f.threshold,
                                          model_dir=cfg.path(f.model_dir) if f.model_dir else None,
                                          time_limit=f.time_limit, mode=f.mode, adult_age=f.adult_age,
                                          guardian_window=f.guardian_window, consent_text=f.consent_text))
    if station.flow == "report":
        from edge.flows.reports import ReportFlow

        return ReportFlow(ctx, attach_window=station.report_attach_window)
    if station.flow == "vaccination":
        return vaccination_flow(cfg, ctx, records)
    if station.flow == "masstest":
        return MassTestFlow(ctx, PoolSettings(capacity=station.pool_capacity, tube_pattern=station.tube_pattern,
                                              rebind_window=station.rebind_window,
                                              rack_pattern=cfg.masstest.rack_pattern))
    return CheckinFlow(ctx)
