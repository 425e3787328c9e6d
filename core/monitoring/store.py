"""The embedded monitoring store: host metrics, drift and live quality in ``settings.db_url``.

Used when ``ES_URL`` is unset, so ``make run`` alone has monitoring. Tables are created on first
use (never at import). The API's ``prediction`` table lives in the same database and is read, never
written, from here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    inspect,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

METADATA = MetaData()

HOST = Table(
    "monitoring_host",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), index=True, nullable=False),
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
    Column("computed_at", DateTime(timezone=True), index=True, nullable=False),
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
    # Added with the drift tests (core.monitoring.drift); rows of older runs hold NULL here.
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
    Column("at", DateTime(timezone=True), index=True, nullable=False),
    Column("count", Integer, nullable=False),
    Column("accuracy", Float),
    Column("precision", Float),
    Column("recall", Float),
    Column("f1", Float),
    Column("model_version", String(32)),
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


@lru_cache(maxsize=8)
def engine_for(db_url: str) -> Engine:
    """One engine per URL (SQLite: WAL, busy timeout, parent folder created)."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        from pathlib import Path  # pylint: disable=import-outside-toplevel

        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(db_url)
    if url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def as_utc(value: datetime) -> datetime:
    """Attach UTC to the naive datetimes SQLite returns."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def add_missing_columns(engine: Engine, table: Table) -> list[str]:
    """``ALTER TABLE ... ADD COLUMN`` for the columns of ``table`` a database made earlier lacks.

    Only nullable columns are added (existing rows get NULL); another process adding the same
    column a moment earlier is not an error. Returns the names added.
    """
    present = {column["name"] for column in inspect(engine).get_columns(table.name)}
    added = []
    for column in table.columns:
        if column.name in present or not column.nullable:
            continue
        kind = column.type.compile(dialect=engine.dialect)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
        except (OperationalError, ProgrammingError) as exc:  # added by a concurrent process
            if "duplicate" not in str(exc).lower() and "exists" not in str(exc).lower():
                raise
        added.append(column.name)
    return added


class MonitoringStore:
    """Read and write the monitoring tables of one database (created and migrated on first use)."""

    def __init__(self, db_url: str) -> None:
        self.engine = engine_for(db_url)
        METADATA.create_all(self.engine)
        add_missing_columns(self.engine, DRIFT)

    def add_host(self, docs: Iterable[Mapping[str, Any]]) -> int:
        """Store host/core/container documents of the agent; return how many."""
        rows = [_host_row(doc) for doc in docs]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(HOST), rows)
        return len(rows)

    def add_drift(self, rows: list[dict[str, Any]]) -> int:
        """Store the per-feature rows of one drift run."""
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(DRIFT), rows)
        return len(rows)

    def add_quality(self, row: dict[str, Any]) -> None:
        """Store one live-quality snapshot."""
        with self.engine.begin() as conn:
            conn.execute(insert(QUALITY), [row])

    def latest_host(self) -> dict[str, Any] | None:
        """The newest host sample as the ``GET /monitoring/host`` shape, or ``None``."""
        query = select(HOST).where(HOST.c.metricset == "host").order_by(HOST.c.at.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return {
            "at": as_utc(row["at"]).isoformat(),
            "host": row["host"],
            "cpu_percent": row["cpu_percent"],
            "memory_percent": row["memory_percent"],
            "disk_percent": row["disk_percent"],
            "swap_percent": row["swap_percent"],
            "document": json.loads(row["document"]),
        }

    def latest_drift(self) -> list[dict[str, Any]]:
        """The rows of the newest drift run (empty when none)."""
        newest = select(DRIFT.c.run_id).order_by(DRIFT.c.computed_at.desc()).limit(1)
        with self.engine.connect() as conn:
            run_id = conn.execute(newest).scalar()
            if run_id is None:
                return []
            rows = conn.execute(select(DRIFT).where(DRIFT.c.run_id == run_id).order_by(DRIFT.c.id))
            return [dict(r) for r in rows.mappings()]

    def latest_quality(self) -> dict[str, Any] | None:
        """The newest live-quality snapshot, or ``None``."""
        with self.engine.connect() as conn:
            row = conn.execute(select(QUALITY).order_by(QUALITY.c.at.desc()).limit(1)).mappings()
            found = row.first()
        return dict(found) if found else None


def _dig(doc: Mapping[str, Any], path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _host_row(doc: Mapping[str, Any]) -> dict[str, Any]:
    metricset = str(_dig(doc, "metricset.name") or "host")
    if metricset == "container":
        name = _dig(doc, "container.name")
        cpu, memory = _dig(doc, "container.cpu.pct"), _dig(doc, "container.memory.pct")
    elif metricset == "core":
        name, cpu, memory = str(_dig(doc, "system.core.id")), _dig(doc, "system.core.pct"), None
    else:
        name, cpu, memory = None, _dig(doc, "system.cpu.pct"), _dig(doc, "system.memory.pct")
    stamp = doc.get("@timestamp")
    at = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")) if stamp else datetime.now(UTC)
    return {
        "at": at,
        "host": str(_dig(doc, "host.name") or ""),
        "metricset": metricset,
        "name": name,
        "cpu_percent": cpu,
        "memory_percent": memory,
        "disk_percent": _dig(doc, "system.disk.pct"),
        "swap_percent": _dig(doc, "system.swap.pct"),
        "document": json.dumps(doc, default=str),
    }
