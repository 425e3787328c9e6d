"""Stored predictions: a filtered, paginated list, and one by id."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func
from sqlmodel import col, select

from core.store import StoredPrediction, as_utc
from api.deps import RoleRoute, SessionDep, WriterDep
from api.schemas import ERROR_RESPONSES, NOT_FOUND, PredictionPage, PredictionRecord

router = APIRouter(prefix="/predictions", tags=["predictions"], route_class=RoleRoute)


def to_record(row: StoredPrediction) -> dict[str, Any]:
    """A stored row as the API shows it (features decoded, timestamps in UTC)."""
    return {
        "id": row.id,
        "created_at": as_utc(row.created_at),
        "request_id": row.request_id,
        "model_version": row.model_version,
        "probability": row.probability,
        "label": row.label,
        "threshold": row.threshold,
        "latency_ms": row.latency_ms,
        "features": json.loads(row.features),
        "actual": row.actual,
        "feedback_at": as_utc(row.feedback_at) if row.feedback_at else None,
    }


class PredictionFilter(BaseModel):
    """Page and filters of ``GET /predictions``."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(50, ge=1, le=1000, description="Page size.")
    offset: int = Field(0, ge=0, le=10_000_000, description="Rows to skip.")
    since: datetime | None = Field(None, description="Only at or after (ISO 8601).")
    until: datetime | None = Field(None, description="Only before (ISO 8601).")
    label: Literal["yes", "no"] | None = Field(None, description="Predicted label.")
    model_version: str | None = Field(None, max_length=32, description="Model version.")


@router.get("", response_model=PredictionPage, responses=ERROR_RESPONSES)
def list_predictions(
    session: SessionDep, writer: WriterDep, query: Annotated[PredictionFilter, Query()]
) -> PredictionPage:
    """Stored predictions, newest first, filtered by time, label and model version."""
    writer.flush(timeout=2.0)
    since, until, label, model_version = query.since, query.until, query.label, query.model_version
    limit, offset = query.limit, query.offset
    conditions = []
    if since is not None:
        conditions.append(col(StoredPrediction.created_at) >= _utc(since))
    if until is not None:
        conditions.append(col(StoredPrediction.created_at) < _utc(until))
    if label is not None:
        conditions.append(col(StoredPrediction.label) == label)
    if model_version is not None:
        conditions.append(col(StoredPrediction.model_version) == model_version)
    total = session.exec(
        select(func.count()).select_from(StoredPrediction).where(*conditions)
    ).one()
    rows = session.exec(
        select(StoredPrediction)
        .where(*conditions)
        .order_by(col(StoredPrediction.created_at).desc(), col(StoredPrediction.id))
        .offset(offset)
        .limit(limit)
    ).all()
    return PredictionPage.model_validate(
        {"items": [to_record(r) for r in rows], "total": int(total)}
    )


def _utc(value: datetime) -> datetime:
    """A filter bound in UTC (naive values are taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.get(
    "/{prediction_id}", response_model=PredictionRecord, responses=NOT_FOUND | ERROR_RESPONSES
)
def get_prediction(prediction_id: str, session: SessionDep, writer: WriterDep) -> PredictionRecord:
    """One stored prediction by id."""
    writer.flush(timeout=2.0)
    row = session.get(StoredPrediction, prediction_id[:64])
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no prediction {prediction_id[:64]!r}")
    return PredictionRecord.model_validate(to_record(row))
