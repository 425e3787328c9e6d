"""Background retraining with the promotion gate and an atomic hot swap."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.concurrency import run_in_threadpool

from api.deps import AdminDep, StateDep
from api.jobs import JobConflict
from api.schemas import ADMIN_RESPONSES, ERROR_RESPONSES, NOT_FOUND, RetrainAccepted, RetrainStatus
from api.tables import issue_items, parse_csv, read_upload, unprocessable
from core.schema import validate_frame
from core.store import RetrainJob, as_utc

router = APIRouter(prefix="/retrain", tags=["retrain"])
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "Optional training CSV with a churn column.",
                        }
                    },
                }
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


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RetrainAccepted,
    responses=ADMIN_RESPONSES | ERROR_RESPONSES | {409: {"description": "A retrain is running."}},
    openapi_extra=UPLOAD_BODY,
)
async def start_retrain(request: Request, state: StateDep, _: AdminDep) -> RetrainAccepted:
    """Retrain in the background (stored data or an uploaded CSV), gate, hot-swap if promoted."""
    data_path = None
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        raw = await read_upload(request)
        frame = parse_csv(raw)
        report = await run_in_threadpool(validate_frame, frame, require_target=True)
        if report.issues and not report.valid_rows.any():
            raise unprocessable(issue_items(report))
        uploads = state.settings.var_dir / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        data_path = (uploads / f"{uuid.uuid4().hex}.csv").resolve()
        data_path.write_bytes(raw)
    try:
        job_id = await run_in_threadpool(state.runner.submit, data_path)
    except JobConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return RetrainAccepted(job_id=job_id)


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
