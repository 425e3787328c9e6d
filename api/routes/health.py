"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import RoleRoute, StateDep
from api.schemas import HealthResponse, ReadyResponse

router = APIRouter(tags=["health"], route_class=RoleRoute)


@router.get("/health", response_model=HealthResponse)
async def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses={503: {"model": ReadyResponse, "description": "Not ready."}},
)
def ready(state: StateDep, response: Response) -> ReadyResponse:
    """Readiness: a model is loaded and the database answers (`degraded` = cached champion)."""
    model = state.manager.current
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        version = model.version if model else None
        return ReadyResponse(status="not_ready", reason=f"database: {exc}", model_version=version)
    if model is None:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        reason = state.manager.error or "no champion loaded"
        return ReadyResponse(status="not_ready", reason=reason, model_version=None)
    if model.degraded:
        return ReadyResponse(status="degraded", reason=model.reason, model_version=model.version)
    return ReadyResponse(status="ready", reason=None, model_version=model.version)
