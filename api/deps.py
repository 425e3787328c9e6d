"""FastAPI dependencies as ``Annotated`` aliases: ``ModelDep``, ``SessionDep``, ``AdminDep``...

They are ``async`` on purpose: a sync dependency would run in the thread pool and cost more than
the prediction itself. Tests swap them with ``app.dependency_overrides``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader
from sqlmodel import Session

from api.errors import content_refusal
from api.serving import ServedModel
from api.state import AppState
from core.settings import Settings
from core.store import PredictionWriter

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="Admin key (env API_KEY or API_KEY_FILE)."
)


async def get_state(request: Request) -> AppState:
    """The worker's :class:`AppState`."""
    found: AppState = request.app.state.churnops
    return found


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings_dep(state: StateDep) -> Settings:
    """The service settings."""
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_model(request: Request) -> ServedModel:
    """The current champion snapshot; 503 while none is loaded."""
    state: AppState = request.app.state.churnops
    model = state.manager.current
    if model is None:
        reason = state.manager.error or "no champion loaded yet"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"model not ready: {reason}")
    return model


ModelDep = Annotated[ServedModel, Depends(get_model)]


async def get_writer(request: Request) -> PredictionWriter:
    """The batched prediction writer."""
    state: AppState = request.app.state.churnops
    return state.writer


WriterDep = Annotated[PredictionWriter, Depends(get_writer)]


def get_session(request: Request) -> Iterator[Session]:
    """One database session per request."""
    state: AppState = request.app.state.churnops
    with Session(state.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def require_admin(
    request: Request, state: StateDep, key: Annotated[str | None, Depends(api_key_header)]
) -> None:
    """401 unless ``X-API-Key`` matches the configured key (constant-time comparison), then 415
    when the route does not take the body's content type: authentication comes first."""
    given = (key or "").encode("utf-8", "surrogatepass")
    if not key or not hmac.compare_digest(given, state.api_key.encode("utf-8")):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid X-API-Key",
            headers={"WWW-Authenticate": "APIKey"},
        )
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    length = request.headers.get("content-length")
    refusal = content_refusal(
        request.url.path, ctype, int(length) if length and length.isdigit() else None
    )
    if refusal is not None:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, refusal)


AdminDep = Annotated[None, Depends(require_admin)]
