"""Shared data for the monitoring tests: a reference, a prediction table, seeded rows."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import pandas as pd
from elasticsearch import Elasticsearch
from sqlalchemy import insert

from core.store import PREDICTION, open_engine
from core.reference import Reference, build_reference
from core.schema import EXAMPLE_CHURNER, FEATURE_NAMES, validate_frame
from tests.conftest import ROOT


def count(es: Elasticsearch, index: str, query: dict[str, Any] | None = None) -> int:
    """Documents in ``index`` matching ``query`` (0 when the index does not exist)."""
    return int(es.count(index=index, query=query, ignore_unavailable=True)["count"])


@lru_cache(maxsize=1)
def training_frame() -> pd.DataFrame:
    """The committed churn data, typed."""
    return validate_frame(
        pd.read_csv(ROOT / "data" / "raw" / "churn.csv"), require_target=True
    ).frame


@lru_cache(maxsize=1)
def reference() -> Reference:
    """A reference built from the first 3,000 rows."""
    return build_reference(training_frame().iloc[:3000])


def shifted(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy where day minutes doubled and everyone has the international plan."""
    out = frame.copy()
    out["total_day_minutes"] = out["total_day_minutes"] * 2
    out["international_plan"] = "yes"
    return out


def seed_predictions(db_url: str, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` into the ``prediction`` table (the store's schema made as the API does)."""
    engine = open_engine(db_url)
    with engine.begin() as conn:
        conn.execute(insert(PREDICTION), rows)


def prediction_rows(
    hours: int = 3, per_hour: int = 10, features: pd.DataFrame | None = None
) -> list[dict[str, Any]]:
    """Rows over the last ``hours`` hours (none in the future): 1 in 5 predicted churn, 1 in 10
    churned among the first half of each hour (the rest without feedback), latency 1..per_hour
    ms, version 1 or 2."""
    clock = datetime.now(UTC)
    # hh:30 of the current hour when it has passed, else of the previous one: never in the future
    now = (clock if clock.minute >= 30 else clock - timedelta(hours=1)).replace(
        minute=30, second=0, microsecond=0
    )
    rows = []
    n = 0
    for hour in range(hours):
        for i in range(per_hour):
            feats = (
                features.iloc[n % len(features)][list(FEATURE_NAMES)].to_dict()
                if features is not None
                else EXAMPLE_CHURNER
            )
            rows.append(
                {
                    "id": str(uuid.uuid4()),
                    "created_at": now - timedelta(hours=hour, minutes=i),
                    "request_id": f"r{n}",
                    "model_version": "2" if i % 2 else "1",
                    "probability": 0.8 if i % 5 == 0 else 0.2,
                    "label": "yes" if i % 5 == 0 else "no",
                    "threshold": 0.5,
                    "latency_ms": float(i + 1),
                    "features": json.dumps(feats, default=float),
                    "actual": ("yes" if i % 10 == 0 else "no") if i < per_hour // 2 else None,
                    "feedback_at": None,
                }
            )
            n += 1
    return rows
