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
from statsmodels.stats.proportion import proportion_confint

from core.schema import predicted_churn
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
    labels = predicted_churn(p, threshold).astype(int)
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
    as ``config.split``), the pipeline is fitted on the rest (early stopping on that validation
    part), the threshold is chosen on that validation part, and F1 is measured on the held-out
    fold.

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
        x_valid, y_valid = x.iloc[valid_rows], y[valid_rows]
        pipeline = fit_pipeline(config, x.iloc[fit_rows], y[fit_rows], valid=(x_valid, y_valid))
        threshold = choose_threshold(y_valid, pipeline.predict_proba(x_valid)[:, 1])
        labels = predicted_churn(pipeline.predict_proba(x.iloc[held])[:, 1], threshold)
        scores.append(float(f1_score(y[held], labels, zero_division=0)))
        if on_fold is not None:
            on_fold(k, folds)
    return CVResult(scores=scores, mean=float(np.mean(scores)), std=float(np.std(scores)))


class Interval(BaseModel):
    """A point value and its interval (``None`` where the metric is undefined, e.g. 0/0), with
    the rows it is a proportion of (``n``: the denominator; ``None`` for a figure that is not a
    proportion of rows, e.g. ROC-AUC)."""

    model_config = ConfigDict(frozen=True)

    value: float | None
    low: float | None
    high: float | None
    n: int | None = None

    @property
    def width(self) -> float | None:
        """``high - low``; None when the interval is undefined."""
        return None if self.low is None or self.high is None else self.high - self.low


class PerformanceEstimate(BaseModel):
    """Churn-class performance of a window estimated from its probabilities alone (CBPE)."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(description="Predictions in the window.")
    threshold: float | None = Field(
        description="Probability at or above which a label is churn (null when the rows were "
        "labelled at different thresholds, each at its own)."
    )
    predicted_churners: int = Field(description="Predictions at or above the threshold.")
    expected_churners: float = Field(description="Sum of the probabilities.")
    confidence: float = Field(description="Coverage of the intervals (e.g. 0.95).")
    precision: Interval
    recall: Interval
    f1: Interval
    accuracy: Interval


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    num_, den_ = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num_, den_).shape, np.nan)
    result: np.ndarray = np.divide(num_, den_, out=out, where=den_ > 0)
    return result


def _scores(
    tp: np.ndarray | float, fp: np.ndarray | float, fn: np.ndarray | float, n: int
) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and accuracy of (expected or simulated) confusion counts."""
    tp, fp, fn = np.asarray(tp, np.float64), np.asarray(fp, np.float64), np.asarray(fn, np.float64)
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(n - fp - fn, n),
    }


