"""Read functions behind ``GET /monitoring/*``: Elasticsearch when configured, SQLite otherwise.

The shapes are the ones pinned in ``docs/design.md``. The prediction summary is computed from the
API's ``prediction`` table (the source of truth, always present) unless ``source="es"`` is asked;
the Elasticsearch variant runs the same aggregation as the Kibana *Predictions* panels.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
from elasticsearch import Elasticsearch
from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.exc import OperationalError

from core.monitoring.es import from_settings
from core.monitoring.host import host_summary, live_host
from core.monitoring.indices import Indices
from core.monitoring.store import MonitoringStore
from core.settings import Settings
from core.store import PREDICTION, as_utc, open_engine


def _pct(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if values.size else None


def _empty_summary(hours: int) -> dict[str, Any]:
    return {
        "window_hours": hours,
        "count": 0,
        "churn_rate": None,
        "latency_ms": {"p50": None, "p95": None},
        "latency_by_kind": _latency_by_kind(pd.DataFrame(columns=["request_id", "latency_ms"])),
        "by_hour": [],
    }


def _latency_by_kind(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Latency p50/p95 of single predictions and of batches, apart.

    A batch stores one row per customer, all with its request id and its time per row; a single
    prediction is a request of one row. Single: one value per prediction (ms). Batch: one value
    per batch request (ms per row), so a large batch counts once, not once per row.
    """
    sizes = frame.groupby("request_id")["request_id"].transform("size")
    single = frame.loc[sizes == 1, "latency_ms"].to_numpy(dtype="float64")
    batch = (
        frame.loc[sizes > 1].groupby("request_id")["latency_ms"].first().to_numpy(dtype="float64")
    )
    return {
        "single": {"requests": int(single.size), "p50": _pct(single, 50), "p95": _pct(single, 95)},
        "batch": {"requests": int(batch.size), "p50": _pct(batch, 50), "p95": _pct(batch, 95)},
    }


def _in_window(hours: float, until: datetime | None) -> ColumnElement[bool]:
    """The predictions answered in the ``hours`` before ``until`` (default: now), both ends
    included: the one window every reader of the table uses."""
    end = until or datetime.now(UTC)
    return and_(
        PREDICTION.c.created_at >= end - timedelta(hours=hours), PREDICTION.c.created_at <= end
    )


def recent_predictions(
    settings: Settings,
    hours: float,
    limit: int | None = None,
    with_features: bool = False,
    until: datetime | None = None,
) -> pd.DataFrame:
    """Rows of the ``prediction`` table answered in the ``hours`` before ``until`` (default: now),
    newest first, at most ``limit``.

    Returns an empty frame when the table does not exist yet.
    """
    columns = [
        PREDICTION.c.created_at,
        PREDICTION.c.request_id,
        PREDICTION.c.model_version,
        PREDICTION.c.label,
        PREDICTION.c.threshold,
        PREDICTION.c.latency_ms,
        PREDICTION.c.probability,
        PREDICTION.c.actual,
    ]
    if with_features:
        columns.append(PREDICTION.c.features)
    query = (
        select(*columns).where(_in_window(hours, until)).order_by(PREDICTION.c.created_at.desc())
    )
    if limit:
        query = query.limit(limit)
    try:
        with open_engine(settings.db_url).connect() as conn:
            rows = conn.execute(query).mappings().all()
    except OperationalError:
        return pd.DataFrame(columns=[c.name for c in columns])
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in columns])


#: The columns of :func:`prediction_counts`.
COUNT_COLUMNS = ("model_version", "label", "actual", "count")


def prediction_counts(
    settings: Settings, hours: float, until: datetime | None = None
) -> pd.DataFrame:
    """How many predictions of the window (as :func:`recent_predictions`) each model version
    served, per served ``label`` and true outcome ``actual`` (``None``: no feedback yet); every row
    of the window, counted by the database in one aggregate (SQLite and PostgreSQL alike).

    Args:
        settings: where the prediction store is (``settings.db_url``).
        hours: length of the window, ending at ``until``.
        until: end of the window (default: now, UTC).

    Returns:
        One row per (``model_version``, ``label``, ``actual``) group with its ``count``; the
        groups of the version with the newest prediction first, then the next version's (each
        version sorted by its newest prediction). Empty when the table does not exist yet.
    """
    query = (
        select(
            PREDICTION.c.model_version,
            PREDICTION.c.label,
            PREDICTION.c.actual,
            func.count().label("count"),
            func.max(PREDICTION.c.created_at).label("newest"),
        )
        .where(_in_window(hours, until))
        .group_by(PREDICTION.c.model_version, PREDICTION.c.label, PREDICTION.c.actual)
    )
    try:
        with open_engine(settings.db_url).connect() as conn:
            groups = conn.execute(query).mappings().all()
    except OperationalError:
        return pd.DataFrame(columns=list(COUNT_COLUMNS))
    frame = pd.DataFrame([dict(g) for g in groups], columns=[*COUNT_COLUMNS, "newest"])
    if frame.empty:
        return frame[list(COUNT_COLUMNS)]
    # A version's rank is its newest prediction over all its groups, not the group's own.
    latest = frame.groupby("model_version")["newest"].transform("max")
    ordered = frame.assign(latest=latest).sort_values(
        ["latest", "model_version"], ascending=[False, True], kind="stable"
    )
    return ordered[list(COUNT_COLUMNS)].reset_index(drop=True)


