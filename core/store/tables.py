"""Every table of the predictions database, defined once (one SQLAlchemy ``MetaData``).

The API writes ``prediction`` (one row per answered prediction), ``retrain_job`` and
``model_generation``; ``core.monitoring`` reads ``prediction``, stamps its ``shipped_at`` (the
outbox of the Elasticsearch shipper) and keeps its embedded monitoring tables (host metrics, drift,
live quality) in the same database when ``ES_URL`` is unset. The schema itself is created and
migrated only by :func:`core.store.engine.prepare` (Alembic revisions under ``migrations/``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, Column, Float, Index, Integer, String, Table, Text, text
from sqlmodel import Field, SQLModel, UTCDateTime

#: The rows the shipper has not sent yet (the partial index below holds only those).
UNSHIPPED = "shipped_at IS NULL"
METADATA = SQLModel.metadata
# Every timestamp column is ``UTCDateTime`` (what SQLModel gives ``datetime`` fields): TIMESTAMPTZ
# on PostgreSQL, written from aware datetimes only (a naive one is a ValueError, not a silent shift
# by the server's time zone) and read back as aware UTC datetimes on both back ends.


def utcnow() -> datetime:
    """The current time in UTC (timezone-aware)."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC: a naive value (SQLite keeps no offset) is taken as UTC, an aware one
    (PostgreSQL answers in its session's time zone) is converted."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StoredPrediction(SQLModel, table=True):
    """One answered prediction, a row of the ``prediction`` table: inputs, outputs, model version,
    latency and the true outcome."""

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


PREDICTION = StoredPrediction.__table__  # type: ignore[attr-defined]  # SQLModel's table object

HOST = Table(
    "monitoring_host",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), index=True, nullable=False),
    Column("host", String(255), nullable=False),
    Column("metricset", String(32), nullable=False, index=True),
    Column("name", String(255), nullable=True, doc="container name / core id"),
    Column("cpu_percent", Float),
    Column("memory_percent", Float),
    Column("disk_percent", Float),
    Column("swap_percent", Float),
    Column("document", Text, nullable=False, doc="the full document as JSON"),
)

DRIFT = Table(
    "monitoring_drift",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), index=True, nullable=False),
    Column("computed_at", UTCDateTime(), index=True, nullable=False),
    Column("feature", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("psi", Float, nullable=False),
    Column("ks_statistic", Float),
    Column("ks_pvalue", Float),
    Column("drifted", Boolean, nullable=False),
    Column("threshold", Float, nullable=False, doc="alpha of the adjusted p-values"),
    Column("reference_rows", Integer, nullable=False),
    Column("current_rows", Integer, nullable=False),
    Column("model_version", String(32)),
    Column("source", String(32)),
    # Added with the drift tests (revision 0003); rows of older runs hold NULL here.
    Column("rows", Integer, doc="non-missing window values of the feature"),
    Column("test", String(32), doc="ks, z, fisher, chi2 or chi2_monte_carlo"),
    Column("statistic", Float),
    Column("p_value", Float),
    Column("p_value_adjusted", Float, doc="Holm-adjusted over the features tested together"),
    Column("distance", Float, doc="normed Wasserstein or Jensen-Shannon distance"),
    Column("verdict", String(32), doc="drift, no_drift or not_enough_rows (the run's)"),
    Column("min_rows", Integer),
)

QUALITY = Table(
    "monitoring_quality",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), index=True, nullable=False),
    Column("count", Integer, nullable=False),
    Column("accuracy", Float),
    Column("precision", Float),
    Column("recall", Float),
    Column("f1", Float),
    Column("model_version", String(32)),
)
