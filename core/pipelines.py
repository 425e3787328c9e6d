"""Orchestration: load → split → fit → threshold → evaluate → CV → save → register.

:func:`fit_and_evaluate` is pure (DataFrame in, :class:`TrainedModel` out, no I/O);
:func:`train_and_register` adds the I/O around it (reading the CSV, saving the local bundle, and
the registration seam). ``make train``, ``churnops train`` and the API's ``POST /retrain``
all call :func:`train_and_register`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from core.data import (
    DatasetSplit,
    check_trainable,
    file_sha256,
    load_dataset,
    split_dataset,
    to_xy,
)
from core.evaluate import CVResult, Metrics, choose_threshold, cross_validate_f1, evaluate
from core import fingerprints
from core.features import RAW_COLUMNS
from core.persist import BundleMeta, ModelBundle, mark_latest, save_bundle
from core.settings import Settings
from core.train import CurvePoint, TrainConfig, fit_pipeline, thread_limit, training_curve

Progress = Callable[[str, float], None]


def _no_progress(step: str, fraction: float) -> None:
    del step, fraction


@dataclass(frozen=True)
class TrainedModel:
    """A fitted and evaluated candidate, with everything registration needs.

    Attributes:
        bundle: pipeline, validation threshold, holdout metrics and metadata.
        split: the train / valid / test rows it was made from.
        curve: train/validation log-loss along the model's stages.
    """

    bundle: ModelBundle
    split: DatasetSplit
    curve: list[CurvePoint]

    def holdout(self) -> tuple[pd.DataFrame, np.ndarray]:
        """Raw holdout features and 0/1 labels (what the promotion gate scores)."""
        return to_xy(self.split.test)


class Registration(BaseModel):
    """What the model registry answered for a candidate (all ``None`` without a registry)."""

    model_config = ConfigDict(frozen=True)

    run_id: str | None = None
    model_version: str | None = None
    promoted: bool | None = None
    verdict: str | None = None
    reason: str | None = None
    gate_metric: str | None = None
    challenger_score: float | None = None
    champion_score: float | None = None
    champion_version: str | None = None
    compared_rows: int | None = None
    compared_churners: int | None = None
    excluded_rows: int | None = None


class TrainResult(BaseModel):
    """The outcome of :func:`train_and_register`."""

    model_config = ConfigDict(frozen=True)

    run_id: str | None = Field(description="MLflow run id (None without registry).")
    model_version: str | None = Field(description="Registered version (None without registry).")
    promoted: bool | None = Field(description="Whether the gate promoted it (None: no gate ran).")
    f1: float = Field(description="Churn-class F1 on the holdout.")
    roc_auc: float = Field(description="ROC-AUC on the holdout.")
    family: str
    threshold: float
    metrics: Metrics
    cv: CVResult | None
    verdict: str | None = Field(
        None, description="The gate's verdict: promoted, rejected or not_enough_rows."
    )
    reason: str | None = Field(None, description="Why it was (not) promoted.")
    gate_metric: str | None = Field(None, description="The metric the gate compared.")
    challenger_score: float | None = Field(
        None, description="This model's gate metric on the compared rows."
    )
    champion_score: float | None = Field(
        None, description="The champion's gate metric on the same rows (None: no champion)."
    )
    champion_version: str | None = Field(None, description="The champion it was compared with.")
    compared_rows: int | None = Field(
        None, description="Holdout rows neither model was trained on: what the gate compared."
    )
    compared_churners: int | None = Field(None, description="Churners among the compared rows.")
    excluded_rows: int | None = Field(
        None,
        description="Holdout rows left out because the champion (or this model) was "
        "trained on them.",
    )
    bundle_dir: str = Field(description="The local bundle directory.")
    data_sha256: str
    duration_s: float

    def summary(self) -> dict[str, Any]:
        """The one-line JSON object ``make train`` ends with."""
        return {
            "run_id": self.run_id,
            "model_version": self.model_version,
            "f1": round(self.f1, 4),
            "roc_auc": round(self.roc_auc, 4),
            "promoted": self.promoted,
        }


def fit_and_evaluate(
    frame: pd.DataFrame,
    config: TrainConfig,
    data_sha256: str = "",
    on_progress: Progress | None = None,
) -> TrainedModel:
    """Fit on train, choose the threshold on valid, evaluate on the holdout, cross-validate.

    The cross-validated F1 (``config.cv_folds`` folds, skipped when 0) is measured on the
    non-holdout rows only, so the holdout stays unseen until the final evaluation.

    Args:
        frame: the validated table (with ``churn``).
        config: the training configuration.
        data_sha256: digest of the source file, recorded in the bundle.
        on_progress: ``(step, fraction)`` callback.

    Returns:
        The :class:`TrainedModel`.
    """
    with thread_limit(config.n_threads):
        return _fit_and_evaluate(frame, config, data_sha256, on_progress or _no_progress)


def _fit_and_evaluate(
    frame: pd.DataFrame, config: TrainConfig, data_sha256: str, progress: Progress
) -> TrainedModel:
    split = split_dataset(frame, config.split)
    (x_train, y_train), (x_valid, y_valid) = to_xy(split.train), to_xy(split.valid)
    x_test, y_test = to_xy(split.test)
    progress("fit", 0.1)
    pipeline = fit_pipeline(config, x_train, y_train, valid=(x_valid, y_valid))
    progress("threshold", 0.35)
    threshold = choose_threshold(y_valid, pipeline.predict_proba(x_valid)[:, 1])
    progress("evaluate", 0.4)
    metrics = evaluate(y_test, pipeline.predict_proba(x_test)[:, 1], threshold)
    curve = training_curve(pipeline, x_train, y_train, x_valid, y_valid)
    cv = None
    if config.cv_folds:
        progress("cross-validate", 0.45)
        x_dev, y_dev = to_xy(pd.concat([split.train, split.valid]))
        cv = cross_validate_f1(
            config,
            x_dev,
            y_dev,
            folds=config.cv_folds,
            on_fold=lambda k, n: progress(f"cross-validate fold {k}/{n}", 0.45 + 0.45 * k / n),
        )
    meta = BundleMeta(
        family=config.family,
        config=config,
        data_sha256=data_sha256,
        n_train=len(split.train),
        n_valid=len(split.valid),
        n_test=len(split.test),
        feature_names_in=list(RAW_COLUMNS),
        feature_names_out=[str(n) for n in pipeline.named_steps["features"].feature_names_out_],
        cv=cv,
        fingerprint_format=fingerprints.FORMAT,
    )
    bundle = ModelBundle(
        pipeline=pipeline,
        threshold=threshold,
        metrics=metrics,
        meta=meta,
        # the rows it learned from: fitted on (train) or tuned on (valid: threshold)
        fingerprints=fingerprints.fingerprint_set(pd.concat([split.train, split.valid])),
    )
    return TrainedModel(bundle=bundle, split=split, curve=curve)


def new_bundle_dir(settings: Settings, family: str) -> Path:
    """A fresh, time-stamped directory name under ``var/models`` for one training."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return settings.var_dir / "models" / f"{stamp}-{family}"


