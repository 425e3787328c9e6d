"""Feedback (true outcomes) and the live quality (:mod:`core.monitoring.quality`)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.concurrency import run_in_threadpool

from core.monitoring.quality import WINDOW_HOURS, LiveQuality, live_quality
from core.store import set_feedback
from api.deps import RoleRoute, SettingsDep, StateDep
from api.routes.predictions import to_record
from api.state import AppState
from api.tables import documented_json_body, parse_json
from api.schemas import ERROR_RESPONSES, NOT_FOUND, FeedbackRequest, PredictionRecord

router = APIRouter(tags=["feedback"], route_class=RoleRoute)


FEEDBACK_BODY = documented_json_body(FeedbackRequest)


@router.post(
    "/feedback",
    response_model=PredictionRecord,
    responses=NOT_FOUND | ERROR_RESPONSES,
    openapi_extra=FEEDBACK_BODY,
)
async def feedback(request: Request, state: StateDep) -> PredictionRecord:
    """Record whether the customer of a prediction really churned (enables live accuracy)."""
    # The body is read here, after the key was checked (a body parameter would be parsed first).
    body = parse_json(FeedbackRequest, await request.body(), request.headers.get("content-type"))
    return await run_in_threadpool(_record, state, body)


def _record(state: AppState, body: FeedbackRequest) -> PredictionRecord:
    state.writer.flush(timeout=2.0)
    # Another worker may still hold the row in its write batch (≤ 50 ms): retry briefly.
    for _ in range(10):
        row = set_feedback(state.engine, body.prediction_id, body.actual)
        if row is not None:
            return PredictionRecord.model_validate(to_record(row))
        time.sleep(0.05)
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no prediction {body.prediction_id!r}")


@router.get("/metrics/live", response_model=LiveQuality)
async def live_metrics(
    settings: SettingsDep,
    hours: Annotated[
        float,
        Query(gt=0, le=24 * 365, description="Window: the predictions of the last `hours`."),
    ] = WINDOW_HOURS,
) -> LiveQuality:
    """Realized quality from feedback and estimated quality (CBPE) of the recent predictions."""
    return await run_in_threadpool(live_quality, settings, hours)
