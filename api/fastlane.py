"""``POST /predict``, answered in plain ASGI in front of FastAPI's routing: the one path.

FastAPI's per-request machinery (routing, dependency solving, exception middleware, response
classes) costs several times the ~30 µs of the prediction itself: ``make bench`` measured this
lane at about twice the requests/s of the same handler as a FastAPI route, on the same 2 workers.
So every ``POST /predict`` is answered here — the key check of the route's role in the role table,
parsing and validation by :func:`api.routes.predict.parse_customer` (BOM, charset, every spelling
the ``Customer`` model takes), the same 422 body as every route, 503 without a model, the answer of
:func:`api.routes.predict.answer`. The route declared in :mod:`api.routes.predict` documents the
operation in ``/openapi.json`` and is never reached.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import route_role
from api.errors import error_items
from api.ids import resolve_request_id
from api.routes.predict import answer, parse_customer
from api.state import AppState

log = logging.getLogger(__name__)
PATH = "/predict"
ROLE = route_role(["POST"], PATH)
_JSON = [(b"content-type", b"application/json")]


class PredictFastLane:
    """Answer ``POST /predict`` directly; pass everything else on.

    Args:
        app: the next ASGI app.
        api: the FastAPI application (for its state).
    """

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        wanted: dict[bytes, str | None] = dict.fromkeys(
            (b"x-api-key", b"x-request-id", b"content-type")
        )
        for name, value in scope["headers"]:  # one pass, decoding only what is read
            if name in wanted:
                wanted[name] = value.decode("latin-1")
        rid = resolve_request_id(wanted[b"x-request-id"])
        refusal = self.api.state.churnops.keys.refusal(ROLE, wanted[b"x-api-key"] or None)
        if refusal is not None:  # before the body is read, as the route's guard does
            await _send(send, refusal.status, {"detail": refusal.detail, "request_id": rid})
            return
        try:
            status, body = await self._answer(receive, rid, wanted[b"content-type"])
        except _Disconnected:
            return
        except Exception:  # pylint: disable=broad-exception-caught  # never a traceback
            log.exception("fast lane failed on POST /predict (request %s)", rid)
            status, body = 500, {"detail": "internal error; see the server log", "request_id": rid}
        await _send(send, status, body)

    async def _answer(
        self, receive: Receive, rid: str, content_type: str | None
    ) -> tuple[int, dict[str, Any]]:
        raw = await _read_body(receive)
        state: AppState = self.api.state.churnops
        model = state.manager.current
        if model is None:
            reason = state.manager.error or "no champion loaded yet"
            return 503, {"detail": f"model not ready: {reason}", "request_id": rid}
        try:
            customer = parse_customer(raw, content_type)
        except RequestValidationError as exc:
            return 422, {"detail": error_items(exc.errors()), "request_id": rid}
        return 200, await answer(model, state.writer, customer, rid)


async def _send(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [*_JSON, (b"content-length", str(len(payload)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"APIKey"))
    start: Message = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": payload})


class _Disconnected(Exception):
    """The client went away before sending the whole body."""


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