def register_candidate(settings: Settings, trained: TrainedModel, data_path: Path) -> Registration:
    """Registration seam: log the run, register the version and run the promotion gate.

    The MLflow run (nested under the active run, e.g. a ``make tune`` search), the new
    ``challenger`` version and the gate decision all come from :mod:`core.registry`.

    Args:
        settings: where the registry is.
        trained: the candidate.
        data_path: the CSV it was trained on.

    Returns:
        The :class:`Registration`.
    """
    # Imported here: mlflow is heavy and only registration needs it.
    from core import registry  # pylint: disable=import-outside-toplevel

    record = registry.TrainingRecord(
        bundle=trained.bundle,
        train_frame=trained.split.train,
        x_holdout=trained.holdout()[0],
        y_holdout=trained.holdout()[1],
        curve=trained.curve,
        data_path=data_path,
        run_name=f"train-{trained.bundle.meta.family}",
    )
    run_id = registry.log_training(settings, record)
    version = registry.register(settings, run_id)
    decision = registry.gate(settings, version, trained.holdout())
    rows = decision.rows
    return Registration(
        run_id=run_id,
        model_version=version,
        promoted=decision.promoted,
        verdict=decision.verdict,
        reason=decision.reason,
        gate_metric=decision.metric,
        challenger_score=decision.challenger_score,
        champion_score=decision.champion_score,
        champion_version=decision.champion_version,
        compared_rows=None if rows is None else rows.compared_rows,
        compared_churners=None if rows is None else rows.churners,
        excluded_rows=None if rows is None else rows.excluded_rows,
    )


def train_and_register(
    settings: Settings,
    config: TrainConfig,
    on_progress: Progress | None = None,
    *,
    drop_invalid_rows: bool = False,
) -> TrainResult:
    """Train on ``settings.data_path``, save the local bundle, then register and gate it.

    The whole file is read and checked before anything is fitted.

    Args:
        settings: paths (data, ``var/``) and registry location.
        config: the training configuration.
        on_progress: ``(step, fraction)`` callback, fraction in [0, 1].
        drop_invalid_rows: train on the valid rows of a file with bad rows instead of refusing it.

    Returns:
        The :class:`TrainResult` (``summary()`` is the ``make train`` JSON line).

    Raises:
        core.tables.TableError: when the data file is not a readable table.
        core.schema.SchemaError: when the data file is invalid.
        core.data.NotTrainable: when it has too few rows of a class to train and judge a model.
    """
    progress = on_progress or _no_progress
    started = time.perf_counter()
    progress("load", 0.0)
    data_path = settings.data_path
    frame = load_dataset(data_path, drop_invalid_rows=drop_invalid_rows)
    check_trainable(frame, config.split, config.cv_folds)
    digest = file_sha256(data_path)
    trained = fit_and_evaluate(frame, config, digest, progress)
    progress("save", 0.9)
    bundle_dir = save_bundle(trained.bundle, new_bundle_dir(settings, config.family))
    mark_latest(bundle_dir)
    progress("register", 0.92)
    registration = register_candidate(settings, trained, data_path)
    progress("done", 1.0)
    bundle = trained.bundle
    return TrainResult(
        **registration.model_dump(),  # run, version and the gate's decision, field for field
        f1=bundle.metrics.f1,
        roc_auc=bundle.metrics.roc_auc,
        family=config.family,
        threshold=bundle.threshold,
        metrics=bundle.metrics,
        cv=bundle.meta.cv,
        bundle_dir=str(bundle_dir),
        data_sha256=digest,
        duration_s=round(time.perf_counter() - started, 3),
    )
