"""Monitoring: prediction volume/churn rate/latency, drift (the latest run, or one run now) and
the host's metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import RoleRoute, SettingsDep
from api.schemas import DriftReport
from core.monitoring.es import ES_ERRORS
from core.registry import RegistryError
from core.monitoring.jobs import DriftOptions, run_drift
from core.monitoring.read import current_host, latest_drift, prediction_summary
from core.settings import Settings

T = TypeVar("T")

router = APIRouter(prefix="/monitoring", tags=["monitoring"], route_class=RoleRoute)


async def _read(reader: Callable[..., T], *args: Any) -> T:
    """Run a blocking reader off the event loop; Elasticsearch being down is a 503, not a 500."""
    try:
        return await run_in_threadpool(reader, *args)
    except ES_ERRORS as exc:
        raise HTTPException(503, f"Elasticsearch unavailable: {exc}") from exc


def _found(document: dict[str, Any] | None, missing: str) -> dict[str, Any]:
    """The document, or a 404 that tells the user how to produce it."""
    if document is None:
        raise HTTPException(404, missing)
    return document


@router.get("/summary")
async def summary(
    settings: SettingsDep,
    hours: Annotated[int, Query(ge=1, le=24 * 90, description="Window in hours.")] = 24,
    source: Annotated[
        Literal["db", "es"], Query(description="db: the prediction table; es: Elasticsearch.")
    ] = "db",
) -> dict[str, Any]:
    """Volume and churn rate per hour, latency p50/p95 over the last ``hours``."""
    return await _read(prediction_summary, settings, hours, source)


@router.get("/drift", response_model=DriftReport)
async def drift(settings: SettingsDep) -> DriftReport:
    """The newest drift run: its verdict, and per feature the test, adjusted p-value and PSI."""
    found = _found(
        await _read(latest_drift, settings),
        "no drift run yet: POST /monitoring/drift (admin), `make drift`, or the Monitoring page's "
        "Compute drift now",
    )
    return DriftReport.model_validate(found)


def _drift_now(settings: Settings) -> dict[str, Any] | None:
    """One run of the drift job (:func:`core.monitoring.jobs.run_drift`, its default window and
    alerts; never a retrain), then the stored run as ``GET /monitoring/drift`` reads it."""
    run_drift(settings, DriftOptions(retrain=False))
    return latest_drift(settings)


@router.post(
    "/drift",
    response_model=DriftReport,
    responses={409: {"description": "Nothing to compare yet (no recent prediction, no champion "
                     "reference)."}},  # fmt: skip
)
async def drift_now(settings: SettingsDep) -> DriftReport:
    """Run the drift job now on the recent predictions (as `make drift`); the stored report."""
    try:
        found = await _read(_drift_now, settings)
    except (ValueError, FileNotFoundError, RegistryError) as exc:
        raise HTTPException(409, str(exc)) from exc
    return DriftReport.model_validate(_found(found, "the drift run stored no report"))


@router.get("/host")
async def host(settings: SettingsDep) -> dict[str, Any]:
    """The host now (CPU, RAM, disk, swap %): the agent's newest sample while it runs, otherwise
    a sample the API takes itself (`source`: `agent` or `live`)."""
    return await _read(current_host, settings)
