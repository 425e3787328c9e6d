"""MLflow tracking and model registry: the only module of churnops that imports ``mlflow``.

Nothing happens at import time: :func:`configure` points MLflow at ``settings.tracking_uri``
(default: a SQLite store ``var/mlflow.db`` with artifacts under ``var/mlartifacts``, no server)
and is called by every public function.

* :func:`log_training` records one training run: parameters, holdout metrics, the training curve as
  step metrics, the dataset as an MLflow input, provenance tags, figures, the classification report,
  ``bundle.json``, the drift reference ``reference.json`` and the model (skops, signature, input
  example). System metrics are sampled while it runs.
* :func:`register` makes the run's model a version of ``churn-model`` with alias ``challenger``;
  :func:`gate` scores the challenger and the champion on the same holdout and moves ``champion``
  only when the challenger passes :data:`core.evaluate.QUALITY_THRESHOLDS` and beats the champion
  by a margin; :func:`promote` and :func:`rollback` are the recorded manual overrides.
* :func:`load_champion` returns the champion and keeps a copy under ``settings.model_cache_dir``,
  from which serving starts (degraded) when the tracking server is down.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal

import mlflow
import numpy as np
import pandas as pd
from alembic.util.exc import CommandError
from filelock import FileLock
from mlflow import MlflowClient
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.exc import SQLAlchemyError

from core import plots
from core.evaluate import QUALITY_THRESHOLDS, Metrics, evaluate
from core.persist import (
    MODEL_FILE,
    TRUSTED_TYPES,
    ModelBundle,
    bundle_document,
    load_bundle,
)
from core.reference import build_reference
from core.settings import Settings
from core.train import thread_limit

LOGGER = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT = "model"
HISTORY_TAG = "champion_history"
MODEL_URI_TAG = "model_uri"
PROBE_TIMEOUT = 5.0
CACHE_INFO = "champion.json"


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (no champion, nothing to roll back to...)."""


class TrackingUnavailable(ConnectionError):
    """The HTTP tracking server does not answer (raised fast instead of MLflow's long retries)."""


class ChampionUnavailable(RegistryError):
    """Neither the registry nor the local copy can provide a champion."""


class GatePolicy(BaseSettings):
    """How a challenger must beat the champion (env ``GATE_METRIC``, ``GATE_MARGIN``)."""

    model_config = SettingsConfigDict(env_prefix="GATE_", extra="ignore")

    metric: Literal["f1", "roc_auc", "pr_auc"] = Field(
        "f1", description="Holdout metric compared between challenger and champion."
    )
    margin: float = Field(
        0.002, ge=0.0, le=0.2, description="Lead over the champion needed to be promoted."
    )


class GateDecision(BaseModel):
    """The outcome of :func:`gate`, recorded on the model version and in its run."""

    model_config = ConfigDict(frozen=True)

    version: str
    promoted: bool
    reason: str
    metric: str
    margin: float
    challenger_score: float
    champion_score: float | None = None
    champion_version: str | None = None
    failed_floors: list[str] = Field(default_factory=list)


class VersionInfo(BaseModel):
    """One registered version, as ``GET /model/versions`` shows it."""

    version: str
    aliases: list[str]
    metrics: dict[str, float]
    created_at: datetime
    run_id: str | None
    gate: dict[str, str]
    description: str = ""


@dataclass(frozen=True)
class TrainingRecord:
    """Everything :func:`log_training` records about one trained model.

    Attributes:
        bundle: the fitted pipeline with its threshold, holdout metrics and metadata (the
            configuration in ``bundle.meta.config`` gives the logged parameters).
        train_frame: the raw training rows (dataset input and drift reference).
        x_holdout: raw holdout features.
        y_holdout: holdout labels (0/1).
        curve: ``(step, train_loss, valid_loss)`` points of the training curve.
        data_path: the source CSV.
        run_name: optional MLflow run name.
        extra_tags: additional run tags.
    """

    bundle: ModelBundle
    train_frame: pd.DataFrame
    x_holdout: pd.DataFrame
    y_holdout: np.ndarray
    curve: Sequence[tuple[int, float, float]]
    data_path: Path
    run_name: str | None = None
    extra_tags: Mapping[str, str] = field(default_factory=dict)


# -------------------------------------------------------------------------------------------------
# configuration
# -------------------------------------------------------------------------------------------------
class TrackingStoreBroken(RegistryError):
    """The MLflow store cannot be opened or migrated; the message says what to do."""


