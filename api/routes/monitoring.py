"""Monitoring: prediction volume/churn rate/latency, the latest drift run and host sample."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import RoleRoute, SettingsDep
from api.schemas import DriftReport
from core.monitoring.es import ES_ERRORS
from core.monitoring.read import latest_drift, latest_host, prediction_summary

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
    found = _found(await _read(latest_drift, settings), "no drift run yet: run `make drift`")
    return DriftReport.model_validate(found)


@router.get("/host")
async def host(settings: SettingsDep) -> dict[str, Any]:
    """The newest host sample (CPU, RAM, disk, swap %)."""
    return _found(await _read(latest_host, settings), "no host sample yet: run `make agent`")
