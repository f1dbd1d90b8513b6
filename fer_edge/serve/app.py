"""The Starlette application: POST /v1/emotions, /healthz, /readyz, /metrics, /openapi.json, the demo page
(/ and /static/: ``page``), and the access log (one JSON line per request: method, route, status, milliseconds, bytes in, faces; never the image)."""

import asyncio
import json
import logging
import time
from typing import Any, Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import ApiKeyCheck
from .decode import InputError, check_type
from .engine import EmotionEngine
from .limits import AdmissionGate, Busy, Limits
from .metrics import ServeMetrics
from .openapi import openapi
from .page import page_routes

access_log = logging.getLogger(__name__ + ".access")
log = logging.getLogger(__name__)
ROUTES = ("/v1/emotions", "/healthz", "/readyz", "/metrics", "/openapi.json", "/")
STATIC_ROUTE = "/static"


def error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class AccessLog:
    """ASGI middleware: the access log line and the request counters of every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]
        scope.setdefault("state", {})["faces"] = None

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        self.metrics.in_flight += 1
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight -= 1
            seconds = time.perf_counter() - start
            route = scope["path"] if scope["path"] in ROUTES else "other"
            if scope["path"].startswith(STATIC_ROUTE + "/"):
                route = STATIC_ROUTE
            self.metrics.request(route, status[0], seconds)
            length = dict(scope.get("headers") or ()).get(b"content-length", b"")
            entry: dict[str, Any] = {
                "method": scope["method"],
                "route": route,
                "status": status[0],
                "ms": round(seconds * 1000, 2),
                "bytes_in": int(length) if length.isdigit() else None,
                "client": (scope.get("client") or ("", 0))[0],
            }
            faces = scope["state"].get("faces")
            if faces is not None:
                entry["faces"] = faces
            access_log.info(json.dumps(entry, sort_keys=True))


async def _read_body(request: Request, limits: Limits) -> bytes:
    try:
        return await asyncio.wait_for(_read_body_unbounded(request, limits), limits.body_timeout)
    except asyncio.TimeoutError:
        raise InputError(
            408, "body_timeout", "the body did not arrive within {:g} s".format(limits.body_timeout)
        ) from None


async def _read_body_unbounded(request: Request, limits: Limits) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise InputError(400, "bad_length", "Content-Length {!r} is not a number of bytes".format(length))
        if int(length) > limits.max_body:
            raise InputError(
                413, "too_large", "the body is {} bytes; at most {} are accepted".format(length, limits.max_body)
            )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limits.max_body:
            raise InputError(
                413, "too_large", "the body is more than {} bytes; at most that is accepted".format(limits.max_body)
            )
    return bytes(body)


async def read_image(request: Request, limits: Limits) -> bytes:
    """The image bytes of a request: the body (image/*) or the multipart field ``image``."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "multipart/form-data":
        check_type(content_type)
        return await _read_body(request, limits)
    body = await _read_body(request, limits)

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=16)
    except Exception as exc:  # python-multipart's and Starlette's parse errors alike
        raise InputError(400, "bad_multipart", "the multipart/form-data body is malformed: {}".format(exc)) from None
    upload = form.get("image")
    if upload is None or isinstance(upload, str):
        await form.close()
        raise InputError(400, "missing_image", "multipart/form-data without a file field 'image'")
    try:
        return await upload.read()
    finally:
        await form.close()


def build_app(engine: EmotionEngine, limits: Limits, metrics: ServeMetrics, auth: ApiKeyCheck, version: str) -> ASGIApp:
    """The service's ASGI application (the caller runs it: uvicorn, or a test client)."""
    gate = AdmissionGate(limits)
    description = openapi(version, auth.required)

    def refused(request: Request) -> Response | None:
        client = request.client.host if request.client else ""
        refusal = auth.refusal(request.headers.get("authorization"), request.headers.get("x-api-key"), client)
        if refusal is None:
            return None
        status, message, headers = refusal
        return error(status, "unauthorized" if status == 401 else "locked_out", message, headers)

    async def emotions(request: Request) -> Response:
        refusal = refused(request)
        if refusal is not None:
            return refusal
        try:
            async with gate:
                data = await read_image(request, limits)
                faces = await engine.emotions(data)
        except Busy as busy:
            metrics.refuse(busy.reason)
            return error(
                503,
                busy.reason,
                "the service is busy ({}); retry after {} s".format(busy.reason.replace("_", " "), busy.retry_after),
                {"Retry-After": str(busy.retry_after)},
            )
        except InputError as bad:
            if bad.status in (408, 413):
                metrics.refuse(bad.code)
            return error(bad.status, bad.code, bad.message)
        request.scope["state"]["faces"] = len(faces)
        return JSONResponse({"faces": faces, "model": engine.model})

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        return PlainTextResponse("ready\n")

    async def metrics_text(request: Request) -> Response:
        refusal = refused(request)
        if refusal is not None:
            return refusal
        return PlainTextResponse(metrics.text(), media_type="text/plain; version=0.0.4")

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(description)

    async def http_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return error(exc.status_code, "http_{}".format(exc.status_code), str(exc.detail), exc.headers)
        return error(500, "internal", "internal error")

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s: %s", request.url.path, exc, exc_info=exc)
        return error(500, "internal", "internal error (the service log has the details)")

    app = Starlette(
        routes=[
            Route("/v1/emotions", emotions, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_text, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            *page_routes(engine.pipeline, auth.required),
        ],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    return AccessLog(app, metrics)
