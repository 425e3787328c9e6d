"""FastAPI dependencies as ``Annotated`` aliases (``ModelDep``, ``SessionDep``...), and the guards.

They are ``async`` on purpose: a sync dependency would run in the thread pool and cost more than
the prediction itself. Tests swap them with ``app.dependency_overrides``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security, WebSocketException, params, status
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from sqlmodel import Session
from starlette.requests import HTTPConnection

from api.auth import Role, route_role
from api.errors import AUTH_FIRST, content_refusal
from api.schemas import AUTH_RESPONSES
from api.state import AppState
from core.predict import ServedModel
from core.settings import Settings
from core.store import PredictionWriter

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="The key of a role: API_KEY (admin), WRITER_KEY, READER_KEY or PREDICT_KEY "
    "(each also from a Docker secret, *_FILE); see docs/security.md.",
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


def _guard(role: Role) -> Callable[..., Coroutine[Any, Any, None]]:
    """The dependency that lets a request through to a route of ``role``, or refuses it.

    401 without a known key, 403 with a lower role's key (a WebSocket is closed with 1008 before
    it is accepted); then, on routes that take a body only after authentication
    (:data:`api.errors.AUTH_FIRST`), 415 when the route does not take the body's content type.
    """

    async def guard(
        conn: HTTPConnection, key: Annotated[str | None, Security(api_key_header)]
    ) -> None:
        state: AppState = conn.app.state.churnops
        refusal = state.keys.refusal(role, key)
        if refusal is not None:
            if conn.scope["type"] == "websocket":
                raise WebSocketException(status.WS_1008_POLICY_VIOLATION, refusal.detail)
            headers = {"WWW-Authenticate": "APIKey"} if refusal.status == 401 else None
            raise HTTPException(refusal.status, refusal.detail, headers=headers)
        path = conn.url.path.rstrip("/") or "/"
        if path not in AUTH_FIRST:
            return
        ctype = conn.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        length = conn.headers.get("content-length")
        refused = content_refusal(path, ctype, int(length) if length and length.isdigit() else None)
        if refused is not None:
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, refused)

    guard.__name__ = f"require_{role.label}"
    return guard


#: One guard dependency per role that needs a key.
GUARDS: dict[Role, params.Depends] = {
    role: Depends(_guard(role)) for role in Role if role is not Role.OPEN
}


def guard_of(route: str) -> list[params.Depends]:
    """The dependencies a route declared by hand (a WebSocket) takes from the role table."""
    method, path = route.split(" ", 1)
    role = route_role([method], path)
    return [] if role is Role.OPEN else [GUARDS[role]]


class RoleRoute(APIRoute):
    """A route guarded by the role :data:`api.auth.ROUTE_ROLES` gives it (every router uses
    this class): the guard runs before the other dependencies, the 401/403 answers are
    documented, and a route missing from the table needs the admin key."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        self.role = route_role(kwargs.get("methods") or ["GET"], path)
        if self.role is not Role.OPEN:
            guard = GUARDS[self.role]
            dependencies = list(kwargs.get("dependencies") or [])
            if guard not in dependencies:
                dependencies.insert(0, guard)
            kwargs["dependencies"] = dependencies
            kwargs["responses"] = {**AUTH_RESPONSES, **(kwargs.get("responses") or {})}
        super().__init__(path, endpoint, **kwargs)
