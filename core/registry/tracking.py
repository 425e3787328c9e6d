"""Tracking: one MLflow run per training (or search trial), and its registration as a version.

* :func:`log_training` records one training run: parameters, holdout metrics, the training curve as
  step metrics, the dataset as an MLflow input, provenance tags, figures, the classification report,
  ``bundle.json``, the drift reference ``reference.json``, the training rows' fingerprints
  ``fingerprints.npy`` and the model (skops, signature, input example). System metrics are
  sampled while it runs.
* :func:`register` makes the run's model a version of ``churn-model`` with alias ``challenger``.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Metric, Param
from mlflow.models import infer_signature

from core import fingerprints
from core.persist import TRUSTED_TYPES, ModelBundle, bundle_document
from core.reference import build_reference
from core.registry.client import (
    CHALLENGER,
    MODEL_ARTIFACT,
    MODEL_URI_TAG,
    RegistryError,
    _now,
    _quiet_mlflow,
    configure,
)
from core.schema import predicted_churn
from core.settings import Settings
from core.train import thread_limit


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
    # matplotlib only when a run is logged: the API imports this module, and every API start
    # (each stack task, each worker) would otherwise pay ~1 s of CPU for it
    from core import plots  # pylint: disable=import-outside-toplevel

    pipeline, threshold = record.bundle.pipeline, record.bundle.threshold
    y = np.asarray(record.y_holdout)
    # One OpenMP thread: on a small shared machine HGB's threaded predict is many times slower.
    with thread_limit(1):
        proba = pipeline.predict_proba(record.x_holdout)[:, 1]
        importances = plots.feature_importance(pipeline, record.x_holdout, y)
    labels = predicted_churn(proba, threshold).astype(int)
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
        _log_fingerprints(bundle)
        example = record.x_holdout.head(5)
        with thread_limit(1):
            signature = infer_signature(example, bundle.pipeline.predict_proba(example))
            mlflow.set_tag(MODEL_URI_TAG, _log_model(bundle, signature, example))
    return run_id


def _log_fingerprints(bundle: ModelBundle) -> None:
    """``fingerprints.npy``: the rows the model was trained on (the gate leaves them out)."""
    if not bundle.meta.fingerprint_format:
        return
    with tempfile.TemporaryDirectory(prefix="churnops-rows-") as tmp:
        mlflow.log_artifact(
            str(fingerprints.save(bundle.fingerprints, Path(tmp) / fingerprints.FILE))
        )


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
    # mlflow.register_model prints its banners with print(file=sys.stderr), not through logging
    # ("Registered model ... already exists. Creating a new version ..." on every retrain)
    with _quiet_mlflow(), contextlib.redirect_stderr(io.StringIO()):
        uri = run.data.tags.get(MODEL_URI_TAG, f"runs:/{run_id}/{MODEL_ARTIFACT}")
        version = mlflow.register_model(uri, settings.model_name, tags=tags)
    client.set_registered_model_alias(settings.model_name, CHALLENGER, version.version)
    return str(version.version)
