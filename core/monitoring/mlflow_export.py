"""``export-mlflow``: every MLflow run's metric points (with step curves) into Elasticsearch.

MLflow is read through :func:`core.registry.run_histories` (the only module that imports mlflow).
Each metric point becomes one document whose ``_id`` is a hash of (run, metric, step, timestamp), sent
with ``index``: a re-run overwrites the same documents (refreshing the model aliases, which move
when a version is promoted) and adds nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from core.monitoring.es import EsClient, JSON
from core.monitoring.events import model_fields, utc_iso
from core.monitoring.indices import Indices
from core.settings import Settings


@dataclass(frozen=True)
class ExportResult:
    """What one export did."""

    runs: int
    points: int
    created: int
    updated: int
    rejected: int


def point_id(run_id: str, metric: str, step: int, timestamp: int) -> str:
    """The deterministic ``_id`` of one metric point."""
    key = f"{run_id}|{metric}|{step}|{timestamp}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def metric_documents(
    run: Any, model_name: str, include_system: bool = False
) -> Iterator[tuple[str, JSON]]:
    """``(_id, document)`` for every metric point of one run history.

    Args:
        run: a :class:`core.registry.RunHistory` (duck-typed: ``run_id``, ``run_name``,
            ``experiment_id``, ``experiment_name``, ``status``, ``start_time``, ``end_time``,
            ``params``, ``tags``, ``parent_id``, ``metrics`` of ``key/value/step/timestamp``,
            ``versions`` of ``version/aliases``).
        model_name: the registered model name.
        include_system: also export MLflow system metrics (``system/...``).
    """
    versions = list(run.versions)
    newest = max(versions, key=lambda v: int(v.version)) if versions else None
    model = {
        "name": model_name,
        **model_fields(newest.version if newest else None),
        "aliases": sorted({a for v in versions for a in v.aliases}),
        "family": run.tags.get("model_family") or run.params.get("family"),
    }
    steps: dict[str, int] = {}
    for point in run.metrics:
        steps[point.key] = steps.get(point.key, 0) + 1
    base: JSON = {
        "run": {
            "id": run.run_id,
            "name": run.run_name,
            "status": run.status,
            "start_time": utc_iso(run.start_time / 1000) if run.start_time else None,
            "end_time": utc_iso(run.end_time / 1000) if run.end_time else None,
            "parent_id": run.parent_id,
        },
        "experiment": {"id": run.experiment_id, "name": run.experiment_name},
        "model": model,
        "params": {k: str(v)[:1000] for k, v in run.params.items()},
        "event": {"dataset": "churnops.model_metrics", "kind": "metric"},
    }
    for point in run.metrics:
        if point.key.startswith("system/") and not include_system:
            continue
        doc = {
            **base,
            "@timestamp": utc_iso(point.timestamp / 1000),
            "metric": {
                "name": point.key,
                "step": int(point.step),
                "value": float(point.value),
                "kind": "curve" if steps[point.key] > 1 else "final",
            },
        }
        yield point_id(run.run_id, point.key, int(point.step), int(point.timestamp)), doc


def export_histories(
    client: EsClient,
    runs: Sequence[Any],
    model_name: str,
    indices: Indices | None = None,
    batch_size: int = 2000,
) -> ExportResult:
    """Index every metric point of ``runs`` (see :func:`metric_documents`)."""
    index = (indices or Indices()).model_metrics
    created = updated = rejected = points = 0
    batch: list[tuple[JSON, JSON]] = []

    def send() -> None:
        nonlocal created, updated, rejected
        result = client.bulk(batch)
        created += result.created
        updated += result.existing
        rejected += len(result.rejected) + len(result.retry)
        batch.clear()

    for run in runs:
        for doc_id, doc in metric_documents(run, model_name):
            batch.append(({"index": {"_index": index, "_id": doc_id}}, doc))
            points += 1
            if len(batch) >= batch_size:
                send()
    if batch:
        send()
    client.refresh(index)
    return ExportResult(len(runs), points, created, updated, rejected)


def export_mlflow(settings: Settings, indices: Indices | None = None) -> ExportResult:
    """Sync all runs of the experiment into ``<prefix>-model-metrics``.

    Raises:
        ValueError: when ``ES_URL`` is unset.
    """
    from core import registry  # pylint: disable=import-outside-toplevel  # mlflow is heavy

    client = EsClient.from_settings(settings, timeout=30.0)
    try:
        return export_histories(
            client, registry.run_histories(settings), settings.model_name, indices
        )
    finally:
        client.close()
