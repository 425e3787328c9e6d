"""Turn what services submit into Elasticsearch documents (ECS-style field names).

Prediction rows are shaped like the API's ``prediction`` table (``id``, ``created_at``,
``request_id``, ``model_version``, ``probability``, ``label``, ``threshold``, ``latency_ms``,
``features`` as a dict or JSON text; the shipper reads them from that table); every other kind is
submitted as a finished document.
Every document gets a deterministic ``_id`` so a resend after a failure never duplicates it.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

DATASETS = {
    "prediction": "churnops.predictions",
    "drift": "churnops.drift",
    "host": "churnops.host",
    "quality": "churnops.quality",
    "log": "churnops.logs",
    "model_metric": "churnops.model_metrics",
}


@lru_cache(maxsize=1)
def hostname() -> str:
    """This machine's name (cached)."""
    return socket.gethostname()


def utc_iso(value: Any = None) -> str:
    """An ISO-8601 UTC timestamp from a datetime, an ISO string or ``None`` (now)."""
    if value is None:
        value = datetime.now(UTC)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(float(value), UTC)
    if not isinstance(value, datetime):
        raise TypeError(f"not a timestamp: {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    text: str = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def model_fields(version: Any) -> dict[str, Any]:
    """The ``model`` object for a version (``version_number`` lets Kibana sort versions)."""
    text = "" if version is None else str(version)
    out: dict[str, Any] = {"version": text}
    if text.isdigit():
        out["version_number"] = int(text)
    return out


def prediction_document(row: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(_id, document)`` for one prediction row (see the module docstring)."""
    features = row.get("features") or {}
    if isinstance(features, str):
        features = json.loads(features)
    label = str(row.get("label", ""))
    pid = str(row.get("id") or row.get("prediction_id") or uuid.uuid4())
    doc = {
        "@timestamp": utc_iso(row.get("@timestamp") or row.get("created_at")),
        "prediction": {
            "id": pid,
            "request_id": row.get("request_id"),
            "probability": row.get("probability"),
            "label": label,
            "churn": 1 if label == "yes" else 0,
            "threshold": row.get("threshold"),
            "latency_ms": row.get("latency_ms"),
        },
        "model": model_fields(row.get("model_version")),
        "features": dict(features),
    }
    return pid, doc


def to_document(kind: str, doc: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(_id, document)`` for any event kind, with ``@timestamp``, ``event`` and ``host`` set.

    Raises:
        ValueError: for an unknown kind.
    """
    if kind not in DATASETS:
        raise ValueError(f"unknown event kind {kind!r}")
    if kind == "prediction" and "prediction" not in doc:
        doc_id, source = prediction_document(doc)
    else:
        source = dict(doc)
        doc_id = str(source.pop("_id", None) or uuid.uuid4())
        source["@timestamp"] = utc_iso(source.get("@timestamp"))
    source.setdefault("event", {}).setdefault("dataset", DATASETS[kind])
    source.setdefault("host", {}).setdefault("name", hostname())
    return doc_id, source