#: Tracking URIs whose store this process has opened (migrated, experiment made) under the lock.
_PREPARED: set[str] = set()
#: Seconds a process waits for another one to finish creating/migrating the store.
STORE_LOCK_TIMEOUT = 600.0


def _is_database(uri: str) -> bool:
    """Whether MLflow opens ``uri`` as a SQL database (and migrates it on first open)."""
    return uri.split(":", 1)[0].split("+", 1)[0] in {"sqlite", "postgresql", "mysql", "mssql"}


def _store_lock(settings: Settings, uri: str) -> FileLock:
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
    else:
        path = settings.var_dir / "mlflow-store"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{path}.lock", timeout=STORE_LOCK_TIMEOUT)


def _open_store(settings: Settings, uri: str) -> MlflowClient:
    """A client whose store this process has opened once under a lock: MLflow creates and
    migrates a new SQL store when it first opens it (even in ``MlflowClient()``), and two
    processes doing that at once corrupt it for good."""
    where = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else uri
    try:
        with _store_lock(settings, uri):
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)  # the tracking store: tables, migrations
            client.search_registered_models(max_results=1)  # the registry store
            _ensure_experiment(settings, client, uri)
            return client
    except TimeoutError as exc:
        raise TrackingStoreBroken(
            f"another process has held the MLflow store lock for more than "
            f"{STORE_LOCK_TIMEOUT:.0f} s ({where}); stop it and retry"
        ) from exc
    except (MlflowException, SQLAlchemyError, CommandError) as exc:
        text = str(exc).strip()
        first_line = text.splitlines()[0][:300] if text else repr(exc)
        raise TrackingStoreBroken(
            f"the MLflow store {where} cannot be opened ({type(exc).__name__}: {first_line}). "
            "If it is a local file that a failed first start left half-migrated, move it aside "
            f"(mv {where} {where}.broken) or run `make clean` to start over; "
            "for a database server, see `mlflow db upgrade`."
        ) from exc