def _realized(p: np.ndarray, churn: np.ndarray, draws: int, seed: int) -> dict[str, np.ndarray]:
    """The metrics of ``draws`` label sets drawn as independent Bernoulli(``p``) (seeded)."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"precision": [], "recall": [], "f1": [], "accuracy": []}
    chunk = max(1, 2_000_000 // p.size)  # bounded memory: at most ~2 M simulated labels at once
    for start in range(0, draws, chunk):
        labels = rng.random((min(chunk, draws - start), p.size)) < p
        tp = (labels & churn).sum(axis=1)
        fn = (labels & ~churn).sum(axis=1)
        for name, values in _scores(tp, churn.sum() - tp, fn, p.size).items():
            parts[name].append(values)
    return {name: np.concatenate(values) for name, values in parts.items()}


def wilson_interval(successes: int, trials: int, confidence: float) -> Interval:
    """``successes / trials`` with its Wilson score interval (``n = trials``); value and bounds
    ``None`` when ``trials`` is 0.

    Wilson, JASA 1927; recommended for small samples by Brown, Cai & DasGupta, *Statistical
    Science* 2001 (``statsmodels.stats.proportion.proportion_confint(method="wilson")``). The
    interval always holds the point value and is never zero-width: all of 56 rows right gives
    0.936-1, one right answer 0.21-1.
    """
    if trials == 0:
        return Interval(value=None, low=None, high=None, n=0)
    low, high = proportion_confint(successes, trials, alpha=1.0 - confidence, method="wilson")
    return Interval(value=successes / trials, low=float(low), high=float(high), n=trials)


def f1_interval(tp: int, fp: int, fn: int, confidence: float) -> Interval:
    """F1 = 2J / (1 + J) with its interval: J = TP / (TP + FP + FN) (the Jaccard index) is a
    proportion, so it gets :func:`wilson_interval`, mapped through the increasing 2J / (1 + J);
    ``n = TP + FP + FN``."""
    jaccard = wilson_interval(tp, tp + fp + fn, confidence)

    def f1(j: float | None) -> float | None:
        return None if j is None else 2.0 * j / (1.0 + j)

    return Interval(
        value=f1(jaccard.value), low=f1(jaccard.low), high=f1(jaccard.high), n=jaccard.n
    )


def _interval(value: np.ndarray, realized: np.ndarray, confidence: float) -> Interval:
    """The point estimate and the central ``confidence`` share of the simulated realized values,
    widened to hold the point: the realized metric of a small window takes few values (one row:
    F1 is 0 or 1), so the expected-count estimate (0.998) can fall between them; widening never
    lowers the coverage. ``None`` throughout when the metric would be undefined in more than
    ``1 - confidence`` of the simulated outcomes."""
    finite = realized[np.isfinite(realized)]
    if finite.size < confidence * realized.size:
        # undefined (0/0) in more than 1 - confidence of the outcomes (recall when the window
        # likely holds no churner, e.g. one row at 10 %): no interval holds the realized value
        # with the stated coverage, and the expected-count point alone would read as certain
        return Interval(value=None, low=None, high=None)
    tail = 100.0 * (1.0 - confidence) / 2.0
    number = float(value)
    point = number if np.isfinite(number) else None
    low = float(np.percentile(finite, tail)) if finite.size else None
    high = float(np.percentile(finite, 100.0 - tail)) if finite.size else None
    if point is not None and low is not None and high is not None:
        low, high = min(low, point), max(high, point)
    return Interval(value=point, low=low, high=high)


def estimate_performance(
    probabilities: np.ndarray,
    threshold: float | np.ndarray,
    confidence: float = 0.95,
    draws: int = 2000,
    seed: int = 0,
) -> PerformanceEstimate:
    """Expected precision, recall, F1 and accuracy of a window before any label arrives.

    Confidence-based performance estimation (CBPE, NannyML's *Estimation of Performance of the
    Monitored Model*, "Binary classification"): when the probabilities are calibrated, row ``j``
    labelled churn (``p_j >= threshold``) is a true positive with probability ``p_j`` and a false
    positive with ``1 - p_j``; a row labelled stay is a false negative with probability ``p_j``.
    Summing gives the expected confusion counts, and the point estimates are the metrics of those
    counts (``F1 = 2 TP / (2 TP + FP + FN)``). The interval is where the *realized* metric falls
    once the labels arrive: labels are drawn ``draws`` times as independent Bernoulli(``p_j``)
    (seeded), and the interval holds the central ``confidence`` share of the realized metrics.
    Valid only as far as the probabilities are calibrated (``make bench-drift`` reports the
    holdout's reliability) and ``P(churn | features)`` has not changed (no concept drift).

    Args:
        probabilities: churn probabilities of the window, shape ``(n,)``.
        threshold: the model's decision threshold, or one per row, shape ``(n,)`` (a window
            served by several model versions: each row labelled at its model's threshold).
        confidence: coverage of the intervals, in (0, 1).
        draws: simulated label sets for the intervals.
        seed: seed of the simulation.

    Returns:
        The :class:`PerformanceEstimate`; a metric is ``None`` when undefined (e.g. precision
        with no predicted churner).

    Raises:
        ValueError: on an empty window, probabilities outside [0, 1], per-row thresholds of
            another shape or a bad ``confidence``.
    """
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if p.size == 0:
        raise ValueError("no predictions to estimate the performance of")
    cut = np.asarray(threshold, dtype=np.float64)
    if cut.ndim and cut.shape != p.shape:
        raise ValueError(f"{cut.size} thresholds for {p.size} probabilities")
    if not np.all((p >= 0.0) & (p <= 1.0)):
        raise ValueError("probabilities must lie in [0, 1]")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    churn = predicted_churn(p, cut)
    # NannyML's expected confusion counts: TP = sum of p over churn labels, FP = sum of 1 - p there,
    # FN = sum of p over stay labels
    expected = _scores(np.sum(p[churn]), np.sum(1.0 - p[churn]), np.sum(p[~churn]), p.size)
    realized = _realized(p, churn, draws, seed)
    # the denominators known before any label: precision's (the predicted churners) and
    # accuracy's (every row); recall's (the true churners) is itself estimated, F1 has none
    known = {"precision": int(churn.sum()), "accuracy": int(p.size)}
    return PerformanceEstimate(
        n=int(p.size),
        threshold=float(cut.flat[0]) if np.unique(cut).size == 1 else None,
        predicted_churners=int(churn.sum()),
        expected_churners=float(p.sum()),
        confidence=confidence,
        **{
            name: _interval(value, realized[name], confidence).model_copy(
                update={"n": known.get(name)}
            )
            for name, value in expected.items()
        },
    )


class ReliabilityBin(BaseModel):
    """One bin of a reliability diagram: probabilities in ``[low, high)`` (the last bin holds 1)."""

    model_config = ConfigDict(frozen=True)

    low: float = Field(description="Lower edge of the bin.")
    high: float = Field(description="Upper edge of the bin.")
    n: int
    mean_probability: float
    churn_rate: float


class Reliability(BaseModel):
    """How well probabilities match observed churn rates (calibration)."""

    model_config = ConfigDict(frozen=True)

    n: int
    mean_probability: float = Field(description="Mean predicted churn probability.")
    churn_rate: float = Field(description="Observed churn rate.")
    ece: float = Field(description="Expected calibration error: the n-weighted mean gap per bin.")
    bins: list[ReliabilityBin]


def reliability(y: np.ndarray, p: np.ndarray, bins: int = 10) -> Reliability:
    """Reliability of churn probabilities against labels, in ``bins`` equal-width bins of [0, 1].

    Args:
        y: true labels (0/1).
        p: predicted churn probabilities of the same rows.
        bins: number of bins (empty bins are left out).

    Returns:
        The :class:`Reliability` (bins ordered by probability).
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    index = np.clip((p * bins).astype(int), 0, bins - 1)
    found = [
        ReliabilityBin(
            low=k / bins,
            high=(k + 1) / bins,
            n=int(mask.sum()),
            mean_probability=float(p[mask].mean()),
            churn_rate=float(y[mask].mean()),
        )
        for k in range(bins)
        if (mask := index == k).any()
    ]
    ece = sum(b.n * abs(b.mean_probability - b.churn_rate) for b in found) / max(p.size, 1)
    return Reliability(
        n=int(p.size),
        mean_probability=float(p.mean()) if p.size else 0.0,
        churn_rate=float(y.mean()) if y.size else 0.0,
        ece=float(ece),
        bins=found,
    )
