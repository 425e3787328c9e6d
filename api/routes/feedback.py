"""Feedback (true outcomes) and the live quality computed from it."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import case, func
from sqlalchemy import select as sa_select
from sqlmodel import col

from core.store import Prediction, set_feedback
from api.deps import RoleRoute, SessionDep, StateDep
from api.routes.predictions import to_record
from api.state import AppState
from api.tables import parse_json
from api.schemas import ERROR_RESPONSES, NOT_FOUND, FeedbackRequest, LiveMetrics, PredictionRecord

router = APIRouter(tags=["feedback"], route_class=RoleRoute)


FEEDBACK_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": FeedbackRequest.model_json_schema()}},
    }
}


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


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


@router.get("/metrics/live", response_model=LiveMetrics)
def live_metrics(session: SessionDep) -> LiveMetrics:
    """Accuracy, precision, recall and F1 of the predictions that received feedback."""
    yes_pred = col(Prediction.label) == "yes"
    yes_true = col(Prediction.actual) == "yes"
    row = (
        session.connection()
        .execute(
            sa_select(
                func.count(),
                func.sum(case((yes_pred & yes_true, 1), else_=0)),
                func.sum(case((yes_pred & ~yes_true, 1), else_=0)),
                func.sum(case((~yes_pred & yes_true, 1), else_=0)),
                func.sum(case((col(Prediction.label) == col(Prediction.actual), 1), else_=0)),
            ).where(col(Prediction.actual).is_not(None))
        )
        .one()
    )
    count, tp, fp, fn, correct = (int(v or 0) for v in row)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return LiveMetrics(
        count=count,
        accuracy=_ratio(correct, count),
        precision=precision,
        recall=recall,
        f1=f1,
    )