def _ensure_experiment(settings: Settings, client: MlflowClient, uri: str) -> None:
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is None:
        location = settings.artifact_root.as_uri() if uri.startswith("sqlite:") else None
        client.create_experiment(settings.mlflow_experiment, artifact_location=location)


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at ``settings`` and make sure the store and the experiment exist.

    With the embedded default (a ``sqlite:`` URI) the experiment's artifact location is
    ``settings.artifact_root`` — the same directory ``make mlflow-ui`` serves. A SQL store is
    opened (created, migrated) once per process under a file lock, so processes starting together
    never migrate it at the same time.

    Returns:
        A client bound to the configured tracking and registry URI.

    Raises:
        TrackingUnavailable: when an HTTP tracking server does not answer its health check.
        TrackingStoreBroken: when the store cannot be opened or migrated (the message says why
            and what to do).
    """
    uri = settings.tracking_uri
    if uri.startswith("sqlite:"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    _probe(uri, PROBE_TIMEOUT)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    key = f"{uri}#{settings.mlflow_experiment}"
    if key in _PREPARED:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    elif _is_database(uri):
        client = _open_store(settings, uri)
    else:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        _ensure_experiment(settings, client, uri)
    _PREPARED.add(key)
    mlflow.set_experiment(settings.mlflow_experiment)
    return client


# -------------------------------------------------------------------------------------------------
# tracking
# -------------------------------------------------------------------------------------------------
def _git_commit(start: Path) -> str:
    """The checked-out commit, read from ``.git`` files (no subprocess); ``unknown`` outside git."""
    for folder in (start, *start.parents):
        git = folder / ".git"
        if not git.is_dir():
            continue
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        loose = git / ref
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip()
        packed = git / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                if line.endswith(" " + ref):
                    return line.split(" ", 1)[0]
        return "unknown"
    return "unknown"


def _package_version() -> str:
    try:
        return importlib_metadata.version("churnops")
    except importlib_metadata.PackageNotFoundError:
        return "0+unknown"


def _flat(prefix: str, value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for key, item in value.items():
            out.update(_flat(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: str(value)}


def _pip_requirements() -> list[str]:
    """Pinned requirements of the model (given explicitly: MLflow's inference is slow)."""
    names = ("scikit-learn", "skops", "numpy", "pandas", "scipy", "mlflow")
    return [f"{name}=={importlib_metadata.version(name)}" for name in names]


def _log_figures(record: TrainingRecord) -> list[str]:
    pipeline, threshold = record.bundle.pipeline, record.bundle.threshold
    y = np.asarray(record.y_holdout)
    # One OpenMP thread: on a small shared machine HGB's threaded predict is many times slower.
    with thread_limit(1):
        proba = pipeline.predict_proba(record.x_holdout)[:, 1]
        importances = plots.feature_importance(pipeline, record.x_holdout, y)
    labels = (proba >= threshold).astype(int)
    figures = {
        "plots/confusion_matrix.png": plots.confusion_matrix_figure(y, labels),
        "plots/roc_curve.png": plots.roc_figure(y, proba),
        "plots/pr_curve.png": plots.pr_figure(y, proba),
        "plots/calibration.png": plots.calibration_figure(y, proba),
        "plots/feature_importance.png": plots.importance_figure(importances),
    }
    if record.curve:
        steps, train, valid = zip(*record.curve, strict=True)
        figures["plots/training_curve.png"] = plots.curve_figure(steps, train, valid)
    for path, figure in figures.items():
        mlflow.log_figure(figure, path)
    mlflow.log_dict(plots.report_dict(y, labels), "classification_report.json")
    mlflow.log_dict(importances, "feature_importance.json")
    return list(figures)


def run_params(bundle: ModelBundle) -> dict[str, str]:
    """The logged parameters: model family, every hyper-parameter, feature and split setting."""
    config = bundle.meta.config.model_dump(mode="json")
    return {"family": bundle.meta.family, **_flat("", config), "threshold": f"{bundle.threshold}"}


def run_metrics(bundle: ModelBundle) -> dict[str, float]:
    """The logged metrics: all holdout metrics (+ confusion counts) and the CV F1, if computed."""
    metrics = bundle.metrics.numbers()
    (tn, fp), (fn, tp) = bundle.metrics.confusion
    metrics.update({"tn": tn, "fp": fp, "fn": fn, "tp": tp})
    if bundle.meta.cv is not None:
        metrics.update({"cv_f1_mean": bundle.meta.cv.mean, "cv_f1_std": bundle.meta.cv.std})
    return {k: float(v) for k, v in metrics.items()}


def log_training(settings: Settings, record: TrainingRecord) -> str:
    """Record one training run in MLflow (nested under the active run, if any).

    Args:
        settings: where the tracking store is.
        record: the trained model and everything known about its training.

    Returns:
        The MLflow run id.

    Raises:
        mlflow.exceptions.MlflowException: when the pipeline holds a type outside
            :data:`core.persist.TRUSTED_TYPES` (MLflow reloads the skops file with that list).
    """
    bundle = record.bundle
    client = configure(settings)
    tags = {
        "git_commit": _git_commit(Path.cwd()),
        "data_sha256": bundle.meta.data_sha256,
        "package_version": _package_version(),
        "model_family": bundle.meta.family,
        **record.extra_tags,
    }
    mlflow.set_system_metrics_sampling_interval(1)  # type: ignore[no-untyped-call]
    mlflow.set_system_metrics_samples_before_logging(1)  # type: ignore[no-untyped-call]
    nested = mlflow.active_run() is not None
    with (
        _quiet_mlflow(),
        mlflow.start_run(
            run_name=record.run_name, nested=nested, tags=tags, log_system_metrics=True
        ) as run,
    ):
        run_id = str(run.info.run_id)
        mlflow.log_params(run_params(bundle))
        now = _now()
        step_metrics = [
            Metric(name, float(value), now, int(step))
            for step, train_loss, valid_loss in record.curve
            for name, value in (("train_loss", train_loss), ("valid_loss", valid_loss))
        ]
        final = [Metric(k, v, now, 0) for k, v in run_metrics(bundle).items()]
        client.log_batch(run_id, metrics=step_metrics + final, synchronous=True)
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways": a file
            warnings.simplefilter("ignore", UserWarning)
            dataset = from_pandas(
                record.train_frame,
                source=str(record.data_path.resolve()),
                name=record.data_path.name,
                targets="churn" if "churn" in record.train_frame.columns else None,
                digest=bundle.meta.data_sha256[:16] or None,
            )
        mlflow.log_input(
            dataset,
            context="training",
            tags={"rows": str(len(record.train_frame)), "sha256": bundle.meta.data_sha256},
        )
        _log_figures(record)
        reference = build_reference(record.train_frame, data_sha256=bundle.meta.data_sha256)
        mlflow.log_text(reference.to_json(), "reference.json")
        mlflow.log_dict(bundle_document(bundle), "bundle.json")
        example = record.x_holdout.head(5)
        with thread_limit(1):
            signature = infer_signature(example, bundle.pipeline.predict_proba(example))
            mlflow.set_tag(MODEL_URI_TAG, _log_model(bundle, signature, example))
    return run_id


def _log_model(bundle: ModelBundle, signature: Any, example: pd.DataFrame) -> str:
    """The model as an MLflow sklearn model: skops, probabilities from pyfunc, explicit pins."""
    info = mlflow.sklearn.log_model(
        bundle.pipeline,
        name=MODEL_ARTIFACT,
        signature=signature,
        input_example=example,
        serialization_format="skops",
        skops_trusted_types=list(TRUSTED_TYPES),
        pyfunc_predict_fn="predict_proba",
        pip_requirements=_pip_requirements(),
        metadata={"threshold": bundle.threshold},
    )
    return str(info.model_uri)


@contextmanager
def search_run(settings: Settings, run_name: str, params: Mapping[str, Any]) -> Iterator[str]:
    """A parent run for a hyper-parameter search: trials and the final training nest under it.

    Yields:
        The parent run id (the run is active inside the ``with`` block).
    """
    configure(settings)
    tags = {"git_commit": _git_commit(Path.cwd()), "package_version": _package_version()}
    with mlflow.start_run(run_name=run_name, tags={**tags, "kind": "search"}) as run:
        mlflow.log_params({k: str(v) for k, v in params.items()})
        yield str(run.info.run_id)


def log_trial(
    settings: Settings,
    number: int,
    params: Mapping[str, Any],
    scores: Sequence[float],
    best_so_far: float,
) -> str:
    """Record one search trial as a nested run of the active search run.

    Args:
        settings: where the tracking store is.
        number: trial number (0-based), also the step of the parent's progress curve.
        params: the sampled hyper-parameters.
        scores: cross-validated F1 per fold.
        best_so_far: best mean F1 after this trial (logged on the parent as a step metric).

    Returns:
        The trial's run id.
    """
    client = configure(settings)
    parent = mlflow.active_run()
    if parent is None:
        raise RegistryError("log_trial needs an active search run")
    with mlflow.start_run(
        run_name=f"trial-{number:02d}", nested=True, tags={"kind": "trial"}
    ) as run:
        run_id = str(run.info.run_id)
        now = _now()
        metrics = [Metric("cv_f1_fold", float(v), now, k) for k, v in enumerate(scores, 1)]
        metrics += [
            Metric("cv_f1_mean", float(np.mean(scores)), now, 0),
            Metric("cv_f1_std", float(np.std(scores)), now, 0),
        ]
        client.log_batch(
            run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()]
        )
    client.log_batch(
        parent.info.run_id,
        metrics=[
            Metric("trial_cv_f1", float(np.mean(scores)), now, number),
            Metric("best_cv_f1", best_so_far, now, number),
        ],
    )
    return run_id


