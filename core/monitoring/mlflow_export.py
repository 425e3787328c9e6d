"""``export-mlflow``: every MLflow run's metric points (with step curves) into Elasticsearch.

MLflow is read with the client :func:`core.registry.configure` returns (this module never imports
mlflow: :mod:`core.registry` stays the only one that does).
Each metric point becomes one document whose ``_id`` is a hash of (run, metric, step, timestamp),
sent with ``index``: a re-run overwrites the same documents (refreshing the model aliases, which
move when a version is promoted) and adds nothing.

``export-mlflow --follow SECONDS`` (the stack's ``exporter`` service) keeps the index in step with
MLflow: every pass lists the runs and their model versions (a few requests) and exports only the
runs that changed since the pass that last exported them (status, end time, latest metric values,
versions and aliases), plus every run still running. A pass that fails (MLflow or Elasticsearch
unavailable) changes nothing it remembers, so the next pass sends those runs again.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch

from core.monitoring.es import JSON, bulk, from_settings
from core.monitoring.events import model_fields, utc_iso
from core.monitoring.indices import Indices
from core.settings import Settings

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class RunListing:
    """What one cheap pass over MLflow finds: the experiment, its runs, their model versions."""

    experiment: Any
    runs: list[Any]
    versions: dict[str, list[VersionRef]]

    def fingerprint(self, run: Any) -> Hashable:
        """What changes when a run has something new to export (``None`` while it runs)."""
        if run.info.status == "RUNNING":
            return None
        versions = tuple(
            (v.version, tuple(v.aliases)) for v in self.versions.get(run.info.run_id, [])
        )
        metrics = tuple(sorted(run.data.metrics.items()))
        return (run.info.status, run.info.end_time, metrics, versions)


def list_runs(client: Any, settings: Settings, max_runs: int = 10_000) -> RunListing | None:
    """The experiment's runs (oldest first) and the registered versions made from them.

    Args:
        client: the MLflow client of :func:`core.registry.configure`.
        settings: the experiment and model names.
        max_runs: most runs listed.

    Returns:
        ``None`` when the experiment does not exist yet.
    """
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is None:
        return None
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
    return RunListing(experiment, runs, by_run)


def run_histories(settings: Settings, max_runs: int = 10_000) -> list[RunHistory]:
    """Every run of the experiment with the full history of each metric and its model versions.

    Returns:
        Runs, oldest first (empty when the experiment does not exist yet).
    """
    from core import registry  # pylint: disable=import-outside-toplevel  # mlflow is heavy

    client: Any = registry.configure(settings)
    listing = list_runs(client, settings, max_runs)
    if listing is None:
        return []
    return [_history(client, listing.experiment, run, listing.versions) for run in listing.runs]


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


class MlflowFollower:
    """Exports the runs that changed since they were last exported (see the module docstring).

    Args:
        settings: MLflow (``MLFLOW_TRACKING_URI``) and Elasticsearch (``ES_URL``) settings.
        indices: index names (``<prefix>-model-metrics`` receives the documents).

    Raises:
        ValueError: when ``ES_URL`` is unset.
    """

    def __init__(self, settings: Settings, indices: Indices | None = None) -> None:
        self.settings = settings
        self.indices = indices or Indices()
        self.es = from_settings(settings, timeout=30.0)
        self._mlflow: Any = None
        self._exported: dict[str, Hashable] = {}

    def sync(self) -> ExportResult:
        """One pass: export the new and changed runs; remember them once Elasticsearch has them.

        Raises:
            TrackingUnavailable: MLflow does not answer; ApiError, TransportError: Elasticsearch.
        """
        if self._mlflow is None:
            from core import registry  # pylint: disable=import-outside-toplevel  # mlflow is heavy

            self._mlflow = registry.configure(self.settings)
        listing = list_runs(self._mlflow, self.settings)
        if listing is None:
            return ExportResult(0, 0, 0, 0, 0)
        changed = [
            (run, fingerprint)
            for run in listing.runs
            if (fingerprint := listing.fingerprint(run)) is None
            or self._exported.get(run.info.run_id) != fingerprint
        ]
        histories = [
            _history(self._mlflow, listing.experiment, run, listing.versions) for run, _ in changed
        ]
        result = export_histories(self.es, histories, self.settings.model_name, self.indices)
        if not result.rejected:
            self._exported.update((run.info.run_id, fingerprint) for run, fingerprint in changed)
        return result

    def follow(self, stop: threading.Event, interval: float, heartbeat: Path | None = None) -> None:
        """Call :meth:`sync` every ``interval`` seconds until ``stop`` is set.

        Args:
            stop: set it (e.g. from a SIGTERM handler) to return after the current pass.
            interval: seconds between passes.
            heartbeat: a file touched on every turn (read by the container probe).
        """
        while not stop.is_set():
            if heartbeat is not None:
                heartbeat.touch()
            try:
                result = self.sync()
            # MLflow or Elasticsearch down or restarting, a race with a training run: the loop
            # must outlive any of them, and the next pass sends what this one could not.
            except Exception as exc:  # pylint: disable=broad-exception-caught
                log.warning("export-mlflow: pass failed (%s); retrying", str(exc)[:300])
            else:
                if result.runs:
                    log.info("export-mlflow: %s", result)
            stop.wait(interval)

    def close(self) -> None:
        """Close the Elasticsearch client."""
        self.es.close()


def export_mlflow(settings: Settings, indices: Indices | None = None) -> ExportResult:
    """Sync all runs of the experiment into ``<prefix>-model-metrics`` (one pass of a follower).

    Raises:
        ValueError: when ``ES_URL`` is unset.
    """
    follower = MlflowFollower(settings, indices)
    try:
        return follower.sync()
    finally:
        follower.close()
