"""Background retraining: one job at a time across all workers, tracked in the database.

``POST /retrain`` stores a ``queued`` job (409 when one is queued or running anywhere) and runs
``core.pipelines.train_and_register`` in a thread of the receiving worker. Progress and the gate's
decision go to the ``retrain_job`` row, so any worker answers ``GET /retrain/{id}`` and streams
progress on ``WS /ws/events``. When the gate promotes the challenger, the model generation is
bumped: every worker reloads the new champion and swaps it in atomically.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from api.serving import ModelManager
from core.pipelines import TrainResult, train_and_register
from core.settings import Settings
from core.store import RetrainJob, as_utc, bump_generation, utcnow
from core.train import TrainConfig

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]
Trainer = Callable[[Settings, Progress], TrainResult]
ACTIVE = ("queued", "running")
STALE_AFTER = timedelta(minutes=30)


class JobConflict(RuntimeError):
    """A retrain is already queued or running."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"retrain {job_id} is already running")
        self.job_id = job_id


def default_trainer(settings: Settings, on_progress: Progress) -> TrainResult:
    """Train with ``settings.retrain_config`` (env ``RETRAIN_CONFIG``, JSON; default
    ``TrainConfig()``), register and gate."""
    config = TrainConfig.model_validate(settings.retrain_config)
    return train_and_register(settings, config, on_progress=on_progress)


class RetrainRunner:
    """Start and track retrain jobs.

    Args:
        settings: service settings (the job trains on ``settings.data_path`` unless given a CSV).
        engine: the database holding jobs and the model generation.
        manager: this worker's model manager (reloaded right away when the gate promotes).
        trainer: the training function (``default_trainer``); tests may inject a faster one.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        manager: ModelManager,
        trainer: Trainer | None = None,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._manager = manager
        self._trainer: Trainer = trainer or default_trainer
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def submit(self, data_path: Path | None = None) -> str:
        """Queue a job and start it; raises :class:`JobConflict` when one is active."""
        job_id = str(uuid.uuid4())
        with self._lock, Session(self._engine) as session:
            now = utcnow()
            for job in session.exec(select(RetrainJob).where(col(RetrainJob.status).in_(ACTIVE))):
                if now - as_utc(job.updated_at) > STALE_AFTER:
                    job.status, job.error, job.updated_at = "failed", "abandoned", now
                    session.add(job)
                else:
                    raise JobConflict(job.id)
            session.add(
                RetrainJob(
                    id=job_id,
                    status="queued",
                    created_at=now,
                    updated_at=now,
                    data_path=str(data_path) if data_path else None,
                )
            )
            session.commit()
        thread = threading.Thread(
            target=self._run, args=(job_id, data_path), name=f"retrain-{job_id[:8]}", daemon=True
        )
        self._threads.append(thread)
        thread.start()
        return job_id

    def get(self, job_id: str) -> RetrainJob | None:
        """The job row, or None."""
        with Session(self._engine) as session:
            return session.get(RetrainJob, job_id)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the jobs started by this worker (used on shutdown and in tests)."""
        for thread in list(self._threads):
            thread.join(timeout)

    def _update(self, job_id: str, **values: Any) -> None:
        with Session(self._engine) as session:
            job = session.get(RetrainJob, job_id)
            if job is None:
                return
            for key, value in values.items():
                setattr(job, key, value)
            job.updated_at = utcnow()
            session.add(job)
            session.commit()

    def _progress(self, job_id: str) -> Progress:
        points: list[dict[str, Any]] = []

        def on_progress(step: str, fraction: float) -> None:
            points.append(
                {
                    "step": str(step),
                    "fraction": min(1.0, max(0.0, float(fraction))),
                    "at": utcnow().isoformat(),
                }
            )
            self._update(job_id, progress=json.dumps(points))

        return on_progress

    def _run(self, job_id: str, data_path: Path | None) -> None:
        settings = self._settings
        if data_path is not None:
            settings = settings.model_copy(update={"data_path": data_path})
        self._update(job_id, status="running")
        progress = self._progress(job_id)
        try:
            result = self._trainer(settings, progress)
        except Exception as exc:  # pylint: disable=broad-exception-caught  # reported on the job
            log.exception("retrain %s failed", job_id)
            self._update(job_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
            return
        if result.promoted:
            progress("swap", 0.95)
            generation = bump_generation(self._engine, f"retrain {job_id} promoted")
            self._manager.load(generation)
        progress("done", 1.0)
        self._update(job_id, status="succeeded", result=result.model_dump_json())