def tag_active_run(tags: Mapping[str, Any]) -> None:
    """Set tags on the active run (e.g. the search's best trial and the gate outcome)."""
    mlflow.set_tags({k: str(v) for k, v in tags.items()})


# -------------------------------------------------------------------------------------------------
# registry
# -------------------------------------------------------------------------------------------------
def register(settings: Settings, run_id: str) -> str:
    """Register the run's model as a new version of ``churn-model`` with alias ``challenger``.

    Returns:
        The new version number (as a string, MLflow's spelling).
    """
    client = configure(settings)
    run = client.get_run(run_id)
    tags = {
        "run_id": run_id,
        "model_family": run.data.tags.get("model_family", ""),
        "data_sha256": run.data.tags.get("data_sha256", ""),
    }
    with _quiet_mlflow():
        uri = run.data.tags.get(MODEL_URI_TAG, f"runs:/{run_id}/{MODEL_ARTIFACT}")
        version = mlflow.register_model(uri, settings.model_name, tags=tags)
    client.set_registered_model_alias(settings.model_name, CHALLENGER, version.version)
    return str(version.version)


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's chatty INFO logs (registration banners) for the duration."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _download_version(client: MlflowClient, name: str, version: ModelVersion, dst: Path) -> Path:
    """Download a version's model (``dst/model``), ``bundle.json`` and ``reference.json``."""
    dst.mkdir(parents=True, exist_ok=True)
    mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/{version.version}",
        dst_path=str(dst / MODEL_ARTIFACT),
    )
    run_id = str(version.run_id)
    for doc in ("bundle.json", "reference.json"):
        try:
            client.download_artifacts(run_id, doc, str(dst))
        except (MlflowException, OSError) as exc:  # runs logged by hand may lack one
            LOGGER.warning("version %s: no %s (%s)", version.version, doc, exc)
    return dst