def summary_from_db(settings: Settings, hours: int = 24) -> dict[str, Any]:
    """Volume, churn rate and latency p50/p95, overall and per hour, from the prediction table."""
    frame = recent_predictions(settings, hours)
    if frame.empty:
        return _empty_summary(hours)
    frame["hour"] = pd.to_datetime(frame["created_at"], utc=True).dt.floor("h")
    frame["churn"] = (frame["label"] == "yes").astype(float)
    latency = frame["latency_ms"].to_numpy(dtype="float64")
    by_hour = []
    for hour, group in frame.groupby("hour", sort=True):
        values = group["latency_ms"].to_numpy(dtype="float64")
        by_hour.append(
            {
                "hour": pd.Timestamp(str(hour)).isoformat(),
                "count": int(len(group)),
                "churn_rate": float(group["churn"].mean()),
                "latency_p50_ms": _pct(values, 50),
                "latency_p95_ms": _pct(values, 95),
            }
        )
    return {
        "window_hours": hours,
        "count": int(len(frame)),
        "churn_rate": float(frame["churn"].mean()),
        "latency_ms": {"p50": _pct(latency, 50), "p95": _pct(latency, 95)},
        "latency_by_kind": _latency_by_kind(frame),
        "by_hour": by_hour,
    }


def summary_query(hours: int) -> dict[str, Any]:
    """The aggregation of the Kibana *Predictions* panels (volume, churn rate, latency)."""
    latency = {"percentiles": {"field": "prediction.latency_ms", "percents": [50, 95]}}
    churned = {"filter": {"term": {"prediction.label": "yes"}}}
    return {
        "size": 0,
        "track_total_hits": True,
        "query": {"range": {"@timestamp": {"gte": f"now-{hours}h"}}},
        "aggs": {
            "latency": latency,
            "churned": churned,
            "by_hour": {
                "date_histogram": {"field": "@timestamp", "fixed_interval": "1h"},
                "aggs": {"latency": latency, "churned": churned},
            },
        },
    }


def _percentiles(agg: dict[str, Any]) -> tuple[float | None, float | None]:
    values = agg.get("values", {})
    return values.get("50.0"), values.get("95.0")


def summary_from_es(client: Elasticsearch, indices: Indices, hours: int = 24) -> dict[str, Any]:
    """The same summary computed by Elasticsearch from the predictions data stream."""
    answer = client.search(
        index=indices.predictions, body=summary_query(hours), ignore_unavailable=True
    )
    total = int(answer["hits"]["total"]["value"])
    if not total:
        return _empty_summary(hours)
    aggs = answer["aggregations"]
    p50, p95 = _percentiles(aggs["latency"])
    by_hour = []
    for bucket in aggs["by_hour"]["buckets"]:
        if not bucket["doc_count"]:
            continue
        b50, b95 = _percentiles(bucket["latency"])
        by_hour.append(
            {
                "hour": datetime.fromtimestamp(bucket["key"] / 1000, UTC).isoformat(),
                "count": int(bucket["doc_count"]),
                "churn_rate": bucket["churned"]["doc_count"] / bucket["doc_count"],
                "latency_p50_ms": b50,
                "latency_p95_ms": b95,
            }
        )
    return {
        "window_hours": hours,
        "count": total,
        "churn_rate": aggs["churned"]["doc_count"] / total,
        "latency_ms": {"p50": p50, "p95": p95},
        "by_hour": by_hour,
    }


def prediction_summary(
    settings: Settings,
    hours: int = 24,
    source: Literal["db", "es"] = "db",
    indices: Indices | None = None,
) -> dict[str, Any]:
    """``GET /monitoring/summary``: from the prediction table, or Elasticsearch when asked."""
    if source == "es" and settings.es_url:
        client = from_settings(settings)
        try:
            return {**summary_from_es(client, indices or Indices(), hours), "source": "es"}
        finally:
            client.close()
    return {**summary_from_db(settings, hours), "source": "db"}


#: The per-feature fields of ``GET /monitoring/drift`` (stored alike in SQLite and Elasticsearch).
DRIFT_FEATURE_FIELDS: tuple[str, ...] = (
    "feature",
    "kind",
    "rows",
    "test",
    "statistic",
    "p_value",
    "p_value_adjusted",
    "distance",
    "psi",
    "ks_statistic",
    "ks_pvalue",
)


