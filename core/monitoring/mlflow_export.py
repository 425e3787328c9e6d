"""``export-mlflow``: every MLflow run's metric points (with step curves) into Elasticsearch.

MLflow is read with the client :func:`core.registry.configure` returns (this module never imports
mlflow: :mod:`core.registry` stays the only one that does).
Each metric point becomes one document whose ``_id`` is a hash of (run, metric, step, timestamp),
sent with ``index``: a re-run overwrites the same documents (refreshing the model aliases, which
move when a version is promoted) and adds nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from elasticsearch import Elasticsearch

from core.monitoring.es import JSON, bulk, from_settings
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


@dataclass(frozen=True)
class MetricPoint:
    """One logged value of a metric (step curves have several)."""

    key: str
    value: float
    step: int
    timestamp: int  # milliseconds since the epoch


@dataclass(frozen=True)
class VersionRef:
    """A registered version made from a run, with its current aliases."""

    version: str
    aliases: list[str]


@dataclass(frozen=True)
class RunHistory:
    """Everything exported about one run: identity, params, tags, every metric point."""

    run_id: str
    run_name: str
    experiment_id: str
    experiment_name: str
    status: str
    start_time: int | None
    end_time: int | None
    parent_id: str | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[MetricPoint] = field(default_factory=list)
    versions: list[VersionRef] = field(default_factory=list)


def run_histories(settings: Settings, max_runs: int = 10_000) -> list[RunHistory]:
    """Every run of the experiment with the full history of each metric and its model versions.

    Returns:
        Runs, oldest first (empty when the experiment does not exist yet).
    """
    from core import registry  # pylint: disable=import-outside-toplevel  # mlflow is heavy

    client: Any = registry.configure(settings)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is None:
        return []
    by_run: dict[str, list[VersionRef]] = {}
    for version in client.search_model_versions(f"name='{settings.model_name}'"):
        if version.run_id:
            # search results omit aliases on some stores: read each version for them
            full = client.get_model_version(settings.model_name, version.version)
            by_run.setdefault(version.run_id, []).append(
                VersionRef(str(version.version), list(full.aliases or []))
            )
    runs: list[Any] = []
    token: str | None = None
    while len(runs) < max_runs:
        page = client.search_runs(
            [experiment.experiment_id],
            max_results=min(1000, max_runs - len(runs)),
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    return [_history(client, experiment, run, by_run) for run in runs]


def _history(
    client: Any, experiment: Any, run: Any, by_run: dict[str, list[VersionRef]]
) -> RunHistory:
    points = [
        MetricPoint(m.key, float(m.value), int(m.step), int(m.timestamp))
        for key in sorted(run.data.metrics)
        for m in client.get_metric_history(run.info.run_id, key)
    ]
    tags = dict(run.data.tags)
    return RunHistory(
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        experiment_id=experiment.experiment_id,
        experiment_name=experiment.name,
        status=run.info.status,
        start_time=run.info.start_time,
        end_time=run.info.end_time,
        parent_id=tags.get("mlflow.parentRunId"),
        params=dict(run.data.params),
        tags={k: v for k, v in tags.items() if not k.startswith("mlflow.log-model")},
        metrics=points,
        versions=by_run.get(run.info.run_id, []),
    )


def point_id(run_id: str, metric: str, step: int, timestamp: int) -> str:
    """The deterministic ``_id`` of one metric point."""
    key = f"{run_id}|{metric}|{step}|{timestamp}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def metric_documents(
    run: RunHistory, model_name: str, include_system: bool = False
) -> Iterator[tuple[str, JSON]]:
    """``(_id, document)`` for every metric point of one run history.

    Args:
        run: a :class:`RunHistory`.
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
    client: Elasticsearch,
    runs: Sequence[RunHistory],
    model_name: str,
    indices: Indices | None = None,
    batch_size: int = 2000,
) -> ExportResult:
    """Index every metric point of ``runs`` (see :func:`metric_documents`)."""
    index = (indices or Indices()).model_metrics
    actions = (
        {"_index": index, "_id": doc_id, "_source": doc}
        for run in runs
        for doc_id, doc in metric_documents(run, model_name)
    )
    result = bulk(client, actions, chunk_size=batch_size)
    client.indices.refresh(index=index, ignore_unavailable=True)
    failed = len(result.rejected) + len(result.retry)
    return ExportResult(len(runs), result.sent, result.created, result.existing, failed)


def export_mlflow(settings: Settings, indices: Indices | None = None) -> ExportResult:
    """Sync all runs of the experiment into ``<prefix>-model-metrics``.

    Raises:
        ValueError: when ``ES_URL`` is unset.
    """
    client = from_settings(settings, timeout=30.0)
    try:
        return export_histories(client, run_histories(settings), settings.model_name, indices)
    finally:
        client.close()
