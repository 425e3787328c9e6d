"""Live quality: the one definition of how well the served predictions do over a window.

``GET /metrics/live``, the drift job's quality snapshot (Elasticsearch, or the embedded store) and,
through the API, the Monitoring page all use :func:`live_quality`; nothing else computes it.

Over a window of stored predictions (default: the 7 days up to now, at most :data:`MAX_ROWS` of
the newest) it gives, side by side:

* **realized** — from the feedback received on the window's predictions: ``n`` labelled rows,
  churners, and accuracy, precision, recall and F1 of the labels that were served (each row's
  stored label, made at its model's threshold) against the true outcomes. The point values have
  scikit-learn's definitions (checked by a test). Each is a proportion, so each gets a Wilson score
  interval (``statsmodels.stats.proportion.proportion_confint(method="wilson")``; Wilson, JASA
  1927; recommended for small samples by Brown, Cai & DasGupta, *Statistical Science* 2001):
  accuracy = correct / n, precision = TP / (TP + FP), recall = TP / (TP + FN), and F1 through the
  Jaccard index J = TP / (TP + FP + FN), as F1 = 2J / (1 + J) is increasing in J. The interval
  always holds the point value, stays honest at one label (n = 1 gives 0.21-1 for a right
  answer), and is ``None`` with its figure where that figure is 0/0, never a 0.
* **estimated** — confidence-based performance estimation (CBPE,
  :func:`core.evaluate.estimate_performance`) from the probabilities of *all* the window's
  predictions, labelled or not, each at its own stored threshold.

A bootstrap (:func:`core.labelled.labelled_quality`) is not used here: it has no interval below two
rows and a zero-width one whenever every labelled answer was right, which is the common case on
the first few labels of a live window.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from core.evaluate import (
    Interval,
    PerformanceEstimate,
    estimate_performance,
    f1_interval,
    wilson_interval,
)
from core.monitoring.read import recent_predictions
from core.schema import POSITIVE_LABEL
from core.settings import Settings

#: The default window: the last 7 days.
WINDOW_HOURS = 24.0 * 7
#: The newest predictions of a window used at most (bounds the work of one request).
MAX_ROWS = 50_000
CONFIDENCE = 0.95


class QualityWindow(BaseModel):
    """The stored predictions the figures are computed on."""

    model_config = ConfigDict(frozen=True)

    hours: float = Field(description="Length of the window, in hours.", examples=[168.0])
    start: datetime = Field(description="Oldest answer time included (UTC).")
    end: datetime = Field(description="Newest answer time included (UTC).")
    predictions: int = Field(description="Predictions in the window (used by the estimate).")
    labelled: int = Field(description="Of them, predictions with feedback (used by the realized).")
    limited: bool = Field(
        description=f"True when the window held more than {MAX_ROWS:,} predictions and only the "
        "newest were used (`start` is then the oldest one used)."
    )
    model_versions: list[str] = Field(description="Model versions that served them, newest first.")


class RealizedQuality(BaseModel):
    """Quality of the served labels against the true outcomes fed back, with Wilson intervals."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(description="Labelled predictions the figures are computed on.", examples=[120])
    churners: int = Field(description="Of them, customers who churned.", examples=[17])
    confidence: float = Field(CONFIDENCE, description="Coverage of the intervals.")
    accuracy: Interval
    precision: Interval
    recall: Interval
    f1: Interval


class LiveQuality(BaseModel):
    """Realized (from feedback) and estimated (CBPE, before labels) quality over one window."""

    model_config = ConfigDict(frozen=True)

    window: QualityWindow
    realized: RealizedQuality | None = Field(
        description="From feedback; null when no prediction of the window has any."
    )
    estimated: PerformanceEstimate | None = Field(
        description="CBPE from the probabilities; null when the window has no prediction."
    )


def realized_quality(
    actual: np.ndarray, served: np.ndarray, confidence: float = CONFIDENCE
) -> RealizedQuality:
    """Accuracy, precision, recall and F1 of served labels, each with its Wilson interval.

    Args:
        actual: true outcomes, 1 = churned, shape ``(n,)``.
        served: the labels served for the same rows, 1 = churn, shape ``(n,)``.
        confidence: coverage of the intervals, in (0, 1).

    Returns:
        The :class:`RealizedQuality`; a figure and its interval are ``None`` where it is 0/0
        (precision with no churn served, recall with no churner, F1 with neither).

    Raises:
        ValueError: on shapes that differ.
    """
    y = np.asarray(actual).astype(bool).ravel()
    label = np.asarray(served).astype(bool).ravel()
    if y.shape != label.shape:
        raise ValueError(f"{y.size} outcomes for {label.size} served labels")
    tp = int((y & label).sum())
    fp = int((~y & label).sum())
    fn = int((y & ~label).sum())
    return RealizedQuality(
        n=int(y.size),
        churners=int(y.sum()),
        confidence=confidence,
        accuracy=wilson_interval(int((y == label).sum()), int(y.size), confidence),
        precision=wilson_interval(tp, tp + fp, confidence),
        recall=wilson_interval(tp, tp + fn, confidence),
        f1=f1_interval(tp, fp, fn, confidence),
    )


def quality_of(rows: pd.DataFrame, window: QualityWindow) -> LiveQuality:
    """The :class:`LiveQuality` of a window's stored predictions (pure: no I/O).

    Args:
        rows: the window's predictions with columns ``probability``, ``threshold``, ``label`` and
            ``actual`` (``yes``/``no``; missing without feedback).
        window: what the rows are (reported back as is).

    Returns:
        Realized figures on the rows with feedback, the CBPE estimate on all of them.
    """
    labelled = rows[rows["actual"].notna()]
    realized = (
        realized_quality(
            (labelled["actual"] == POSITIVE_LABEL).to_numpy(),
            (labelled["label"] == POSITIVE_LABEL).to_numpy(),
        )
        if len(labelled)
        else None
    )
    estimated = (
        estimate_performance(
            rows["probability"].to_numpy(dtype=np.float64),
            rows["threshold"].to_numpy(dtype=np.float64),
            confidence=CONFIDENCE,
        )
        if len(rows)
        else None
    )
    return LiveQuality(window=window, realized=realized, estimated=estimated)


def live_quality(
    settings: Settings,
    hours: float = WINDOW_HOURS,
    *,
    until: datetime | None = None,
    limit: int = MAX_ROWS,
) -> LiveQuality:
    """The live quality of the predictions stored in ``settings.db_url`` over a window.

    Args:
        settings: where the prediction store is (``settings.db_url``: SQLite or PostgreSQL).
        hours: length of the window, ending at ``until``.
        until: end of the window (default: now, UTC).
        limit: the newest predictions of the window used at most.

    Returns:
        The :class:`LiveQuality`: the window, realized figures (``None`` without feedback) and
        the CBPE estimate (``None`` without predictions). A store with no prediction table yet
        is an empty window.
    """
    end = until or datetime.now(UTC)
    rows = recent_predictions(settings, hours, limit=limit + 1, until=end)
    limited = len(rows) > limit
    rows = rows.iloc[:limit]
    stamps = pd.to_datetime(rows["created_at"], utc=True)
    start = end - timedelta(hours=hours)
    if limited:
        start = stamps.min().to_pydatetime()
    versions = rows["model_version"].dropna().astype(str)
    window = QualityWindow(
        hours=hours,
        start=start,
        end=end,
        predictions=len(rows),
        labelled=int(rows["actual"].notna().sum()),
        limited=limited,
        model_versions=list(dict.fromkeys(versions)),
    )
    return quality_of(rows, window)
