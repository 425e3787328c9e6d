"""Background retraining with the promotion gate and an atomic hot swap."""

from __future__ import annotations

import json
import pathlib
import uuid
from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool

from api.deps import RoleRoute, StateDep
from api.retrain_runner import JobConflict
from api.state import AppState
from api.schemas import (
    ERROR_RESPONSES,
    NOT_FOUND,
    RetrainAccepted,
    RetrainStatus,
    upload_schema,
)
from api.tables import issue_items, read_request_table, unprocessable
from core.data import NotTrainable, check_trainable, labelled_rows
from core.schema import SchemaError
from core.store import RetrainJob, as_utc
from core.tables import Table
from core.train import TrainConfig

router = APIRouter(prefix="/retrain", tags=["retrain"], route_class=RoleRoute)
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "multipart/form-data": {
                "schema": upload_schema(
                    "Optional training table with a churn column: CSV/TSV (any separator, "
                    "decimal mark and encoding) or workbook (.xlsx)."
                )
            }
        },
    }
}


def _status(job: RetrainJob) -> RetrainStatus:
    return RetrainStatus.model_validate(
        {
            "job_id": job.id,
            "status": job.status,
            "progress": json.loads(job.progress or "[]"),
            "result": json.loads(job.result) if job.result else None,
            "error": job.error,
            "created_at": as_utc(job.created_at),
            "updated_at": as_utc(job.updated_at),
        }
    )


DropInvalidRows = Annotated[
    bool,
    Query(
        description="Train on the valid rows of an uploaded file with bad rows (their number is "
        "in `dropped_rows`) instead of refusing it with 422."
    ),
]


def _trainable(table: Table, drop_invalid_rows: bool, config: TrainConfig) -> pd.DataFrame:
    """The rows to train on, or a 422 with every reason the upload cannot be trained on."""
    try:
        frame = labelled_rows(table, drop_invalid_rows=drop_invalid_rows)
        check_trainable(frame, config.split, config.cv_folds)
    except SchemaError as exc:
        raise unprocessable(issue_items(exc.report)) from exc
    except NotTrainable as exc:
        raise unprocessable(
            [{"row": None, "column": "churn", "reason": r, "msg": r} for r in exc.reasons]
        ) from exc
    return frame


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RetrainAccepted,
    responses=ERROR_RESPONSES | {409: {"description": "A retrain is running."}},
    openapi_extra=UPLOAD_BODY,
)
async def start_retrain(
    request: Request, state: StateDep, drop_invalid_rows: DropInvalidRows = False
) -> RetrainAccepted:
    """Retrain in the background (stored data or an uploaded table), gate, hot-swap if promoted.

    An upload is read and checked whole before the answer: 422 with every reason when it cannot
    be trained on. The job trains on its valid rows, stored in canonical form; nothing is kept
    for a refused request.
    """
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        job_id = await _submit(state, None)
        return RetrainAccepted(job_id=job_id)
    table = await read_request_table(request, require_target=True)
    config = TrainConfig.model_validate(state.settings.retrain_config)  # what the job trains
    frame = await run_in_threadpool(_trainable, table, drop_invalid_rows, config)
    uploads = state.settings.var_dir / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    data_path = (uploads / f"{uuid.uuid4().hex}.csv").resolve()
    await run_in_threadpool(frame.to_csv, data_path, index=False)
    try:
        job_id = await _submit(state, data_path)
    except HTTPException:
        data_path.unlink(missing_ok=True)  # refused: nothing is kept
        raise
    return RetrainAccepted(
        job_id=job_id,
        rows=len(frame),
        dropped_rows=len(table.source) - len(frame),
        read_as=table.read_as,
        warnings=list(table.warnings),
    )


async def _submit(state: AppState, data_path: pathlib.Path | None) -> str:
    try:
        job_id: str = await run_in_threadpool(state.runner.submit, data_path)
    except JobConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return job_id


@router.get("/{job_id}", response_model=RetrainStatus, responses=NOT_FOUND | ERROR_RESPONSES)
async def retrain_status(
    job_id: Annotated[str, Path(max_length=64, description="Job id from POST /retrain.")],
    state: StateDep,
) -> RetrainStatus:
    """Status, progress and (when done) the gate's decision of a retrain job."""
    job = await run_in_threadpool(state.runner.get, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no retrain job {job_id!r}")
    return _status(job)
