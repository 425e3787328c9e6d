"""The predictions database (SQLModel): tables, engine and the batched prediction writer.

SQLite in WAL mode is the default (``settings.db_url``); ``DATABASE_URL`` points it anywhere
SQLAlchemy can go. Nothing here runs at import time: :func:`make_engine` is called by the app's
lifespan.

Prediction rows are written off the request's critical path by :class:`PredictionWriter`: handlers
enqueue a dict (well under a microsecond) and one background thread inserts them in batches.
Rows are never dropped: the buffer is unbounded, every batch is retried until it lands, and
``close()`` drains it before the process exits.

The ``prediction`` table is also the outbox of the monitoring events: the API ships nothing
itself; ``python -m core.monitoring ship`` (another process) sends the rows whose ``shipped_at``
is NULL to Elasticsearch and stamps them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import DateTime, Engine, Index, event, insert, inspect, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.schema import CreateIndex
from sqlmodel import Field, Session, SQLModel, create_engine, select

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    """The current time in UTC (timezone-aware)."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Attach UTC to the naive datetimes SQLite gives back."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


UNSHIPPED = "shipped_at IS NULL"


class Prediction(SQLModel, table=True):
    """One answered prediction: inputs, outputs, model version, latency and the true outcome."""

    __tablename__ = "prediction"
    __table_args__ = (
        # The outbox queue of core.monitoring.outbox: unshipped rows, oldest first. Partial, so it
        # holds only the rows in flight (a handful at steady state), not the whole history.
        Index(
            "ix_prediction_unshipped",
            "created_at",
            sqlite_where=text(UNSHIPPED),
            postgresql_where=text(UNSHIPPED),
        ),
    )

    id: str = Field(
        primary_key=True, max_length=36, description="Prediction id (UUIDv7: time-ordered)."
    )
    created_at: datetime = Field(index=True, description="When it was answered (UTC).")
    request_id: str = Field(max_length=64, description="Request id (X-Request-ID or generated).")
    model_version: str = Field(max_length=32)
    probability: float
    label: str = Field(max_length=3)  # 2 values: an index would cost inserts, not help reads
    threshold: float
    latency_ms: float
    features: str = Field(description="JSON text of the 19 raw fields.")
    actual: str | None = Field(default=None, max_length=3)
    feedback_at: datetime | None = None
    shipped_at: datetime | None = Field(
        default=None, description="When the shipper stored it in Elasticsearch (NULL: not yet)."
    )


class RetrainJob(SQLModel, table=True):
    """A background retrain; stored so every worker process can answer ``GET /retrain/{id}``."""

    __tablename__ = "retrain_job"

    id: str = Field(primary_key=True, max_length=36)
    status: str = Field(index=True, max_length=16)
    created_at: datetime
    updated_at: datetime
    progress: str = Field(default="[]", description="JSON list of {step, fraction, at}.")
    result: str | None = Field(default=None, description="JSON of the gate decision.")
    error: str | None = None
    data_path: str | None = None


class ModelGeneration(SQLModel, table=True):
    """A counter bumped on every promotion/rollback/reload; each worker reloads when it moves."""

    __tablename__ = "model_generation"

    id: int = Field(default=1, primary_key=True)
    generation: int = 0
    reason: str = ""
    updated_at: datetime = Field(default_factory=utcnow)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """Create the engine; SQLite gets its directory, WAL mode and a generous busy timeout.

    Args:
        url: SQLAlchemy database URL.

    Returns:
        A SQLAlchemy engine (tables created and migrated, idempotently, even with several workers
        racing).
    """
    parsed = make_url(url)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    kwargs: dict[str, Any] = {"pool_pre_ping": not is_sqlite}
    if is_sqlite:
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    for attempt in range(5):
        try:
            SQLModel.metadata.create_all(engine)
            break
        except OperationalError:  # another worker created the same table a moment earlier
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    migrate_outbox(engine)
    return engine