def _load_downloaded(folder: Path) -> ModelBundle:
    """A downloaded version as a bundle (``model.skops`` loaded with our own allow-list)."""
    model_file = folder / MODEL_ARTIFACT / MODEL_FILE
    if model_file.is_file():
        shutil.move(str(model_file), folder / MODEL_FILE)
    return load_bundle(folder)


def _score(bundle: ModelBundle, holdout: tuple[pd.DataFrame, np.ndarray]) -> Metrics:
    x, y = holdout
    with thread_limit(1):
        proba = bundle.pipeline.predict_proba(x)[:, 1]
    return evaluate(np.asarray(y), proba, bundle.threshold)


def _record_decision(client: MlflowClient, name: str, decision: GateDecision) -> None:
    tags = {
        "gate.decision": "promoted" if decision.promoted else "rejected",
        "gate.reason": decision.reason,
        "gate.metric": decision.metric,
        "gate.margin": f"{decision.margin:g}",
        "gate.challenger_score": f"{decision.challenger_score:.6f}",
        "gate.champion_score": (
            "" if decision.champion_score is None else f"{decision.champion_score:.6f}"
        ),
        "gate.champion_version": decision.champion_version or "",
        "gate.at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, decision.version, key, value)
    verdict = "PROMOTED to champion" if decision.promoted else "kept as challenger"
    client.update_model_version(name, decision.version, description=f"{verdict}: {decision.reason}")
    run_id = client.get_model_version(name, decision.version).run_id
    if run_id:
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        gate_metrics = [Metric("gate_challenger_score", decision.challenger_score, _now(), 0)]
        if decision.champion_score is not None:
            gate_metrics.append(Metric("gate_champion_score", decision.champion_score, _now(), 0))
        client.log_batch(run_id, metrics=gate_metrics, synchronous=True)


def _now() -> int:
    return int(time.time() * 1000)


def _history(client: MlflowClient, name: str) -> list[str]:
    raw = client.get_registered_model(name).tags.get(HISTORY_TAG, "")
    return [v for v in raw.split(",") if v]


def _set_champion(client: MlflowClient, name: str, version: str, history: list[str]) -> None:
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history[-50:]))


def gate(
    settings: Settings,
    version: str,
    holdout: tuple[pd.DataFrame, np.ndarray],
    policy: GatePolicy | None = None,
) -> GateDecision:
    """Promote ``version`` to champion only if it passes the floors and beats the champion.

    Both models are loaded from the registry and scored on the same ``holdout``, each at its own
    decision threshold. The decision, both scores and the reason are recorded as tags and
    description of the version and as tags/metrics of its run.

    Args:
        settings: where the registry is.
        version: the challenger version.
        holdout: raw holdout features and 0/1 labels.
        policy: metric and margin (default: :class:`GatePolicy` from the environment).

    Returns:
        The :class:`GateDecision`.
    """
    policy = policy or GatePolicy()
    client = configure(settings)
    name = settings.model_name
    with tempfile.TemporaryDirectory(prefix="churnops-gate-") as tmp:
        challenger = client.get_model_version(name, version)
        bundle = _load_downloaded(_download_version(client, name, challenger, Path(tmp) / "c"))
        metrics = _score(bundle, holdout)
        score = float(getattr(metrics, policy.metric))
        failed = QUALITY_THRESHOLDS.failures(metrics)
        current = _version_by_alias(client, name, CHAMPION)
        champion_score: float | None = None
        if current is not None and str(current.version) != str(version):
            c_bundle = _load_downloaded(
                _download_version(client, name, current, Path(tmp) / "champion")
            )
            c_metrics = _score(c_bundle, holdout)
            champion_score = float(getattr(c_metrics, policy.metric))
    m = policy.metric
    if failed:
        promoted, reason = False, f"below the quality floors: {'; '.join(failed)}"
    elif champion_score is None:
        promoted, reason = (
            True,
            f"passes the quality floors and there is no champion ({m}={score:.4f})",
        )
    elif score >= champion_score + policy.margin:
        promoted = True
        reason = (
            f"{m} {score:.4f} beats champion v{current.version if current else '?'} "
            f"{champion_score:.4f} by >= {policy.margin:g}"
        )
    else:
        promoted = False
        reason = (
            f"{m} {score:.4f} does not beat champion v{current.version if current else '?'} "
            f"{champion_score:.4f} by {policy.margin:g}"
        )
    decision = GateDecision(
        version=str(version),
        promoted=promoted,
        reason=reason,
        metric=m,
        margin=policy.margin,
        challenger_score=score,
        champion_score=champion_score,
        champion_version=str(current.version) if current is not None else None,
        failed_floors=list(failed),
    )
    if promoted:
        _push_history(client, name, str(version), decision.champion_version)
    _record_decision(client, name, decision)
    return decision


