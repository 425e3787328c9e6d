"""Monitoring: prediction volume/churn rate/latency, the latest drift run and host sample."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import SettingsDep
from core.monitoring.es import ES_ERRORS
from core.monitoring.read import latest_drift, latest_host, prediction_summary

router = APIRouter(prefix="/monitoring", tags=["monitoring"])


@router.get("/summary")
async def summary(
    settings: SettingsDep,
    hours: Annotated[int, Query(ge=1, le=24 * 90, description="Window in hours.")] = 24,
    source: Annotated[
        Literal["db", "es"], Query(description="db: the prediction table; es: Elasticsearch.")
    ] = "db",
) -> dict[str, Any]:
    """Volume and churn rate per hour, latency p50/p95 over the last ``hours``."""
    try:
        return await run_in_threadpool(prediction_summary, settings, hours, source)
    except ES_ERRORS as exc:
        raise HTTPException(503, f"Elasticsearch unavailable: {exc}") from exc


@router.get("/drift")
async def drift(settings: SettingsDep) -> dict[str, Any]:
    """The newest drift run: PSI per feature (KS for numeric), drifted flags."""
    try:
        found = await run_in_threadpool(latest_drift, settings)
    except ES_ERRORS as exc:
        raise HTTPException(503, f"Elasticsearch unavailable: {exc}") from exc
    if found is None:
        raise HTTPException(404, "no drift run yet: run `make drift`")
    return found


@router.get("/host")
async def host(settings: SettingsDep) -> dict[str, Any]:
    """The newest host sample (CPU, RAM, disk, swap %)."""
    try:
        found = await run_in_threadpool(latest_host, settings)
    except ES_ERRORS as exc:
        raise HTTPException(503, f"Elasticsearch unavailable: {exc}") from exc
    if found is None:
        raise HTTPException(404, "no host sample yet: run `make agent`")
    return found
