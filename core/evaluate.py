"""Metrics for the churn class, the validation-only threshold, cross-validation and quality floors.

:data:`QUALITY_THRESHOLDS` is the single definition of the absolute floors: the promotion gate
(``core.registry``), the model tests and the monitoring alerts all read it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold, train_test_split

from core.train import TrainConfig, fit_pipeline, thread_limit


class Metrics(BaseModel):
    """Scores of probabilities ``p`` against labels ``y`` at a decision threshold (churn = 1)."""

    model_config = ConfigDict(frozen=True)

    f1: float = Field(description="F1 of the churn class at the threshold.")
    precision: float = Field(description="Precision of the churn class at the threshold.")
    recall: float = Field(description="Recall of the churn class at the threshold.")
    roc_auc: float = Field(description="Area under the ROC curve (threshold-free).")
    pr_auc: float = Field(description="Average precision of the churn class (threshold-free).")
    brier: float = Field(description="Mean squared error of the probabilities (lower is better).")
    accuracy: float = Field(description="Share of correct labels at the threshold.")
    threshold: float = Field(description="Probability at or above which a customer is 'churn'.")
    confusion: list[list[int]] = Field(description="[[tn, fp], [fn, tp]] at the threshold.")
    n: int = Field(description="Number of scored rows.")

    def numbers(self) -> dict[str, float]:
        """The scalar metrics only (for logging as MLflow metrics)."""
        return {k: float(v) for k, v in self.model_dump(exclude={"confusion"}).items()}


class CVResult(BaseModel):
    """F1 of the churn class per cross-validation fold (threshold chosen inside each fold)."""

    model_config = ConfigDict(frozen=True)

    scores: list[float]
    mean: float
    std: float


class QualityThresholds(BaseModel):
    """Absolute floors a model must reach on the fixed holdout to be served."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_f1: float = Field(0.92, description="Lowest acceptable churn-class F1.")
    min_roc_auc: float = Field(0.92, description="Lowest acceptable ROC-AUC.")
    max_brier: float = Field(0.06, description="Highest acceptable Brier score.")

    def failures(self, metrics: Metrics) -> list[str]:
        """Human-readable reasons why ``metrics`` misses a floor (empty when it passes)."""
        found = []
        if metrics.f1 < self.min_f1:
            found.append(f"f1 {metrics.f1:.4f} < {self.min_f1}")
        if metrics.roc_auc < self.min_roc_auc:
            found.append(f"roc_auc {metrics.roc_auc:.4f} < {self.min_roc_auc}")
        if metrics.brier > self.max_brier:
            found.append(f"brier {metrics.brier:.4f} > {self.max_brier}")
        return found

    def passes(self, metrics: Metrics) -> bool:
        """Whether ``metrics`` reaches every floor."""
        return not self.failures(metrics)

    def shown_failures(
        self, bounds: Mapping[str, tuple[float | None, float | None, float | None]]
    ) -> list[str]:
        """The floors a model is *shown* to miss, given each figure's confidence interval.

        A floor is missed only when the whole interval lies on its wrong side (upper end below a
        minimum, lower end above a maximum): the test of "meets the floor" at 2.5 % one-sided
        for a 95 % interval. On a small table a good model's figure can land under a floor by
        chance; this way the table's size alone never fails it (the promotion gate's rule).

        Args:
            bounds: ``metric -> (value, low, high)`` for ``f1``, ``roc_auc`` and ``brier``; an
                undefined end (None) shows nothing.

        Returns:
            Human-readable reasons, empty when no floor is shown to be missed.
        """
        found = []
        for name, floor, below in (
            ("f1", self.min_f1, True),
            ("roc_auc", self.min_roc_auc, True),
            ("brier", self.max_brier, False),
        ):
            value, low, high = bounds[name]
            if value is None or low is None or high is None:
                continue
            shown = f"{name} {value:.4f} (interval {low:.4f}-{high:.4f})"
            if below and high < floor:
                found.append(f"{shown} < {floor}")
            elif not below and low > floor:
                found.append(f"{shown} > {floor}")
        return found