def _record_event(
    client: MlflowClient, name: str, version: str, kind: str, tags: Mapping[str, str], text: str
) -> None:
    """Record a manual registry event (``promotion.*`` / ``rollback.*``) on a version and its run.

    The gate's own ``gate.*`` record is left as it was: the history shows both.
    """
    stamped = {f"{kind}.{k}": v for k, v in tags.items()}
    stamped[f"{kind}.at"] = datetime.now(UTC).isoformat(timespec="seconds")
    for key, value in stamped.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=text)
    run_id = client.get_model_version(name, version).run_id
    if run_id:
        for key, value in stamped.items():
            client.set_tag(run_id, key, value)


def _push_history(client: MlflowClient, name: str, version: str, current: str | None) -> None:
    history = [v for v in _history(client, name) if v != version]
    if current is not None and current != version and (not history or history[-1] != current):
        history.append(current)
    _set_champion(client, name, version, history + [version])


def promote(settings: Settings, version: str, reason: str) -> GateDecision:
    """Force ``version`` to champion without the gate, recorded on the version and its run.

    Raises:
        RegistryError: when the version does not exist.
    """
    client = configure(settings)
    name = settings.model_name
    try:
        target = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc
    current = _version_by_alias(client, name, CHAMPION)
    previous = str(current.version) if current is not None else None
    _push_history(client, name, str(target.version), previous)
    text = f"PROMOTED to champion by hand (was v{previous}): {reason}"
    _record_event(
        client,
        name,
        str(target.version),
        "promotion",
        {"forced": "true", "reason": reason, "previous_champion": previous or ""},
        text,
    )
    score = client.get_run(str(target.run_id)).data.metrics.get("f1", 0.0) if target.run_id else 0.0
    return GateDecision(
        version=str(target.version),
        promoted=True,
        reason=f"forced promotion: {reason}",
        metric="manual",
        margin=0.0,
        challenger_score=float(score),
        champion_version=previous,
    )