def _drift_shape(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """``GET /monitoring/drift`` from the stored per-feature rows of one run.

    Runs stored before the drift tests have no ``verdict``: it is then read from their flags.
    """
    if not rows:
        return None
    first = rows[0]
    features = [
        {**{name: r.get(name) for name in DRIFT_FEATURE_FIELDS}, "drifted": bool(r["drifted"])}
        for r in rows
    ]
    drifted = any(f["drifted"] for f in features)
    computed = first["computed_at"]
    return {
        "run_id": first["run_id"],
        "computed_at": computed.isoformat() if isinstance(computed, datetime) else computed,
        "reference_rows": first["reference_rows"],
        "current_rows": first["current_rows"],
        "threshold": first["threshold"],
        "min_rows": first.get("min_rows"),
        "verdict": first.get("verdict") or ("drift" if drifted else "no_drift"),
        "model_version": first["model_version"],
        "drifted": drifted,
        "features": features,
    }


def latest_drift_from_es(client: Elasticsearch, indices: Indices) -> dict[str, Any] | None:
    """The newest drift run stored in Elasticsearch, or ``None``."""
    newest = client.search(
        index=indices.drift,
        size=1,
        sort=[{"@timestamp": "desc"}],
        query={"term": {"drift.is_overall": True}},
        ignore_unavailable=True,
    )
    hits = newest["hits"]["hits"]
    if not hits:
        return None
    run_id = hits[0]["_source"]["drift"]["run_id"]
    answer = client.search(
        index=indices.drift,
        size=200,
        query={
            "bool": {
                "filter": [
                    {"term": {"drift.run_id": run_id}},
                    {"term": {"drift.is_overall": False}},
                ]
            }
        },
    )
    rows = []
    for hit in answer["hits"]["hits"]:
        src = hit["_source"]
        drift = src["drift"]
        rows.append(
            {
                **{name: drift.get(name) for name in DRIFT_FEATURE_FIELDS},
                "kind": drift.get("feature_kind"),
                "run_id": run_id,
                "computed_at": src["@timestamp"],
                "drifted": drift["drifted"],
                "threshold": drift["threshold"],
                "verdict": drift.get("verdict"),
                "min_rows": drift.get("min_rows"),
                "reference_rows": src["reference"]["rows"],
                "current_rows": src["window"]["rows"],
                "model_version": src.get("model", {}).get("version"),
            }
        )
    rows.sort(key=lambda r: str(r["feature"]))
    return _drift_shape(rows)


def latest_drift(settings: Settings, indices: Indices | None = None) -> dict[str, Any] | None:
    """``GET /monitoring/drift``: the newest drift run (``None`` when there is none yet)."""
    if settings.es_url:
        client = from_settings(settings)
        try:
            return latest_drift_from_es(client, indices or Indices())
        finally:
            client.close()
    return _drift_shape(MonitoringStore(settings.db_url).latest_drift())


def latest_host_from_es(client: Elasticsearch, indices: Indices) -> dict[str, Any] | None:
    """The newest host sample stored in Elasticsearch, or ``None``."""
    answer = client.search(
        index=indices.host,
        size=1,
        sort=[{"@timestamp": "desc"}],
        query={"term": {"metricset.name": "host"}},
        ignore_unavailable=True,
    )
    hits = answer["hits"]["hits"]
    if not hits:
        return None
    return {**host_summary(hits[0]["_source"]), "source": "agent"}


def latest_host(settings: Settings, indices: Indices | None = None) -> dict[str, Any] | None:
    """``GET /monitoring/host``: the newest host sample (``None`` when there is none yet)."""
    if settings.es_url:
        client = from_settings(settings)
        try:
            return latest_host_from_es(client, indices or Indices())
        finally:
            client.close()
    found = MonitoringStore(settings.db_url).latest_host()
    if found is not None:
        found["at"] = as_utc(datetime.fromisoformat(found["at"])).isoformat()
        found["source"] = "agent"
    return found


#: A host agent whose newest sample is older than this is taken as not running.
AGENT_STALE = timedelta(minutes=5)


def current_host(
    settings: Settings, indices: Indices | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """The host now: the agent's newest sample (``source: "agent"``) while it is fresh (at most
    :data:`AGENT_STALE` old), otherwise a sample taken by this process
    (:func:`core.monitoring.host.live_host`, ``source: "live"``), with ``agent_last_seen`` (the
    stale sample's time, or ``None`` when no agent ever ran)."""
    found = latest_host(settings, indices)
    at = as_utc(datetime.fromisoformat(str(found["at"]))) if found and found.get("at") else None
    if found is not None and at is not None and (now or datetime.now(UTC)) - at <= AGENT_STALE:
        return found
    return {**live_host(), "agent_last_seen": None if at is None else at.isoformat()}
