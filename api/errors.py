"""Error handling: field-level 422s, 413/415 from a thin ASGI guard, and never a traceback.

:class:`BodyGuard` is plain ASGI (not ``BaseHTTPMiddleware``, which would cost more per request
than a prediction): it checks ``Content-Length`` against the limit, counts the bytes of chunked
bodies, and checks the content type of each route that takes a body — except on admin routes
(:data:`AUTH_FIRST`), where the caller is authenticated first and the same rule is applied after
the key (the role guards of :mod:`api.deps`): an unauthenticated caller always gets 401.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Role, route_role
from api.ids import resolve_request_id

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
JSON = ("application/json",)
CSV = ("multipart/form-data", "text/csv")
# Content types each POST route accepts (anything else: 415). Routes not listed take no body.
CONTENT_RULES: dict[str, tuple[str, ...]] = {
    "/predict": JSON,
    "/predict/explain": JSON,
    "/predict/batch": JSON + CSV,
    "/predict/validate": CSV,
    "/feedback": JSON,
    "/model/promote": JSON,
    "/retrain": ("multipart/form-data",),
}
# Routes with a body that always need a key (reader and above in the role table): the key is
# checked before the content type and the body (their handlers read the body themselves, after
# the dependencies, so FastAPI parses nothing earlier). Predict routes keep the check here.
AUTH_FIRST: frozenset[str] = frozenset(
    path for path in CONTENT_RULES if route_role(["POST"], path) >= Role.READER
)


def content_refusal(path: str, content_type: str, length: int | None) -> str | None:
    """Why a route does not take a body of this content type (the 415 message), or ``None``.

    Args:
        path: the request path.
        content_type: the media type, lower case, without parameters ("" when absent).
        length: the declared body length (``None``: unknown, e.g. chunked).
    """
    allowed = CONTENT_RULES.get(path.rstrip("/") or "/")
    if allowed is None or length == 0 or content_type in allowed:
        return None
    if not content_type and not length:
        return None  # no body at all
    shown = content_type or "none"
    return f"content type {shown} not accepted; use {allowed}"


class PayloadTooLarge(Exception):
    """Raised inside a handler when a batch has too many rows."""


def _reply(status: int, detail: str) -> tuple[Message, Message]:
    body = json.dumps({"detail": detail}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyGuard:
    """413 for bodies over ``max_body`` bytes, 415 for a content type a route does not take."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        length: int | None = None
        ctype = ""
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
            elif name == b"content-type":
                ctype = value.decode("latin-1").split(";", 1)[0].strip().lower()
        if length is not None and length > self.max_body:
            await self._send(send, 413, f"body over {self.max_body} bytes")
            return
        path = scope["path"].rstrip("/") or "/"
        refusal = None if path in AUTH_FIRST else content_refusal(path, ctype, length)
        if refusal is not None:
            await self._send(send, 415, refusal)
            return
        if length is not None:
            await self.app(scope, receive, send)
            return
        await self._chunked(scope, receive, send)

    async def _send(self, send: Send, status: int, detail: str) -> None:
        start, body = _reply(status, detail)
        await send(start)
        await send(body)

    async def _chunked(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the bytes of a body without Content-Length; answer 413 past the limit."""
        seen = 0
        rejected = False

        async def counted() -> Message:
            nonlocal seen, rejected
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body and not rejected:
                    rejected = True
                    await self._send(send, 413, f"body over {self.max_body} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await send(message)

        try:
            await self.app(scope, counted, guarded_send)
        except ClientDisconnect:
            if not rejected:
                raise


def _column(loc: tuple[Any, ...] | list[Any]) -> str | None:
    names = [str(p) for p in loc if isinstance(p, str) and p not in ("body", "query", "path")]
    return names[-1] if names else None


def error_items(errors: Any) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors as ``{loc, msg, type, row, column, reason}`` (no input echo)."""
    items = []
    for err in errors:
        loc = list(err.get("loc", ()))
        row = next((p for p in loc if isinstance(p, int)), None) if loc[:1] == ["body"] else None
        msg = str(err.get("msg", "invalid value"))
        items.append(
            {
                "loc": [p if isinstance(p, (str, int)) else str(p) for p in loc],
                "msg": msg,
                "type": str(err.get("type", "value_error")),
                "row": row,
                "column": _column(loc),
                "reason": msg,
            }
        )
    return items


def _request_id(request: Request) -> str:
    return resolve_request_id(request.headers.get("x-request-id"))


def _refused(request: Request) -> JSONResponse | None:
    """401/403 for a caller the route's guard would refuse: FastAPI parses a declared body
    parameter before the dependencies run, so a 422 must not answer a stranger first."""
    role = getattr(request.scope.get("route"), "role", None)
    state = getattr(request.app.state, "churnops", None)
    if role is None or state is None:
        return None
    refusal = state.keys.refusal(role, request.headers.get("x-api-key"))
    if refusal is None:
        return None
    body = {"detail": refusal.detail, "request_id": _request_id(request)}
    headers = {"WWW-Authenticate": "APIKey"} if refusal.status == 401 else None
    return JSONResponse(body, status_code=refusal.status, headers=headers)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):  # registered for this type only
        return await _unexpected(request, exc)
    refused = _refused(request)
    if refused is not None:
        return refused
    body = {"detail": error_items(exc.errors()), "request_id": _request_id(request)}
    return JSONResponse(body, status_code=422)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):  # registered for this type only
        return await _unexpected(request, exc)
    headers: Mapping[str, str] | None = getattr(exc, "headers", None)
    body = {"detail": exc.detail, "request_id": _request_id(request)}
    return JSONResponse(body, status_code=exc.status_code, headers=dict(headers or {}))


async def _too_large(request: Request, exc: Exception) -> JSONResponse:
    body = {"detail": str(exc), "request_id": _request_id(request)}
    return JSONResponse(body, status_code=413)


async def _disconnected(request: Request, exc: Exception) -> JSONResponse:
    """The client went away (or the guard cut the body): nobody reads this answer."""
    del exc
    log.info("client disconnected during %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "client disconnected"}, status_code=400)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    rid = _request_id(request)
    log.error(
        "unhandled %s on %s %s (request %s)",
        type(exc).__name__, request.method, request.url.path, rid,
    )  # fmt: skip
    log.debug("traceback", exc_info=exc)
    body = {"detail": "internal error; see the server log", "request_id": rid}
    return JSONResponse(body, status_code=500)


def install(app: FastAPI) -> None:
    """Register the handlers and the body guard on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(PayloadTooLarge, _too_large)
    app.add_exception_handler(ClientDisconnect, _disconnected)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodyGuard)
