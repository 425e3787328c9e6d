"""Quality of scored rows whose true outcome is known: figures with their sample size and interval.

* :func:`labelled_quality` — precision, recall, F1, accuracy, ROC-AUC, PR-AUC and Brier score of
  churn probabilities against labels, each with a confidence interval. Precision, recall and
  accuracy are proportions of rows (TP of TP + FP, TP of TP + FN, right of all), so each gets the
  Wilson score interval with its own ``n`` (F1 through the Jaccard index), as the live quality
  does (:func:`core.evaluate.wilson_interval`): a bootstrap gives a zero-width interval whenever
  every row is right. ROC-AUC, PR-AUC and Brier get a percentile-bootstrap interval: one paired
  bootstrap of the rows (:func:`scipy.stats.bootstrap`, ``method="percentile"``; Efron &
  Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13), 1,000 resamples, seeded, so the
  same rows always give the same interval.
* :class:`SampleRule` — when rows are too few to judge a model on (the promotion gate and the
  report of a labelled file both use it).
* :func:`labelled_report` — what scoring a labelled file says: the figures on the rows the model
  never trained on, and how many rows it had already seen (by :mod:`core.fingerprints`).

The figures have scikit-learn's definitions (``precision_score``, ``recall_score``, ``f1_score``,
``accuracy_score``, ``roc_auc_score`` with ties counted one half, ``average_precision_score``,
``brier_score_loss``; checked by a test), computed here from per-probability counts so that all
the resamples are scored at once. A figure is ``None`` where it is undefined (precision with no
predicted churner, ROC-AUC with one class), never a 0 that looks like a measurement.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from core.evaluate import Interval, f1_interval, wilson_interval
from core.fingerprints import seen_mask
from core.schema import POSITIVE_LABEL, TARGET, YES_NO, predicted_churn
from core.settings import Settings

CONFIDENCE = 0.95
RESAMPLES = 1000
SEED = 0
METRICS: tuple[str, ...] = ("precision", "recall", "f1", "accuracy", "roc_auc", "pr_auc", "brier")
#: Resampled rows held in memory at once (resamples x rows), bounding a 10,000-row batch to ~16 MB.
_CELLS_PER_CALL = 2_000_000


class Quality(BaseModel):
    """Realized quality of churn probabilities on labelled rows, with the sample size."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(description="Rows the figures are computed on.", examples=[667])
    churners: int = Field(description="Of them, customers who churned.", examples=[97])
    threshold: float = Field(description="Probability at or above which a label is churn.")
    confidence: float = Field(CONFIDENCE, description="Coverage of the intervals.")
    resamples: int = Field(RESAMPLES, description="Bootstrap resamples behind the intervals.")
    precision: Interval
    recall: Interval
    f1: Interval
    accuracy: Interval
    roc_auc: Interval
    pr_auc: Interval
    brier: Interval = Field(description="Mean squared error of the probabilities (lower: better).")

    def figure(self, name: str) -> Interval:
        """The interval of metric ``name`` (one of :data:`METRICS`)."""
        if name not in METRICS:
            raise KeyError(f"unknown metric {name!r}; expected one of {', '.join(METRICS)}")
        interval: Interval = getattr(self, name)
        return interval

    def text(self, name: str) -> str:
        """``f1 0.9100 (95 % CI 0.8700-0.9400)``; ``undefined`` parts spelled out."""
        figure = self.figure(name)
        if figure.value is None:
            return f"{name} undefined"
        if figure.low is None or figure.high is None:
            return f"{name} {figure.value:.4f} (no interval)"
        level = f"{self.confidence:.0%}".replace("%", " %")
        return f"{name} {figure.value:.4f} ({level} CI {figure.low:.4f}-{figure.high:.4f})"