def migrate_outbox(engine: Engine) -> None:
    """Give a ``prediction`` table made before the outbox its ``shipped_at`` column and index.

    Idempotent; API workers starting together may race, so a column another worker has just added
    is not an error. Rows already there stay unshipped: the shipper sends them (a row that the
    former in-API sender had already delivered comes back as "already there", never twice).
    """
    columns = {column["name"] for column in inspect(engine).get_columns("prediction")}
    if "shipped_at" not in columns:
        add_shipped_at(engine)
    table = SQLModel.metadata.tables["prediction"]
    index = next(i for i in table.indexes if i.name == "ix_prediction_unshipped")
    with engine.begin() as conn:
        conn.execute(CreateIndex(index, if_not_exists=True))


def add_shipped_at(engine: Engine) -> None:
    """``ALTER TABLE prediction ADD COLUMN shipped_at``; a duplicate column is not an error."""
    kind = DateTime().compile(dialect=engine.dialect)  # DATETIME, TIMESTAMP WITHOUT TIME ZONE...
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE prediction ADD COLUMN shipped_at {kind}")
    except (OperationalError, ProgrammingError) as exc:  # SQLite / PostgreSQL wording
        message = str(exc.orig).lower()
        if "duplicate column" not in message and "already exists" not in message:
            raise


def session_scope(engine: Engine) -> Iterator[Session]:
    """Yield one session (the body of the ``SessionDep`` dependency)."""
    with Session(engine) as session:
        yield session


# ---------------------------------------------------------------------------------------------
# Model generation: the cross-process signal that the champion changed
# ---------------------------------------------------------------------------------------------
def read_generation(engine: Engine) -> int:
    """The current model generation (0 when never bumped)."""
    with Session(engine) as session:
        row = session.get(ModelGeneration, 1)
        return row.generation if row else 0


def bump_generation(engine: Engine, reason: str) -> int:
    """Bump the model generation so every worker reloads the champion; returns the new value."""
    with Session(engine) as session:
        row = session.get(ModelGeneration, 1)
        if row is None:
            row = ModelGeneration(id=1, generation=0)
        row.generation += 1
        row.reason = reason[:500]
        row.updated_at = utcnow()
        session.add(row)
        session.commit()
        return row.generation


