"""WebSockets: predictions over a socket, and a stream of retrain progress and model swaps."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pydantic_core
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from api.deps import guard_of
from api.errors import error_items
from api.routes.predict import answer
from api.state import AppState
from core.schema import Customer
from core.tables import TableError, json_body

log = logging.getLogger(__name__)
router = APIRouter(prefix="/ws", tags=["websocket"])
MAX_MESSAGE = 1_000_000
MAX_ITEMS = 100


def _error(detail: Any, request_id: str | None = None) -> str:
    return json.dumps({"type": "error", "detail": detail, "request_id": request_id})


class _BadMessage(Exception):
    """A message that gets an error answer (the socket stays open)."""

    def __init__(self, detail: Any, request_id: str | None = None) -> None:
        super().__init__(str(detail))
        self.detail = detail
        self.request_id = request_id


def _parse(text: str) -> tuple[Any, str | None]:
    """The payload and the optional client id of one message."""
    if len(text) > MAX_MESSAGE:
        raise _BadMessage(f"message over {MAX_MESSAGE} bytes")
    try:  # NaN/Infinity refused, as on /predict
        data = pydantic_core.from_json(text.removeprefix("\ufeff"), allow_inf_nan=False)
    except ValueError as exc:
        raise _BadMessage(f"invalid JSON: {exc}") from exc
    if isinstance(data, dict) and "customer" in data:
        return data["customer"], str(data.get("id", ""))[:64] or None
    return data, None


async def _handle(state: AppState, text: str) -> str:
    """One message (a customer, a list of them, or {"id", "customer"}) → one answer."""
    try:
        data, request_id = _parse(text)
        items = data if isinstance(data, list) else [data]
        if not items or len(items) > MAX_ITEMS:
            raise _BadMessage(f"send 1 to {MAX_ITEMS} customers per message", request_id)
        model = state.manager.current
        if model is None:
            raise _BadMessage("model not ready", request_id)
        try:
            customers = [Customer.model_validate(item) for item in items]
        except ValidationError as exc:
            raise _BadMessage(error_items(exc.errors()), request_id) from exc
    except _BadMessage as bad:
        return _error(bad.detail, bad.request_id)
    rid = request_id or "ws"
    answers = [await answer(model, state.writer, c, rid) for c in customers]
    if isinstance(data, list):
        return json.dumps({"type": "predictions", "id": request_id, "predictions": answers})
    return json.dumps({"type": "prediction", "id": request_id, **answers[0]})


@router.websocket("/predict", dependencies=guard_of("WS /ws/predict"))
async def ws_predict(websocket: WebSocket) -> None:
    """Send customers as JSON messages, receive predictions; bad messages get an error message."""
    state: AppState = websocket.app.state.churnops
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:
                try:  # a binary frame: UTF-8, or UTF-16/32 with a byte-order mark
                    body = json_body(message.get("bytes") or b"")
                    text = body if isinstance(body, str) else body.decode("utf-8")
                except (TableError, UnicodeDecodeError):
                    await websocket.send_text(_error("messages must be UTF-8 JSON"))
                    continue
            await websocket.send_text(await _handle(state, text))
    except WebSocketDisconnect:
        pass


@router.websocket("/events", dependencies=guard_of("WS /ws/events"))
async def ws_events(websocket: WebSocket) -> None:
    """Retrain progress (`retrain_progress`) and model swaps (`model_swapped`) as they happen."""
    state: AppState = websocket.app.state.churnops
    await websocket.accept()
    queue = state.hub.subscribe()
    model = state.manager.current
    await websocket.send_json(
        {
            "type": "hello",
            "model_version": model.version if model else None,
            "generation": state.manager.generation,
        }
    )
    receiver = asyncio.create_task(_drain(websocket))
    try:
        while not receiver.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                await websocket.send_json(getter.result())
            else:
                getter.cancel()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        state.hub.unsubscribe(queue)
        receiver.cancel()


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) client messages until it disconnects."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