def _counts(groups: np.ndarray, y: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Churners and non-churners per distinct probability, per resample: two ``(B, G)`` arrays."""
    g = np.atleast_2d(groups)
    churn = np.atleast_2d(y).astype(np.float64)
    resamples, rows = g.shape
    flat = (np.arange(resamples)[:, None] * n_groups + g).ravel()
    size = resamples * n_groups
    pos = np.bincount(flat, weights=churn.ravel(), minlength=size).reshape(resamples, n_groups)
    total = np.bincount(flat, minlength=size).reshape(resamples, n_groups).astype(np.float64)
    del rows
    return pos, total - pos


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    result: np.ndarray = np.divide(num, den, out=out, where=den > 0)
    return result


def _figures(pos: np.ndarray, neg: np.ndarray, values: np.ndarray, cut: int) -> np.ndarray:
    """The :data:`METRICS` of per-probability counts (``values`` ascending; churn from ``cut``)."""
    n1, n0 = pos.sum(axis=1), neg.sum(axis=1)
    tp, fp = pos[:, cut:].sum(axis=1), neg[:, cut:].sum(axis=1)
    fn, tn = n1 - tp, n0 - fp
    below = np.cumsum(neg, axis=1) - neg  # non-churners scored strictly lower, per group
    mann_whitney = (pos * (below + 0.5 * neg)).sum(axis=1)
    top_pos = np.cumsum(pos[:, ::-1], axis=1)  # churners at or above each probability
    top_all = np.cumsum((pos + neg)[:, ::-1], axis=1)
    step_precision = _divide(top_pos, top_all)
    average_precision = np.where(pos[:, ::-1] > 0, pos[:, ::-1] * step_precision, 0.0).sum(axis=1)
    squared = pos @ (1.0 - values) ** 2 + neg @ values**2
    return np.stack(
        [
            _divide(tp, tp + fp),
            _divide(tp, n1),
            _divide(2 * tp, 2 * tp + fp + fn),
            _divide(tp + tn, n1 + n0),
            _divide(mann_whitney, n1 * n0),
            _divide(average_precision, n1),
            _divide(squared, n1 + n0),
        ]
    )


def labelled_quality(
    y: np.ndarray,
    p: np.ndarray,
    threshold: float,
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Quality:
    """Precision, recall, F1, accuracy, ROC-AUC, PR-AUC and Brier score with their intervals.

    Args:
        y: true labels (0/1), shape ``(n,)``.
        p: churn probabilities of the same rows, in [0, 1].
        threshold: probability at or above which the predicted label is churn.
        confidence: coverage of the intervals, in (0, 1).
        resamples: bootstrap resamples.
        seed: seed of the resampling.

    Returns:
        The :class:`Quality`; with fewer than 2 rows there is no interval, and an interval is
        ``None`` where its figure is undefined in some resample.

    Raises:
        ValueError: on shapes that differ, labels other than 0/1 or probabilities outside [0, 1].
    """
    y = np.asarray(y).astype(np.int64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels for {p.size} probabilities")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (stays) or 1 (churns)")
    if not ((p >= 0.0) & (p <= 1.0)).all():
        raise ValueError("probabilities must lie in [0, 1]")
    values, groups = np.unique(p, return_inverse=True)
    cut = int(np.searchsorted(values, threshold, side="left"))

    def statistic(g: np.ndarray, labels: np.ndarray, axis: int = -1) -> np.ndarray:
        del axis  # resamples are always along the last axis here
        return _figures(*_counts(g, labels, len(values)), values, cut)

    point = statistic(groups, y)[:, 0]
    low = high = np.full(len(METRICS), np.nan)
    if y.size >= 2:
        with warnings.catch_warnings():  # a degenerate (constant) resample distribution is fine
            warnings.simplefilter("ignore")
            found = stats.bootstrap(
                (groups, y),
                statistic,
                paired=True,
                vectorized=True,
                n_resamples=resamples,
                batch=max(1, _CELLS_PER_CALL // y.size),
                confidence_level=confidence,
                method="percentile",
                rng=np.random.default_rng(seed),
            )
        low, high = found.confidence_interval.low, found.confidence_interval.high

    def number(value: Any) -> float | None:
        return float(value) if np.isfinite(value) else None

    figures = {
        name: Interval(value=number(point[i]), low=number(low[i]), high=number(high[i]))
        for i, name in enumerate(METRICS)
    }
    return Quality(
        n=int(y.size),
        churners=int(y.sum()),
        threshold=float(threshold),
        confidence=confidence,
        resamples=resamples,
        **(figures | _proportions(y, p, threshold, confidence)),
    )


def _proportions(
    y: np.ndarray, p: np.ndarray, threshold: float, confidence: float
) -> dict[str, Interval]:
    """Precision, recall, F1 and accuracy at ``threshold`` with Wilson intervals and their n."""
    churn = predicted_churn(p, threshold)
    tp, fp = int((churn & (y == 1)).sum()), int((churn & (y == 0)).sum())
    fn, tn = int((~churn & (y == 1)).sum()), int((~churn & (y == 0)).sum())
    return {
        "precision": wilson_interval(tp, tp + fp, confidence),
        "recall": wilson_interval(tp, tp + fn, confidence),
        "f1": f1_interval(tp, fp, fn, confidence),
        "accuracy": wilson_interval(tp + tn, int(y.size), confidence),
    }


class SampleRule(BaseModel):
    """When labelled rows are enough to judge a model on.

    Enough means both: at least ``min_class_rows`` churners and as many non-churners, and a
    ROC-AUC interval no wider than ``max_interval_width``. The width is Riley et al.'s precision
    target for the C statistic (ROC-AUC) of a validation sample (*Minimum sample size for external
    validation of a clinical prediction model with a binary outcome*, Stat Med 2021;40:4230-4251:
    a 95 % interval at most 0.1 wide). The per-class minimum guards the bootstrap: with ``k``
    churners all predicted right every resample agrees, yet a recall as low as ``1 - 3/k`` is
    still plausible (the rule of three, Hanley & Lippman-Hand, JAMA 1983;249:1743-1745), so ``k``
    must reach ``3 / max_interval_width`` = 30 for the width to mean anything.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_class_rows: int = Field(30, ge=1, description="Fewest churners, and non-churners.")
    max_interval_width: float = Field(
        0.10, gt=0.0, le=1.0, description="Widest acceptable ROC-AUC interval."
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> SampleRule:
        """The rule set by ``GATE_MIN_CLASS_ROWS`` and ``GATE_MAX_INTERVAL_WIDTH``."""
        return cls(
            min_class_rows=settings.gate_min_class_rows,
            max_interval_width=settings.gate_max_interval_width,
        )

    def shortfall(self, quality: Quality) -> str | None:
        """Why ``quality``'s rows are too few to judge a model on; None when they are enough."""
        stayers = quality.n - quality.churners
        if min(quality.churners, stayers) < self.min_class_rows:
            return (
                f"{quality.churners} churners and {stayers} non-churners; at least "
                f"{self.min_class_rows} of each are needed"
            )
        width = quality.roc_auc.width
        if width is None or width > self.max_interval_width:
            shown = "undefined" if width is None else f"{width:.3f} wide"
            return (
                f"the {quality.confidence:.0%} interval of roc_auc is {shown} "
                f"(at most {self.max_interval_width:g} needed)"
            )
        return None


class Confusion(BaseModel):
    """Counts of a confusion matrix: true outcome (churned or stayed) by predicted label."""

    model_config = ConfigDict(frozen=True)

    true_positives: int = Field(description="Churned, predicted to churn.", examples=[80])
    false_negatives: int = Field(description="Churned, predicted to stay.", examples=[17])
    false_positives: int = Field(description="Stayed, predicted to churn.", examples=[9])
    true_negatives: int = Field(description="Stayed, predicted to stay.", examples=[561])

    @classmethod
    def of(cls, y: np.ndarray, p: np.ndarray, threshold: float) -> Confusion:
        """The counts of labels ``y`` (0/1) against probabilities ``p`` cut at ``threshold``
        (churn at or above it, as the served label)."""
        truth = np.asarray(y).astype(bool)
        predicted = predicted_churn(np.asarray(p), threshold)
        return cls(
            true_positives=int((truth & predicted).sum()),
            false_negatives=int((truth & ~predicted).sum()),
            false_positives=int((~truth & predicted).sum()),
            true_negatives=int((~truth & ~predicted).sum()),
        )


class LabelledReport(BaseModel):
    """What scoring a file with a label column says about the model's quality on it."""

    model_config = ConfigDict(frozen=True)

    rows: int = Field(description="Rows scored.", examples=[667])
    labelled: int = Field(
        description="Rows whose label column holds a true outcome (yes/no in any spelling the "
        "schema accepts).",
        examples=[667],
    )
    seen: int = Field(
        description="Labelled rows the model was trained on (fitted, or used to choose its "
        "threshold), recognised by fingerprint: left out of the figures.",
        examples=[522],
    )
    fingerprinted: bool = Field(
        description="False when the model keeps no fingerprints of its training rows (trained "
        "before they were kept): `seen` is then unknown and reported as 0.",
        examples=[True],
    )
    quality: Quality = Field(
        description="Figures on the labelled rows the model never trained on, with intervals."
    )
    confusion: Confusion = Field(
        description="Confusion matrix on the same rows as `quality` (predicted at the threshold)."
    )
    enough_rows: bool = Field(
        description="Whether those rows are enough to judge the model (the promotion gate's "
        "rule: GATE_MIN_CLASS_ROWS of each class, a ROC-AUC interval at most "
        "GATE_MAX_INTERVAL_WIDTH wide)."
    )
    note: str = Field(description="One line saying all of the above.")


def _labels(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(known, y)``: which rows hold a yes/no outcome, and 0/1 labels of those rows."""
    values = frame[TARGET].astype(object).to_numpy()
    known = np.isin(values, YES_NO)
    return known, (values[known] == POSITIVE_LABEL).astype(np.int64)


def labelled_report(
    frame: pd.DataFrame,
    probabilities: np.ndarray,
    threshold: float,
    seen: np.ndarray | None,
    rule: SampleRule,
) -> LabelledReport | None:
    """The quality of a scored file on the labelled rows the model never trained on.

    Args:
        frame: the scored table as :func:`core.schema.check_frame` returns it (canonical
            features, and the label column as ``churn`` ``yes``/``no`` whatever its spelling in
            the file; a row without a yes/no outcome is left out).
        probabilities: the model's churn probabilities of the rows, shape ``(len(frame),)``.
        threshold: the model's decision threshold.
        seen: the model's training-row fingerprints (:func:`core.fingerprints.fingerprint_set`);
            None when the model keeps none.
        rule: when the rows are enough to judge the model (:class:`SampleRule`).

    Returns:
        The :class:`LabelledReport`, or None when the table has no label column.
    """
    if TARGET not in frame.columns:
        return None
    p = np.asarray(probabilities, dtype=np.float64)
    known, y = _labels(frame)
    labelled = frame.loc[known]
    already = seen_mask(labelled, seen) if seen is not None else np.zeros(len(labelled), dtype=bool)
    unseen_y, unseen_p = y[~already], p[known][~already]
    quality = labelled_quality(unseen_y, unseen_p, threshold)
    shortfall = rule.shortfall(quality)
    parts = [
        f"{quality.n} labelled rows the model never trained on ({quality.churners} churners)",
        (
            f"{int(already.sum())} rows it was trained on left out"
            if seen is not None
            else "the model keeps no fingerprints of its training rows: rows it saw cannot be told"
        ),
    ]
    if quality.n:
        parts.insert(0, ", ".join(quality.text(name) for name in ("f1", "roc_auc")))
    if shortfall:
        parts.append(f"too few to judge the model: {shortfall}")
    return LabelledReport(
        rows=len(frame),
        labelled=int(known.sum()),
        seen=int(already.sum()),
        fingerprinted=seen is not None,
        quality=quality,
        confusion=Confusion.of(unseen_y, unseen_p, threshold),
        enough_rows=shortfall is None,
        note="; ".join(parts),
    )
