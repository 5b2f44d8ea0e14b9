"""The HTTPS enrollment endpoint (Starlette on uvicorn), served with the broker's server certificate.

``GET /v1/ca``       the CA certificate (PEM); a box compares its SHA-256 with the pinned fingerprint
``POST /v1/enroll``  ``{token, serial, csr, facts}`` → certificate, CA chain, broker, keys (JSON)
``POST /v1/renew``   ``{device_id, csr, proof}`` → a new certificate for the same key
``POST /v1/decommission``  ``{device_id, proof}`` → the device is revoked

``proof`` is base64 of a COSE_Sign1 by the current device key (see :func:`mqtt.topics.proof_topic`).
"""

from __future__ import annotations

import json
import logging
import threading

import uvicorn
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from central.config import CentralConfig
from central.enrollment import Enrollment, EnrollmentError

logger = logging.getLogger(__name__)

MAX_BODY = 16 * 1024


def build_app(enrollment: Enrollment) -> Starlette:
    """The ASGI application."""
    ca_pem = enrollment.ca_cert.public_bytes(serialization.Encoding.PEM)
    lock = threading.Lock()  # one store connection: enrollments are rare, serialise them

    async def get_ca(request: Request) -> Response:
        return Response(ca_pem, media_type="application/x-pem-file")

    async def post_enroll(request: Request) -> Response:
        return await _handle(request, enrollment.enroll)

    async def post_renew(request: Request) -> Response:
        return await _handle(request, enrollment.renew)

    async def post_decommission(request: Request) -> Response:
        return await _handle(request, enrollment.decommission)

    async def _handle(request: Request, action) -> Response:  # type: ignore[no-untyped-def]
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return JSONResponse({"error": "too_large", "message": "request body over 16 KiB"}, 413)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return JSONResponse({"error": "malformed", "message": "body is not JSON"}, 400)
        except RecursionError:
            return JSONResponse({"error": "malformed", "message": "body is nested too deeply"}, 400)
        try:
            with lock:
                answer = action(payload)
        except EnrollmentError as exc:
            return JSONResponse({"error": exc.code, "message": str(exc)}, exc.status)
        return JSONResponse(answer)

    return Starlette(routes=[Route("/v1/ca", get_ca, methods=["GET"]),
                             Route("/v1/enroll", post_enroll, methods=["POST"]),
                             Route("/v1/renew", post_renew, methods=["POST"]),
                             Route("/v1/decommission", post_decommission, methods=["POST"])])


def make_server(cfg: CentralConfig, enrollment: Enrollment) -> uvicorn.Server:
    """A uvicorn server for the endpoint on ``enrollment.bind:port`` with TLS."""
    config = uvicorn.Config(build_app(enrollment), host=cfg.enrollment.bind, port=cfg.enrollment.port,
                            ssl_certfile=str(cfg.path(cfg.broker.cert)), ssl_keyfile=str(cfg.path(cfg.broker.key)),
                            log_level="warning", access_log=False, lifespan="off")
    return uvicorn.Server(config)
