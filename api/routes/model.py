"""The served model, the registry's versions, and the admin actions promote/rollback/reload."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from api.deps import ModelDep, RoleRoute, StateDep
from api.schemas import (
    ERROR_RESPONSES,
    NOT_FOUND,
    GateRecord,
    NOT_READY,
    ModelActionResponse,
    ModelInfo,
    ModelVersionInfo,
    PlotInfo,
    PromoteRequest,
    TrainingCurve,
)
from api.state import AppState
from api.tables import documented_json_body, parse_json
from core import registry
from core.store import bump_generation

log = logging.getLogger(__name__)
router = APIRouter(prefix="/model", tags=["model"], route_class=RoleRoute)
REGISTRY_DOWN: dict[int | str, dict[str, Any]] = {
    502: {"description": "The model registry failed or is unreachable."}
}


@router.get("", response_model=ModelInfo, responses=NOT_READY)
async def model_info(model: ModelDep) -> dict[str, Any]:
    """The served champion: version, metrics, threshold, data digest and the inference path."""
    return model.info


def _registry_call(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except registry.RegistryError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except Exception as exc:  # pylint: disable=broad-exception-caught  # MLflow errors vary
        log.warning("registry call %s failed: %s", getattr(fn, "__name__", fn), exc)
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"registry error: {exc}") from exc


@router.get("/versions", response_model=list[ModelVersionInfo], responses=REGISTRY_DOWN)
async def versions(state: StateDep) -> list[ModelVersionInfo]:
    """Every registered version, newest first, with aliases, metrics and the gate decision."""
    found = await run_in_threadpool(_registry_call, registry.list_versions, state.settings)
    return [
        ModelVersionInfo.model_validate(
            {
                "version": str(v.version),
                "aliases": list(v.aliases),
                "metrics": dict(v.metrics),
                "created_at": v.created_at.isoformat() if v.created_at else None,
                "run_id": v.run_id,
                "gate": GateRecord.from_tags(dict(v.gate)),
            }
        )
        for v in found
    ]


async def _after_change(state: AppState, action: str, reason: str) -> ModelActionResponse:
    generation = await run_in_threadpool(bump_generation, state.engine, f"{action}: {reason}")
    served = await run_in_threadpool(state.manager.load, generation)
    if served is None:
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, f"{action} done but reload failed: {state.manager.error}"
        )
    return ModelActionResponse.model_validate(
        {"action": action, "version": served.version, "generation": generation}
    )


ADMIN = REGISTRY_DOWN | {409: {"description": "Not possible now."}}


PROMOTE_BODY = documented_json_body(PromoteRequest)


@router.post(
    "/promote",
    response_model=ModelActionResponse,
    responses=ADMIN | ERROR_RESPONSES,
    openapi_extra=PROMOTE_BODY,
)
async def promote(request: Request, state: StateDep) -> ModelActionResponse:
    """Force a version to champion (recorded); every worker swaps to it."""
    # The body is read here, after the key was checked (a body parameter would be parsed first).
    ctype = request.headers.get("content-type")
    body = parse_json(PromoteRequest, await request.body(), ctype)
    await run_in_threadpool(
        _registry_call, registry.promote, state.settings, body.version, body.reason
    )
    return await _after_change(state, "promote", body.reason)


@router.post("/rollback", response_model=ModelActionResponse, responses=ADMIN)
async def rollback(state: StateDep) -> ModelActionResponse:
    """Move champion back to the previous champion (recorded); every worker swaps to it."""
    await run_in_threadpool(_registry_call, registry.rollback, state.settings, "rollback via API")
    return await _after_change(state, "rollback", "via API")


@router.post("/reload", response_model=ModelActionResponse, responses=ADMIN)
async def reload_model(state: StateDep) -> ModelActionResponse:
    """Reload the champion from the registry in every worker."""
    return await _after_change(state, "reload", "via API")


VersionPath = Annotated[str, Path(pattern=r"^[0-9]{1,9}$", description="Model version.")]
PlotName = Annotated[str, Path(pattern=r"^[a-z_]{1,40}$", description="Figure name.")]
UNKNOWN = NOT_FOUND | REGISTRY_DOWN | ERROR_RESPONSES


def _lookup(fn: Any, *args: Any) -> Any:
    """A registry read where RegistryError means 'unknown version/figure' (404)."""
    try:
        return fn(*args)
    except registry.RegistryError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except Exception as exc:  # pylint: disable=broad-exception-caught  # MLflow errors vary
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"registry error: {exc}") from exc


@router.get("/versions/{version}/curve", response_model=TrainingCurve, responses=UNKNOWN)
async def curve(version: VersionPath, state: StateDep) -> TrainingCurve:
    """The version's training curve (train/validation log-loss per step) from MLflow."""
    points = await run_in_threadpool(_lookup, registry.training_curve, state.settings, version)
    return TrainingCurve.model_validate({"version": version, "points": points})


@router.get("/versions/{version}/plots", response_model=list[PlotInfo], responses=UNKNOWN)
async def plots(version: VersionPath, state: StateDep) -> list[PlotInfo]:
    """The version's figures (confusion matrix, ROC, PR, calibration, importance, curve)."""
    found = await run_in_threadpool(_lookup, registry.list_plots, state.settings, version)
    return [PlotInfo.model_validate(item) for item in found]


@router.get(
    "/versions/{version}/plots/{name}",
    response_class=Response,
    responses=UNKNOWN | {200: {"content": {"image/png": {}}, "description": "The PNG."}},
)
async def plot(version: VersionPath, name: PlotName, state: StateDep) -> Response:
    """One figure of the version as PNG."""
    data = await run_in_threadpool(_lookup, registry.read_plot, state.settings, version, name)
    return Response(data, media_type="image/png")