def rollback(settings: Settings, reason: str = "rollback") -> GateDecision:
    """Move ``champion`` back to the previous champion, recorded on both versions and runs.

    Raises:
        RegistryError: when there is no previous champion.
    """
    client = configure(settings)
    name = settings.model_name
    history = _history(client, name)
    current = _version_by_alias(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back")
    demoted = str(current.version)
    if history and history[-1] == demoted:
        history = history[:-1]
    if not history:
        raise RegistryError(f"{name}: no previous champion to roll back to")
    previous = history[-1]
    _set_champion(client, name, previous, history)
    _record_event(
        client,
        name,
        demoted,
        "rollback",
        {"demoted": "true", "reason": reason, "restored": previous},
        f"ROLLED BACK (champion returned to v{previous}): {reason}",
    )
    _record_event(
        client,
        name,
        previous,
        "rollback",
        {"restored": "true", "reason": reason, "demoted": demoted},
        f"RESTORED as champion by rollback from v{demoted}: {reason}",
    )
    score = client.get_run(str(client.get_model_version(name, previous).run_id)).data.metrics
    return GateDecision(
        version=previous,
        promoted=True,
        reason=f"rollback from v{demoted}: {reason}",
        metric="manual",
        margin=0.0,
        challenger_score=float(score.get("f1", 0.0)),
        champion_version=demoted,
    )


def _events(tags: Mapping[str, str]) -> dict[str, str]:
    """The gate decision and manual events of a version (``gate.`` prefix dropped)."""
    prefixes = ("gate.", "promotion.", "rollback.")
    return {
        (k[5:] if k.startswith("gate.") else k): v
        for k, v in tags.items()
        if k.startswith(prefixes)
    }


def list_versions(settings: Settings) -> list[VersionInfo]:
    """Every version of ``churn-model``, newest first, with aliases, metrics and gate tags."""
    client = configure(settings)
    name = settings.model_name
    try:
        aliases = client.get_registered_model(name).aliases or {}
    except MlflowException:
        return []  # nothing registered yet
    out: list[VersionInfo] = []
    for version in client.search_model_versions(f"name='{name}'", order_by=["version_number DESC"]):
        metrics: dict[str, float] = {}
        if version.run_id:
            try:
                data = client.get_run(version.run_id).data.metrics
                metrics = {k: float(v) for k, v in data.items() if not k.startswith("system/")}
            except MlflowException:
                metrics = {}
        out.append(
            VersionInfo(
                version=str(version.version),
                aliases=sorted(a for a, v in aliases.items() if str(v) == str(version.version)),
                metrics=metrics,
                created_at=datetime.fromtimestamp(version.creation_timestamp / 1000, UTC),
                run_id=version.run_id,
                gate=_events(version.tags),
                description=version.description or "",
            )
        )
    return out


# -------------------------------------------------------------------------------------------------
# loading the champion (with the local copy for degraded serving)
# -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedModel:
    """The champion as served: bundle, version, metadata and whether it came from the local copy."""

    bundle: ModelBundle
    version: str
    metadata: dict[str, Any]
    degraded: bool = False
    reason: str = ""


def _probe(uri: str, timeout: float) -> None:
    """Fail fast when an HTTP tracking server is down (MLflow itself retries for minutes)."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        # The scheme is checked above (http/https only), so B310's file:// concern does not apply.
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # nosec B310
            answer.read()
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingUnavailable(f"tracking server {uri} unreachable: {exc}") from exc


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _refresh_cache(
    client: MlflowClient, settings: Settings, version: ModelVersion, metadata: dict[str, Any]
) -> None:
    """Copy ``version`` into the cache and point ``champion.json`` at it.

    Each version gets its own folder, renamed into place once complete, and the pointer file is
    replaced atomically, so API workers refreshing at the same time never see a half-written copy.
    """
    cache = settings.model_cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    folder = f"v{version.version}-{str(version.run_id)[:12]}"
    final = cache / folder
    if not (final / MODEL_FILE).is_file():
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder}-", dir=cache))
        try:
            _load_downloaded(_download_version(client, settings.model_name, version, tmp))
            shutil.rmtree(tmp / MODEL_ARTIFACT)  # the MLflow copy; model.skops is kept
            try:
                tmp.rename(final)
            except OSError:  # another worker finished the same copy first
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    info = {
        "version": str(version.version),
        "run_id": version.run_id,
        "folder": folder,
        "cached_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tracking_uri": settings.tracking_uri,
        "metadata": metadata,
    }
    _write_json_atomic(cache / CACHE_INFO, info)
    for old in cache.glob("v*-*"):
        if old.is_dir() and old.name != folder:
            shutil.rmtree(old, ignore_errors=True)


def _load_cache(settings: Settings) -> LoadedModel:
    cache = settings.model_cache_dir
    info = _read_json(cache / CACHE_INFO)
    folder = cache / str(info["folder"])
    metadata = dict(info.get("metadata") or {})
    reference = folder / "reference.json"
    metadata["reference_path"] = str(reference) if reference.is_file() else None
    metadata["cached_at"] = info.get("cached_at")
    metadata["cache_dir"] = str(folder)
    return LoadedModel(bundle=load_bundle(folder), version=str(info["version"]), metadata=metadata)


def _champion_metadata(
    client: MlflowClient, settings: Settings, version: ModelVersion
) -> dict[str, Any]:
    run = client.get_run(str(version.run_id))
    return {
        "name": settings.model_name,
        "version": str(version.version),
        "run_id": version.run_id,
        "aliases": sorted(
            a
            for a, v in (client.get_registered_model(settings.model_name).aliases or {}).items()
            if str(v) == str(version.version)
        ),
        "family": run.data.tags.get("model_family"),
        "data_sha256": run.data.tags.get("data_sha256"),
        "git_commit": run.data.tags.get("git_commit"),
        "registered_at": datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).isoformat(),
        "gate": _events(version.tags),
    }


def load_champion(settings: Settings, *, timeout: float = 3.0) -> LoadedModel:
    """Load the champion from the registry, refreshing the local copy; fall back to that copy.

    Args:
        settings: where the registry and the local copy (``settings.model_cache_dir``) are.
        timeout: seconds to wait for an HTTP tracking server before using the local copy.

    Returns:
        The :class:`LoadedModel`; ``degraded`` is true (with the reason) when it comes from the
        local copy because the registry could not provide the champion.

    Raises:
        ChampionUnavailable: when neither the registry nor a local copy has a champion.
    """
    cache_info = settings.model_cache_dir / CACHE_INFO
    try:
        _probe(settings.tracking_uri, timeout)
        client = configure(settings)
        version = _version_by_alias(client, settings.model_name, CHAMPION)
        if version is None:
            raise RegistryError(f"{settings.model_name} has no {CHAMPION} alias yet")
        cached = _read_json(cache_info) if cache_info.is_file() else {}
        if cached.get("version") != str(version.version) or cached.get("run_id") != version.run_id:
            metadata = _champion_metadata(client, settings, version)
            _refresh_cache(client, settings, version, metadata)
        loaded = _load_cache(settings)
        return LoadedModel(loaded.bundle, loaded.version, {**loaded.metadata, "source": "registry"})
    # Whatever failed on the registry side (HTTP, SQL, missing alias, bad artifact), serving can
    # still start from the last good local copy; the reason is reported, never swallowed.
    except Exception as exc:  # pylint: disable=broad-exception-caught
        reason = f"{type(exc).__name__}: {exc}"
        if not cache_info.is_file():
            raise ChampionUnavailable(f"no champion: {reason}; no local copy") from exc
        LOGGER.warning("registry unavailable (%s); serving the local copy", reason)
        loaded = _load_cache(settings)
        why = f"registry unavailable, serving local copy of v{loaded.version}: {reason}"
        return LoadedModel(
            loaded.bundle, loaded.version, {**loaded.metadata, "source": "cache"}, True, why[:500]
        )


# -------------------------------------------------------------------------------------------------
# run contents for the API (curve and figures): the API must not import mlflow
# -------------------------------------------------------------------------------------------------
PLOT_TITLES: dict[str, str] = {
    "confusion_matrix": "Confusion matrix (holdout)",
    "roc_curve": "ROC curve (holdout)",
    "pr_curve": "Precision-recall curve (holdout)",
    "calibration": "Calibration (holdout)",
    "feature_importance": "Permutation feature importance",
    "training_curve": "Training curve",
}


def _run_of(client: MlflowClient, name: str, version: str) -> str:
    try:
        run_id = client.get_model_version(name, str(version)).run_id
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc
    if not run_id:
        raise RegistryError(f"{name} v{version} has no run")
    return str(run_id)


def training_curve(settings: Settings, version: str) -> list[dict[str, float]]:
    """The version's training curve: ``[{"step", "train_loss", "valid_loss"}]`` by step.

    Raises:
        RegistryError: for an unknown version.
    """
    client = configure(settings)
    run_id = _run_of(client, settings.model_name, version)
    points: dict[int, dict[str, float]] = {}
    for key in ("train_loss", "valid_loss"):
        for metric in client.get_metric_history(run_id, key):
            points.setdefault(int(metric.step), {"step": float(metric.step)})[key] = metric.value
    return [points[step] for step in sorted(points)]


def list_plots(settings: Settings, version: str) -> list[dict[str, str]]:
    """The version's PNG figures: ``[{"name", "title"}]``.

    Raises:
        RegistryError: for an unknown version.
    """
    client = configure(settings)
    run_id = _run_of(client, settings.model_name, version)
    found = [Path(a.path).stem for a in client.list_artifacts(run_id, "plots")]
    return [{"name": n, "title": PLOT_TITLES.get(n, n)} for n in sorted(found)]


def read_plot(settings: Settings, version: str, name: str) -> bytes:
    """The PNG bytes of one figure of the version.

    Raises:
        RegistryError: for an unknown version or figure.
    """
    if name not in PLOT_TITLES:
        raise RegistryError(f"unknown figure {name!r}")
    client = configure(settings)
    run_id = _run_of(client, settings.model_name, version)
    with tempfile.TemporaryDirectory(prefix="churnops-plot-") as tmp:
        try:
            path = client.download_artifacts(run_id, f"plots/{name}.png", tmp)
        except (MlflowException, OSError) as exc:
            raise RegistryError(f"v{version} has no figure {name!r}") from exc
        return Path(path).read_bytes()
