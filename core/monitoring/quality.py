"""Live quality: the one definition of how well the served predictions do over a window.

``GET /metrics/live``, the drift job's quality snapshot (Elasticsearch, or the embedded store) and,
through the API, the Monitoring page all use :func:`live_quality`; nothing else computes it.

Over a window of stored predictions (default: the 7 days up to now) it gives, side by side:

* **realized** — from the feedback received on *every* prediction of the window, however many:
  ``n`` labelled rows, churners, and accuracy, precision, recall and F1 of the labels that were
  served (each row's stored label, made at its model's threshold) against the true outcomes. The
  point values have scikit-learn's definitions (checked by a test). Each is a proportion, so each
  gets a Wilson score interval
  (``statsmodels.stats.proportion.proportion_confint(method="wilson")``; Wilson, JASA 1927;
  recommended for small samples by Brown, Cai & DasGupta, *Statistical Science* 2001):
  accuracy = correct / n, precision = TP / (TP + FP), recall = TP / (TP + FN), and F1 through the
  Jaccard index J = TP / (TP + FP + FN), as F1 = 2J / (1 + J) is increasing in J. The interval
  always holds the point value, stays honest at one label (n = 1 gives 0.21-1 for a right
  answer), and is ``None`` with its figure where that figure is 0/0, never a 0. They need only
  the four counts of served label against true outcome (:class:`ServedCounts`), which the
  database adds up over the whole window (:func:`core.monitoring.read.prediction_counts`).
* **estimated** — confidence-based performance estimation (CBPE,
  :func:`core.evaluate.estimate_performance`) from the probabilities of the window's predictions,
  labelled or not, each at its own stored threshold: at most the newest :data:`MAX_ROWS`, as its
  interval is simulated row by row (``window.estimated_on`` says how many, ``window.limited``
  whether the window held more).

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
from core.monitoring.read import prediction_counts, recent_predictions
from core.schema import POSITIVE_LABEL
from core.settings import Settings

#: The default window: the last 7 days.
WINDOW_HOURS = 24.0 * 7
#: The newest predictions of a window the CBPE estimate reads at most (bounds the work of one
#: request: its interval is simulated per row). The realized figures have no such bound.
MAX_ROWS = 50_000
CONFIDENCE = 0.95


class QualityWindow(BaseModel):
    """The stored predictions the figures are computed on."""

    model_config = ConfigDict(frozen=True)

    hours: float = Field(description="Length of the window, in hours.", examples=[168.0])
    start: datetime = Field(description="Oldest answer time included (UTC): `end` - `hours`.")
    end: datetime = Field(description="Newest answer time included (UTC).")
    predictions: int = Field(description="Predictions in the window, all of them.", examples=[42])
    labelled: int = Field(
        description="Of them, predictions with feedback: all used by the realized figures.",
        examples=[12],
    )
    estimated_on: int = Field(
        description=f"The newest predictions of the window the estimate used (at most "
        f"{MAX_ROWS:,}).",
        examples=[42],
    )
    limited: bool = Field(
        description="True when the window held more predictions than the estimate reads: it used "
        "the newest `estimated_on` of `predictions` (the realized figures always use every "
        "labelled one)."
    )
    model_versions: list[str] = Field(
        description="Model versions that served the window's predictions, newest first."
    )


class ServedCounts(BaseModel):
    """Served labels against true outcomes (1 = churn): the four counts the realized figures
    need, over any number of labelled predictions."""

    model_config = ConfigDict(frozen=True)

    tp: int = Field(ge=0, description="Churn served, churned.")
    fp: int = Field(ge=0, description="Churn served, stayed.")
    fn: int = Field(ge=0, description="Stay served, churned.")
    tn: int = Field(ge=0, description="Stay served, stayed.")

    @property
    def n(self) -> int:
        """Labelled predictions counted."""
        return self.tp + self.fp + self.fn + self.tn

    @classmethod
    def of(cls, actual: np.ndarray, served: np.ndarray) -> ServedCounts:
        """The counts of row-wise outcomes and served labels.

        Args:
            actual: true outcomes, 1 = churned, shape ``(n,)``.
            served: the labels served for the same rows, 1 = churn, shape ``(n,)``.

        Raises:
            ValueError: on shapes that differ.
        """
        y = np.asarray(actual).astype(bool).ravel()
        label = np.asarray(served).astype(bool).ravel()
        if y.shape != label.shape:
            raise ValueError(f"{y.size} outcomes for {label.size} served labels")
        return cls(
            tp=int((y & label).sum()),
            fp=int((~y & label).sum()),
            fn=int((y & ~label).sum()),
            tn=int((~y & ~label).sum()),
        )

    @classmethod
    def of_groups(cls, groups: pd.DataFrame) -> ServedCounts:
        """The counts of grouped predictions (:func:`core.monitoring.read.prediction_counts`).

        Args:
            groups: columns ``label`` (served), ``actual`` (``yes``/``no``; missing without
                feedback: not counted) and ``count``, any number of rows.
        """
        known = groups[groups["actual"].notna()]
        churned = (known["actual"] == POSITIVE_LABEL).to_numpy()
        churn = (known["label"] == POSITIVE_LABEL).to_numpy()
        count = known["count"].to_numpy(dtype=np.int64)
        return cls(
            tp=int(count[churned & churn].sum()),
            fp=int(count[~churned & churn].sum()),
            fn=int(count[churned & ~churn].sum()),
            tn=int(count[~churned & ~churn].sum()),
        )


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


def realized_quality(counts: ServedCounts, confidence: float = CONFIDENCE) -> RealizedQuality:
    """Accuracy, precision, recall and F1 of served labels, each with its Wilson interval.

    Args:
        counts: the served labels against the true outcomes (:meth:`ServedCounts.of` counts
            arrays of rows).
        confidence: coverage of the intervals, in (0, 1).

    Returns:
        The :class:`RealizedQuality` over ``counts.n`` labelled predictions; a figure and its
        interval are ``None`` where it is 0/0 (precision with no churn served, recall with no
        churner, F1 with neither; all four when ``counts.n`` is 0).
    """
    tp, fp, fn = counts.tp, counts.fp, counts.fn
    return RealizedQuality(
        n=counts.n,
        churners=tp + fn,
        confidence=confidence,
        accuracy=wilson_interval(tp + counts.tn, counts.n, confidence),
        precision=wilson_interval(tp, tp + fp, confidence),
        recall=wilson_interval(tp, tp + fn, confidence),
        f1=f1_interval(tp, fp, fn, confidence),
    )


def quality_of(counts: ServedCounts, newest: pd.DataFrame, window: QualityWindow) -> LiveQuality:
    """The :class:`LiveQuality` of a window (pure: no I/O).

    Args:
        counts: served labels against true outcomes over every labelled prediction of the window.
        newest: the predictions the estimate uses, with columns ``probability`` and ``threshold``.
        window: what they are (reported back as is).

    Returns:
        Realized figures from ``counts`` (``None`` when it is empty), the CBPE estimate on
        ``newest`` (``None`` when it is empty).
    """
    realized = realized_quality(counts) if counts.n else None
    estimated = (
        estimate_performance(
            newest["probability"].to_numpy(dtype=np.float64),
            newest["threshold"].to_numpy(dtype=np.float64),
            confidence=CONFIDENCE,
        )
        if len(newest)
        else None
    )
    return LiveQuality(window=window, realized=realized, estimated=estimated)


def live_quality(
    settings: Settings,
    hours: float = WINDOW_HOURS,
    *,
    until: datetime | None = None,
    limit: int | None = None,
) -> LiveQuality:
    """The live quality of the predictions stored in ``settings.db_url`` over a window.

    Args:
        settings: where the prediction store is (``settings.db_url``: SQLite or PostgreSQL).
        hours: length of the window, ending at ``until``.
        until: end of the window (default: now, UTC).
        limit: the newest predictions of the window the estimate reads at most (default:
            :data:`MAX_ROWS`); the realized figures count every labelled prediction.

    Returns:
        The :class:`LiveQuality`: the window, realized figures (``None`` without feedback) and
        the CBPE estimate (``None`` without predictions). A store with no prediction table yet
        is an empty window.
    """
    end = until or datetime.now(UTC)
    cap = MAX_ROWS if limit is None else limit
    rows = recent_predictions(settings, hours, limit=cap + 1, until=end)
    # Counted after the rows were read: predictions are only ever added, so the counts hold
    # every row the estimate uses even when a write lands between the two reads.
    groups = prediction_counts(settings, hours, until=end)
    newest = rows.iloc[:cap]
    counts = ServedCounts.of_groups(groups)
    window = QualityWindow(
        hours=hours,
        start=end - timedelta(hours=hours),
        end=end,
        predictions=int(groups["count"].sum()),
        labelled=counts.n,
        estimated_on=len(newest),
        limited=len(rows) > cap,
        model_versions=list(dict.fromkeys(groups["model_version"].astype(str))),
    )
    return quality_of(counts, newest, window)