# ---------------------------------------------------------------------------------------------
# Batched writer
# ---------------------------------------------------------------------------------------------
_SQLITE_INSERT = (
    "INSERT INTO prediction (id, created_at, request_id, model_version, probability, label, "
    "threshold, latency_ms, features, actual, feedback_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@lru_cache(maxsize=64)  # a batch's rows share one timestamp
def _sqlite_time(value: datetime | None) -> str | None:
    """What SQLAlchemy's SQLite dialect stores for a datetime: naive UTC text."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="microseconds")


def _sqlite_row(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["id"],
        _sqlite_time(row["created_at"]),
        row["request_id"],
        row["model_version"],
        row["probability"],
        row["label"],
        row["threshold"],
        row["latency_ms"],
        row["features"],
        row["actual"],
        _sqlite_time(row["feedback_at"]),
    )


@dataclass(frozen=True)
class BatchRows:
    """A scored batch, turned into prediction rows by the writer thread (not by the request)."""

    common: dict[str, Any]
    ids: Sequence[str]
    probabilities: np.ndarray
    labels: np.ndarray
    features: pd.DataFrame

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self) -> list[dict[str, Any]]:
        """The prediction rows (features as JSON text)."""
        features = self.features.to_json(orient="records", lines=True, double_precision=15)
        texts = features.splitlines()
        return [
            {
                **self.common,
                "id": pid,
                "probability": probability,
                "label": label,
                "features": texts[i],
                "actual": None,
                "feedback_at": None,
            }
            for i, (pid, probability, label) in enumerate(
                zip(self.ids, self.probabilities.tolist(), self.labels.tolist())
            )
        ]


class PredictionWriter:
    """Insert prediction rows in batches from one background thread; lose none.

    ``submit`` appends to a list under an uncontended lock (no syscall, no thread wake-up per
    request); the thread swaps the list out every ``interval`` seconds (or at once on ``flush``)
    and inserts it in one transaction. A short interval keeps each insert (which holds the GIL
    while it builds the rows) small, so it never stalls the event loop for long. Failed batches
    are retried until they land; ``close`` writes what is left.

    Args:
        engine: the predictions database.
        interval: seconds between writes.
    """

    def __init__(self, engine: Engine, *, interval: float = 0.02) -> None:
        self._engine = engine
        self._interval = interval
        self._sqlite = engine.dialect.name == "sqlite"
        self._lock = threading.Lock()
        self._buffer: list[dict[str, Any] | BatchRows] = []
        self._submitted = 0
        self._written = 0
        self._done = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-writer", daemon=True)

    @property
    def written(self) -> int:
        """Rows written since start."""
        return self._written

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def submit(self, row: dict[str, Any]) -> None:
        """Queue one row (a dict of :class:`Prediction` columns; ``features`` may be a dict)."""
        with self._lock:
            self._buffer.append(row)
            self._submitted += 1

    def submit_many(self, rows: Sequence[dict[str, Any]]) -> None:
        """Queue several rows at once."""
        with self._lock:
            self._buffer.extend(rows)
            self._submitted += len(rows)

    def submit_batch(self, batch: BatchRows) -> None:
        """Queue a scored batch; its rows are built in the writer thread."""
        with self._lock:
            self._buffer.append(batch)
            self._submitted += len(batch)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is in the database; False on timeout."""
        target = self._submitted
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._done:
            while self._written < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return self._written >= target
                self._done.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write everything still queued, then stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("prediction writer did not finish within %.0f s", timeout)
        else:
            self._drain()

    def _take(self) -> list[dict[str, Any]]:
        with self._lock:
            taken, self._buffer = self._buffer, []
        rows: list[dict[str, Any]] = []
        for item in taken:
            if isinstance(item, BatchRows):
                rows.extend(item.rows())
            else:
                rows.append(item)
        return rows

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if not isinstance(row["features"], str):
                row["features"] = json.dumps(row["features"])
        with self._engine.begin() as conn:
            if self._sqlite:  # the DB-API executemany: ~20x less CPU than the ORM path
                conn.exec_driver_sql(_SQLITE_INSERT, [_sqlite_row(row) for row in rows])
            else:
                conn.execute(insert(Prediction), rows)

    def _insert_retrying(self, rows: list[dict[str, Any]]) -> None:
        """Insert; retry while the database is unavailable/locked (transient), never drop."""
        delay = 0.05
        while True:
            try:
                self._insert(rows)
                return
            except OperationalError:
                log.exception("writing %d predictions failed; retrying", len(rows))
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            self._insert_retrying(rows)
        except SQLAlchemyError:  # e.g. a duplicate id: write the rest row by row
            log.exception("batch of %d predictions refused; writing row by row", len(rows))
            for row in rows:
                try:
                    self._insert_retrying([row])
                except SQLAlchemyError:
                    log.exception("prediction %s refused by the database", row.get("id"))
        with self._done:
            self._written += len(rows)
            self._done.notify_all()

    def _drain(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            self._write(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            self._drain()
        self._drain()


def set_feedback(engine: Engine, prediction_id: str, actual: str) -> Prediction | None:
    """Record the true outcome of one prediction; None when the id is unknown."""
    with Session(engine) as session:
        now = utcnow()
        result = session.exec(
            update(Prediction)
            .where(Prediction.id == prediction_id)  # type: ignore[arg-type]
            .values(actual=actual, feedback_at=now)
        )
        session.commit()
        if not result.rowcount:
            return None
        return session.exec(select(Prediction).where(Prediction.id == prediction_id)).first()
