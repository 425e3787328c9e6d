"""The predictions database: every table once, one engine per URL, Alembic migrations, the writer.

SQLite (WAL) under ``VAR_DIR`` by default (``settings.db_url``); ``DATABASE_URL`` points it at any
SQLAlchemy URL (PostgreSQL in the stack). The API, the shipper and the monitoring jobs all open it
with :func:`open_engine`, which migrates the schema once, under a lock.
"""

from core.store.engine import StoreError, open_engine, prepare
from core.store.records import bump_generation, read_generation, set_feedback
from core.store.tables import (
    DRIFT,
    HOST,
    PREDICTION,
    QUALITY,
    ModelGeneration,
    RetrainJob,
    StoredPrediction,
    as_utc,
    utcnow,
)
from core.store.writer import BatchRows, PredictionWriter

__all__ = [
    "DRIFT",
    "HOST",
    "PREDICTION",
    "QUALITY",
    "BatchRows",
    "ModelGeneration",
    "PredictionWriter",
    "RetrainJob",
    "StoreError",
    "StoredPrediction",
    "as_utc",
    "bump_generation",
    "open_engine",
    "prepare",
    "read_generation",
    "set_feedback",
    "utcnow",
]
