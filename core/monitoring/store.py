"""The embedded monitoring store: host metrics, drift and live quality in ``settings.db_url``.

Used when ``ES_URL`` is unset, so ``make run`` alone has monitoring. The tables are defined and
migrated with the rest of the predictions database (:mod:`core.store`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select

from core.store import DRIFT, HOST, QUALITY, as_utc, open_engine


class MonitoringStore:
    """Read and write the monitoring tables of one database."""

    def __init__(self, db_url: str) -> None:
        self.engine = open_engine(db_url)

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
