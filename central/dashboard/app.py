"""The dashboard's Starlette application: login, devices (live), throughput, actions, audit, users.

Every page needs a session; every POST needs the session's CSRF token; a clinic-bound account never
sees (nor acts on) another clinic's devices or counts. Pages show device facts and counts only.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from central.config import CentralConfig
from central.dashboard import charts
from central.dashboard.accounts import ROLES, Accounts, User, UserError
from central.dashboard.actions import COMMANDS, Actions, NotAllowed
from central.dashboard.auth import (
    COOKIE,
    LOGIN_COOKIE,
    PasswordChecks,
    PasswordError,
    Session,
    Sessions,
    Throttle,
    hash_password,
    same_token,
)
from central.dashboard.events import Broadcaster, Event
from central.dashboard.fleet import STATES, DeviceView, Fleet, ago, utc
from central.dashboard.live import FleetWatcher
from central.dashboard.throughput import OUTCOMES, throughput
from central.store import SqlStore

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
MAX_FORM = 8 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Strict-Transport-Security": "max-age=31536000",
    "Cache-Control": "no-store",
}


class Dashboard:
    """The parts of a running dashboard: store access, fleet model, live watcher, sessions, actions."""

    def __init__(self, cfg: CentralConfig, store: SqlStore, watch: bool = True) -> None:
        self.cfg = cfg
        self.accounts = Accounts(store)
        self.fleet = Fleet(self.accounts)
        self.broadcaster = Broadcaster()
        self.sessions = Sessions(cfg.dashboard.session_idle, cfg.dashboard.session_max)
        self.throttle = Throttle()
        self.password_checks = PasswordChecks()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals.update(utc=utc, ago=ago, states=STATES, commands=COMMANDS, roles=ROLES)
        self.watcher = FleetWatcher(cfg, self.fleet, self.device_changed) if watch else None
        # Commands go over the watcher's session: the broker allows the dashboard's certificate one session.
        self.actions = Actions(cfg, self.accounts, self._watcher_commands if self.watcher else None)

    @contextlib.contextmanager
    def _watcher_commands(self) -> Iterator[Any]:
        assert self.watcher is not None
        if not self.watcher.connected.is_set():
            raise ConnectionError("the dashboard is not connected to the broker")
        yield self.watcher.commands

    def start(self) -> Dashboard:
        """Start the MQTT watcher."""
        if self.watcher is not None:
            self.watcher.start()
        return self

    def stop(self) -> None:
        """End the event streams and the watcher."""
        self.broadcaster.close()
        if self.watcher is not None:
            self.watcher.stop()

    def row_html(self, device: DeviceView) -> str:
        """One device's row of the devices table."""
        return self.templates.get_template("_device_row.html").render(d=device, now=time.time())

    def device_changed(self, device_id: str) -> None:
        """Push a device's new row to the pages that may see it (called from the watcher's thread)."""
        view = self.fleet.device(device_id)
        if view is None:
            return
        self.broadcaster.publish(Event("device", view.clinic, {"id": view.device_id, "clinic": view.clinic,
                                                               "state": view.state, "html": self.row_html(view)}))


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response that does not set them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                            if k.lower().encode() not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_app(dash: Dashboard) -> ASGIApp:
    """The ASGI application of ``dash``."""
    templates = dash.templates

    def current(request: Request, touch: bool = True) -> tuple[User, Session] | None:
        session = dash.sessions.get(request.cookies.get(COOKIE), touch)
        if session is None:
            return None
        user = dash.accounts.user(session.user)
        if user is None or user.disabled:
            dash.sessions.end(request.cookies.get(COOKIE))
            return None
        return user, session

    def page(request: Request, name: str, who: tuple[User, Session], status: int = 200, **ctx: Any) -> Response:
        user, session = who
        flash, session.flash = session.flash, []
        return templates.TemplateResponse(request, name, {"user": user, "csrf": session.csrf, "flash": flash,
                                                          "now": time.time(), **ctx}, status_code=status)

    def to_login() -> Response:
        return RedirectResponse("/login", 303)

    def requires(check: Callable[[User], bool] = lambda u: True):  # type: ignore[no-untyped-def]
        """Decorator: a logged-in user passing ``check`` (else login page or 403)."""
        def wrap(handler):  # type: ignore[no-untyped-def]
            async def endpoint(request: Request) -> Response:
                who = await run_in_threadpool(current, request)
                if who is None:
                    return to_login()
                if not check(who[0]):
                    return PlainTextResponse("Forbidden", 403)
                if request.method == "POST":
                    form = await read_form(request)
                    if form is None:
                        return PlainTextResponse("Request too large", 413)
                    if not same_token(form.get("csrf"), who[1].csrf):
                        dash.accounts.audit(who[0].name, "csrf_refused", request.url.path[:128], "refused")
                        return PlainTextResponse("Invalid or missing CSRF token", 403)
                    return await run_in_threadpool(handler, request, who, form)
                return await run_in_threadpool(handler, request, who)
            return endpoint
        return wrap

    # -- login ---------------------------------------------------------------------------------------
    def login_page(request: Request, error: str | None = None, status: int = 200) -> Response:
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)
        resp = templates.TemplateResponse(request, "login.html", {"error": error, "login_csrf": token, "user": None},
                                          status_code=status)
        resp.set_cookie(LOGIN_COOKIE, token, max_age=3600, secure=True, httponly=True, samesite="strict")
        return resp

    async def get_login(request: Request) -> Response:
        return login_page(request)

    async def post_login(request: Request) -> Response:
        form = await read_form(request)
        if form is None:
            return PlainTextResponse("Request too large", 413)
        if not same_token(form.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
            return login_page(request, "The form expired; please try again.", 403)
        name, password = form.get("username", "")[:64], form.get("password", "")
        address = request.client.host if request.client else "-"
        ok, user = await run_in_threadpool(authenticate, name, password, address)
        if not ok or user is None:
            return login_page(request, "Wrong user name or password, or too many attempts.", 401)
        sid, _ = dash.sessions.create(user.name)
        resp = RedirectResponse("/devices", 303)
        resp.set_cookie(COOKIE, sid, secure=True, httponly=True, samesite="strict", path="/")
        resp.delete_cookie(LOGIN_COOKIE, secure=True, httponly=True, samesite="strict")
        return resp

    def authenticate(name: str, password: str, address: str) -> tuple[bool, User | None]:
        # Counted before the password is checked (under the throttle's lock): concurrent tries cannot overtake.
        if not dash.throttle.attempt(name, address):
            dash.accounts.audit(name or "-", "login", "dashboard", "throttled")
            return False, None
        user = dash.accounts.user(name)
        checked = dash.password_checks.check(password, user.password_hash if user else None)
        if checked is None:  # every password check slot stayed busy: refused unchecked (and counted)
            dash.accounts.audit(name or "-", "login", "dashboard", "throttled", "busy")
            logger.warning("dashboard login refused: password checks busy")
            return False, None
        if not (checked and user is not None and not user.disabled):
            dash.accounts.audit(name or "-", "login", "dashboard", "refused")
            logger.warning("dashboard login refused")
            return False, None
        dash.throttle.succeeded(name, address)
        dash.accounts.audit(name, "login", "dashboard", "ok")
        return True, user

    @requires()
    def post_logout(request: Request, who: tuple[User, Session], form: dict[str, str]) -> Response:
        dash.sessions.end(request.cookies.get(COOKIE))
        dash.accounts.audit(who[0].name, "logout", "dashboard", "ok")
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(COOKIE, secure=True, httponly=True, samesite="strict")
        return resp

    # -- pages ---------------------------------------------------------------------------------------
    def scope(user: User, asked: str | None) -> str | None:
        """The clinic a listing is limited to: the user's own, or the one asked for."""
        return user.clinic if user.clinic is not None else (asked or None)

    @requires()
    def get_devices(request: Request, who: tuple[User, Session]) -> Response:
        user = who[0]
        clinic = scope(user, request.query_params.get("clinic"))
        state = request.query_params.get("state") or None
        if state not in STATES:
            state = None
        everyone = dash.fleet.devices(clinic)
        shown = [d for d in everyone if state is None or d.state == state]
        counts = {s: sum(1 for d in everyone if d.state == s) for s in STATES}
        clinics = [user.clinic] if user.clinic else dash.fleet.clinics()
        return page(request, "devices.html", who, devices=shown, counts=counts, clinics=clinics,
                    clinic=clinic, state=state, rows=[dash.row_html(d) for d in shown], total=len(everyone))

    @requires()
    def get_device(request: Request, who: tuple[User, Session]) -> Response:
        view = dash.fleet.device(request.path_params["device_id"])
        if view is None or not who[0].sees(view.clinic):
            return page(request, "not_found.html", who, 404)
        return page(request, "device.html", who, d=view, result=None)

    @requires()
    def get_throughput(request: Request, who: tuple[User, Session]) -> Response:
        user = who[0]
        clinic = scope(user, request.query_params.get("clinic"))
        clinics = [clinic] if clinic else None
        t = throughput(dash.accounts, clinics)
        rows = []
        for name, hours in t.by_clinic.items():
            totals = t.totals(name)
            rows.append({"clinic": name, "totals": totals, "sum": sum(totals.values()),
                         "chart": charts.stacked_hours(hours, t.start, OUTCOMES, f"Scans per hour at {name}")})
        return page(request, "throughput.html", who, rows=rows, clinic=clinic, outcomes=OUTCOMES,
                    clinics=[user.clinic] if user.clinic else dash.fleet.clinics(),
                    reasons=charts.horizontal_bars(t.reasons, "Scans not green, by reason",
                                                   colours={k: charts.COLOURS[o] for k, o in t.reason_outcome.items()}),
                    rejections=charts.horizontal_bars(t.rejections, "Messages refused by the ingest",
                                                      colour="#7f8c8d"))

    @requires(lambda u: u.can_act)
    def get_actions(request: Request, who: tuple[User, Session]) -> Response:
        user = who[0]
        return page(request, "actions.html", who, token=None, clinics=[user.clinic] if user.clinic
                    else dash.fleet.clinics(), ttl=dash.cfg.enrollment.token_ttl)

    @requires(lambda u: u.can_act)
    def post_token(request: Request, who: tuple[User, Session], form: dict[str, str]) -> Response:
        user = who[0]
        clinic, serial = form.get("clinic", "").strip(), form.get("serial", "").strip()
        clinics = [user.clinic] if user.clinic else dash.fleet.clinics()
        try:
            minutes = int(form.get("ttl_minutes") or dash.cfg.enrollment.token_ttl // 60)
            token = dash.actions.create_token(user, clinic, serial, max(1, min(minutes, 7 * 1440)) * 60,
                                              reenroll=form.get("reenroll") == "yes")
        except NotAllowed as exc:
            return page(request, "actions.html", who, 403, token=None, clinics=clinics, error=str(exc),
                        ttl=dash.cfg.enrollment.token_ttl)
        except ValueError as exc:
            return page(request, "actions.html", who, 400, token=None, clinics=clinics, error=str(exc),
                        ttl=dash.cfg.enrollment.token_ttl)
        return page(request, "actions.html", who, token=token, clinics=clinics, ttl=dash.cfg.enrollment.token_ttl)

    @requires(lambda u: u.can_act)
    def post_command(request: Request, who: tuple[User, Session], form: dict[str, str]) -> Response:
        device_id = request.path_params["device_id"]
        try:
            result = dash.actions.command(who[0], device_id, form.get("name", ""))
        except NotAllowed:
            return page(request, "not_found.html", who, 404)
        view = dash.fleet.device(device_id)
        return page(request, "device.html", who, d=view, result=result)

    @requires(lambda u: u.can_act)
    def post_revoke(request: Request, who: tuple[User, Session], form: dict[str, str]) -> Response:
        device_id = request.path_params["device_id"]
        if form.get("confirm") != device_id:
            who[1].flash.append(("error", "Type the device id to confirm the revocation."))
            return RedirectResponse(f"/devices/{device_id}", 303)
        try:
            dash.actions.revoke(who[0], device_id)
        except NotAllowed:
            return page(request, "not_found.html", who, 404)
        dash.device_changed(device_id)
        who[1].flash.append(("ok", f"{device_id} revoked: the broker and the ingest refuse it from now on."))
        return RedirectResponse(f"/devices/{device_id}", 303)

    @requires(lambda u: u.is_admin)
    def get_faces(request: Request, who: tuple[User, Session]) -> Response:
        return page(request, "faces.html", who, rows=dash.actions.faces(who[0]))

    @requires(lambda u: u.is_admin)
    def post_face_revoke(request: Request, who: tuple[User, Session], form: dict[str, str]) -> Response:
        id_ref = form.get("id_ref", "").strip()
        if not id_ref or form.get("confirm", "").strip() != id_ref[:8]:
            who[1].flash.append(("error", "Type the first 8 characters of the reference to confirm."))
            return RedirectResponse("/faces", 303)
        try:
            done = dash.actions.revoke_face(who[0], id_ref)
        except NotAllowed:
            return page(request, "not_found.html", who, 404)
        who[1].flash.append(("ok", "Template revoked: no box gets it any more.") if done
                            else ("error", "No such template, or revoked already."))
        return RedirectResponse("/faces", 303)

    @requires(lambda u: u.can_act)
    def get_audit(request: Request, who: tuple[User, Session]) -> Response:
        user = who[0]
        entries = dash.accounts.audit_log(300, user=None if user.is_admin else user.name)
        return page(request, "audit.html", who, entries=entries)

    @requires(lambda u: u.is_admin)
    def get_users(request: Request, who: tuple[User, Session]) -> Response:
        return page(request, "users.html", who, users=dash.accounts.users(), clinics=dash.fleet.clinics())

    @requires(lambda u: u.is_admin)
    def post_users(request: Request, who: tuple[User, Session], form: dict[str, str]) -> Response:
        name, role = form.get("name", "").strip(), form.get("role", "")
        clinic = form.get("clinic", "").strip() or None
        try:
            dash.accounts.add_user(name, role, clinic, hash_password(form.get("password", "")))
        except (UserError, PasswordError) as exc:
            dash.accounts.audit(who[0].name, "user_add", name[:64] or "-", "refused", str(exc))
            return page(request, "users.html", who, 400, users=dash.accounts.users(), clinics=dash.fleet.clinics(),
                        error=str(exc))
        dash.sessions.end_user(name)
        dash.accounts.audit(who[0].name, "user_add", name, "ok", f"{role} {clinic or 'all clinics'}")
        who[1].flash.append(("ok", f"user {name} saved"))
        return RedirectResponse("/users", 303)

    @requires(lambda u: u.is_admin)
    def post_user_disable(request: Request, who: tuple[User, Session], form: dict[str, str]) -> Response:
        name = request.path_params["name"]
        if name == who[0].name:
            who[1].flash.append(("error", "You cannot disable your own account."))
            return RedirectResponse("/users", 303)
        done = dash.accounts.disable_user(name)
        dash.sessions.end_user(name)
        dash.accounts.audit(who[0].name, "user_disable", name, "ok" if done else "unknown_user")
        return RedirectResponse("/users", 303)

    async def get_events(request: Request) -> Response:
        # The stream neither starts nor keeps a session's idle timer: only page requests do.
        who = await run_in_threadpool(current, request, False)
        if who is None:
            return PlainTextResponse("Login required", 401)
        sid = request.cookies.get(COOKIE)
        return StreamingResponse(dash.broadcaster.stream(who[0].clinic,
                                                         lambda: dash.sessions.get(sid, touch=False) is not None),
                                 media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})

    async def get_root(request: Request) -> Response:
        return RedirectResponse("/devices", 303)

    app = Starlette(routes=[
        Route("/", get_root),
        Route("/login", get_login, methods=["GET"]),
        Route("/login", post_login, methods=["POST"]),
        Route("/logout", post_logout, methods=["POST"]),
        Route("/devices", get_devices),
        Route("/devices/{device_id}", get_device),
        Route("/devices/{device_id}/command", post_command, methods=["POST"]),
        Route("/devices/{device_id}/revoke", post_revoke, methods=["POST"]),
        Route("/throughput", get_throughput),
        Route("/actions", get_actions),
        Route("/actions/token", post_token, methods=["POST"]),
        Route("/audit", get_audit),
        Route("/faces", get_faces, methods=["GET"]),
        Route("/faces/revoke", post_face_revoke, methods=["POST"]),
        Route("/users", get_users, methods=["GET"]),
        Route("/users", post_users, methods=["POST"]),
        Route("/users/{name}/disable", post_user_disable, methods=["POST"]),
        Route("/events", get_events),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ])

    return SecurityHeaders(app)


async def read_form(request: Request) -> dict[str, str] | None:
    """An ``application/x-www-form-urlencoded`` body as a dict (first value per field); None when too large."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}

