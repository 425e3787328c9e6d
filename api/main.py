"""The FastAPI application factory: ``uvicorn api.main:create_app --factory``.

The lifespan builds one :class:`api.state.AppState` per worker process: the database engine (SQLite
WAL by default), the batched prediction writer, the model manager (loads the champion ONCE, then
follows the model generation), the retrain runner and the event hub. On shutdown it stops the
watcher and drains the prediction queue into the database.

The API ships no monitoring events itself: its ``prediction`` table is the outbox that
``churnops monitoring ship`` sends to Elasticsearch from a process of its own.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi_offline import FastAPIOffline
from sqlmodel import Session, col, select

from api import errors
from api.auth import KeyRing
from api.event_hub import EventHub
from api.fastlane import PredictFastLane
from api.retrain_runner import RetrainRunner, Trainer
from api.routes import feedback, health, model, monitoring, predict, predictions, retrain, ws
from api.serving import Loader, ModelManager
from api.state import AppState
from core.logs import configure_logging
from core.predict import ServedModel
from core.settings import Settings, get_settings
from core.store import PredictionWriter, RetrainJob, as_utc, open_engine, utcnow

log = logging.getLogger(__name__)

DESCRIPTION = """
Churn predictions for telecom customers, served from the MLflow **champion** of `churn-model`.

* `POST /predict` scores one customer (examples: a churner and a loyal customer);
  `POST /predict/batch` scores up to 10,000 (JSON, or CSV/TSV/.xlsx in any spelling and encoding;
  unknown columns come back unchanged; CSV out with `Accept: text/csv`).
* Every prediction is stored (`GET /predictions`); `POST /feedback` records the true outcome and
  `GET /metrics/live` shows the live quality.
* `POST /retrain` (admin) retrains in the background, gates and hot-swaps the model in every worker;
  `WS /ws/events` streams progress and swaps, `WS /ws/predict` scores over a socket.

Each route needs the `X-API-Key` of a role (predict, reader, writer, admin): see the role
table in docs/security.md. Predict routes are open unless `PREDICT_KEY` is set.
"""
TAGS = [
    {"name": "predict", "description": "Score customers."},
    {"name": "predictions", "description": "Stored predictions."},
    {"name": "feedback", "description": "True outcomes and live quality."},
    {"name": "model", "description": "The served champion and the registry."},
    {"name": "retrain", "description": "Background retraining with the promotion gate."},
    {"name": "monitoring", "description": "Volume, latency, drift and host metrics."},
    {"name": "health", "description": "Liveness and readiness."},
]


def _publish_jobs(state: AppState, since: datetime) -> datetime:
    """Publish retrain jobs updated after ``since``; return the newest update time seen."""
    newest = since
    with Session(state.engine) as session:
        jobs = session.exec(
            select(RetrainJob)
            .where(col(RetrainJob.updated_at) > since)
            .order_by(col(RetrainJob.updated_at))
        ).all()
    for job in jobs:
        newest = max(newest, as_utc(job.updated_at))
        state.hub.publish(
            {
                "type": "retrain_progress",
                "job_id": job.id,
                "status": job.status,
                "progress": job.progress,
                "result": job.result,
                "error": job.error,
                "at": as_utc(job.updated_at).isoformat(),
            }
        )
    return newest


async def _watch(state: AppState, interval: float) -> None:
    """Follow the model generation (reload + swap) and retrain progress (events)."""
    seen = utcnow()
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(state.manager.poll)
            if state.hub.subscribers:
                seen = await run_in_threadpool(_publish_jobs, state, seen)
        except Exception:  # pylint: disable=broad-exception-caught  # keep watching
            log.exception("model/job watcher failed; retrying")


def create_app(
    settings: Settings | None = None,
    *,
    loader: Loader | None = None,
    trainer: Trainer | None = None,
    watch_interval: float = 0.5,
) -> FastAPI:
    """Build the API.

    Args:
        settings: configuration (default: :func:`core.settings.get_settings`).
        loader: returns the champion (default: ``core.registry.load_champion``).
        trainer: runs a retrain (default: ``core.pipelines.train_and_register``).
        watch_interval: seconds between checks of the model generation and job progress.

    Returns:
        The FastAPI app.

    Raises:
        ValueError: in prod mode with a missing or placeholder admin key, or a placeholder key of
            another role.
    """
    conf = settings or get_settings()
    keys = KeyRing(conf)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(conf, service="churnops-api")
        notice = keys.open_notice()
        if notice is not None:
            log.warning(notice)
        engine = await run_in_threadpool(open_engine, conf.db_url)
        hub = EventHub()
        hub.bind(asyncio.get_running_loop())
        # rows the database cannot take before shutdown are kept there and replayed on start
        writer = PredictionWriter(engine, spool_dir=conf.var_dir / "spool" / "predictions")
        writer.start()

        def swapped(served: ServedModel) -> None:
            hub.publish(
                {
                    "type": "model_swapped",
                    "model_version": served.version,
                    "generation": served.generation,
                    "compiled": served.compiled,
                }
            )

        manager = ModelManager(conf, engine, loader, on_swap=swapped)
        runner = RetrainRunner(conf, engine, manager, trainer)
        state = AppState(conf, keys, engine, manager, writer, hub, runner)
        app.state.churnops = state
        await run_in_threadpool(manager.load)
        # Everything loaded so far (pandas, sklearn, MLflow, the model) lives as long as the
        # process: keep it out of the cyclic GC, whose full passes over it were p99 stalls.
        gc.collect()
        gc.freeze()
        watcher = asyncio.create_task(_watch(state, watch_interval))
        try:
            yield
        finally:
            watcher.cancel()
            await run_in_threadpool(writer.close)
            await run_in_threadpool(runner.join, 0.1)
            engine.dispose()

    # Swagger UI and ReDoc from assets shipped in fastapi-offline (no CDN: /docs works offline).
    app = FastAPIOffline(
        title="churnops API",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.add_middleware(PredictFastLane, api=app)  # inside the body guard (added next)
    errors.install(app)
    # the hot routes first: Starlette matches routes in order
    for module in (predict, health, model, predictions, feedback, retrain, ws, monitoring):
        app.include_router(module.router)
    return app