QUALITY_THRESHOLDS = QualityThresholds()


def choose_threshold(y_valid: np.ndarray, p_valid: np.ndarray) -> float:
    """The probability threshold that maximises churn-class F1 on validation data.

    Only validation predictions may be passed here: choosing it on the holdout would leak.

    Args:
        y_valid: validation labels (0/1).
        p_valid: predicted churn probabilities of the same rows.

    Returns:
        The threshold (the lowest one among equally good ones); 0.5 without any positive.
    """
    y_valid = np.asarray(y_valid)
    if not y_valid.any():
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y_valid, np.asarray(p_valid))
    precision, recall = precision[:-1], recall[:-1]
    denominator = np.where(precision + recall > 0, precision + recall, 1.0)
    f1 = 2 * precision * recall / denominator
    return float(thresholds[int(np.argmax(f1))])


def evaluate(y: np.ndarray, p: np.ndarray, threshold: float) -> Metrics:
    """Score churn probabilities against true labels.

    Args:
        y: true labels (0/1), both classes present.
        p: predicted churn probabilities.
        threshold: probability at or above which the label is churn.

    Returns:
        The :class:`Metrics`.

    Raises:
        ValueError: when ``y`` holds a single class (ROC-AUC is undefined).
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=np.float64)
    if len(np.unique(y)) < 2:
        raise ValueError("evaluation needs both churners and non-churners in the labels")
    labels = (p >= threshold).astype(int)
    return Metrics(
        f1=float(f1_score(y, labels, zero_division=0)),
        precision=float(precision_score(y, labels, zero_division=0)),
        recall=float(recall_score(y, labels, zero_division=0)),
        roc_auc=float(roc_auc_score(y, p)),
        pr_auc=float(average_precision_score(y, p)),
        brier=float(brier_score_loss(y, p)),
        accuracy=float(accuracy_score(y, labels)),
        threshold=float(threshold),
        confusion=confusion_matrix(y, labels, labels=[0, 1]).tolist(),
        n=int(len(y)),
    )


def cross_validate_f1(
    config: TrainConfig,
    x: pd.DataFrame,
    y: np.ndarray,
    folds: int = 5,
    on_fold: Callable[[int, int], None] | None = None,
) -> CVResult:
    """Stratified k-fold churn-class F1, each fold run exactly like a real training.

    In every fold a validation part is carved from the fold's training rows (same share and seed
    as ``config.split``), the pipeline is fitted on the rest, the threshold is chosen on that
    validation part, and F1 is measured on the held-out fold.

    Args:
        config: the training configuration.
        x: raw features (19 canonical columns).
        y: 0/1 labels.
        folds: number of folds (>= 2).
        on_fold: called with ``(fold_done, folds)`` after each fold (progress).

    Returns:
        The per-fold scores, their mean and standard deviation.
    """
    y = np.asarray(y)
    with thread_limit(config.n_threads):
        return _cross_validate(config, x, y, folds, on_fold)


def _cross_validate(
    config: TrainConfig,
    x: pd.DataFrame,
    y: np.ndarray,
    folds: int,
    on_fold: Callable[[int, int], None] | None,
) -> CVResult:
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.split.seed)
    scores: list[float] = []
    for k, (rest, held) in enumerate(splitter.split(np.zeros(len(y)), y), 1):
        fit_rows, valid_rows = train_test_split(
            rest,
            test_size=config.split.valid_size,
            stratify=y[rest],
            random_state=config.split.seed,
        )
        pipeline = fit_pipeline(config, x.iloc[fit_rows], y[fit_rows])
        threshold = choose_threshold(
            y[valid_rows], pipeline.predict_proba(x.iloc[valid_rows])[:, 1]
        )
        labels = pipeline.predict_proba(x.iloc[held])[:, 1] >= threshold
        scores.append(float(f1_score(y[held], labels, zero_division=0)))
        if on_fold is not None:
            on_fold(k, folds)
    return CVResult(scores=scores, mean=float(np.mean(scores)), std=float(np.std(scores)))
