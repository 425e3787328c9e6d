"""Live quality (core.monitoring.quality) on a real prediction store, on both back ends: the
window, the realized figures (scikit-learn's, with intervals that hold them) and the CBPE
estimate."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from core.evaluate import estimate_performance
from core.monitoring.quality import ServedCounts, live_quality, realized_quality
from core.schema import EXAMPLE_LOYAL
from core.settings import Settings
from tests.core.monitoring.helpers import seed_predictions

#: A fixed end of the window: the rows are placed relative to it, never to the clock.
UNTIL = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FIGURES = {
    "accuracy": accuracy_score,
    "precision": precision_score,
    "recall": recall_score,
    "f1": f1_score,
}


@pytest.fixture()
def settings(settings: Settings, store_url: str) -> Settings:
    """The tmp settings with the predictions in ``store_url`` (SQLite, then PostgreSQL)."""
    return settings.model_copy(update={"database_url": store_url})


def row(at: datetime, probability: float, threshold: float, actual: str | None) -> dict[str, Any]:
    """One stored prediction as the API writes it (label = probability >= threshold)."""
    return {
        "id": str(uuid.uuid4()),
        "created_at": at,
        "request_id": "r",
        "model_version": "3" if threshold == 0.4 else "2",
        "probability": probability,
        "label": "yes" if probability >= threshold else "no",
        "threshold": threshold,
        "latency_ms": 1.0,
        "features": json.dumps(EXAMPLE_LOYAL),
        "actual": actual,
        "feedback_at": None if actual is None else at,
    }


def test_an_empty_store_is_an_empty_window(settings: Settings) -> None:
    quality = live_quality(settings, until=UNTIL)
    assert quality.realized is None and quality.estimated is None
    window = quality.window
    assert window.hours == 168 and window.end == UNTIL and window.start == UNTIL - timedelta(7)
    assert (window.predictions, window.labelled, window.limited) == (0, 0, False)
    assert window.estimated_on == 0 and window.model_versions == []


def test_realized_is_scikit_learn_and_estimated_is_cbpe_over_the_window(
    settings: Settings,
) -> None:
    """300 predictions of two model versions (thresholds 0.4 and 0.5), 180 with feedback drawn
    from their probabilities, plus rows outside the window that must not count."""
    rng = np.random.default_rng(7)
    p = rng.beta(0.6, 2.5, 300)
    thresholds = np.where(np.arange(300) < 150, 0.5, 0.4)
    churned = rng.random(300) < p
    rows = [
        row(
            UNTIL - timedelta(hours=1 + i * 0.5),  # the oldest 150 h before the end
            float(p[i]),
            float(thresholds[i]),
            ("yes" if churned[i] else "no") if i % 5 < 3 else None,
        )
        for i in range(300)
    ]
    outside = [
        row(UNTIL - timedelta(days=8), 0.9, 0.5, "no"),  # too old
        row(UNTIL + timedelta(minutes=1), 0.9, 0.5, "no"),  # after the end
    ]
    seed_predictions(settings.db_url, rows + outside)
    quality = live_quality(settings, until=UNTIL)
    window = quality.window
    assert (window.predictions, window.labelled, window.limited) == (300, 180, False)
    assert window.estimated_on == 300
    assert window.model_versions == ["2", "3"]  # newest first
    labelled = np.array([i % 5 < 3 for i in range(300)])
    y, served = churned[labelled], (p >= thresholds)[labelled]
    realized = quality.realized
    assert realized is not None and realized.n == 180 and realized.churners == int(y.sum())
    for name, sklearn_metric in FIGURES.items():
        figure = getattr(realized, name)
        assert figure.value == pytest.approx(sklearn_metric(y, served)), name
        assert figure.low < figure.value < figure.high, name
        assert figure.high - figure.low < 0.35, name  # 180 labels do narrow it
    estimated = quality.estimated
    assert estimated is not None and estimated.n == 300 and estimated.threshold is None
    assert estimated == estimate_performance(p, thresholds)
    assert estimated.predicted_churners == int((p >= thresholds).sum())
    for name in FIGURES:
        figure = getattr(estimated, name)
        assert figure.low <= figure.value <= figure.high, name


def test_the_window_and_the_limit_are_reported(settings: Settings) -> None:
    seed_predictions(
        settings.db_url,
        [row(UNTIL - timedelta(hours=h), 0.2, 0.5, None) for h in (1, 2, 3, 30, 200)],
    )
    day = live_quality(settings, hours=24, until=UNTIL)
    assert day.window.predictions == 3 and day.window.hours == 24
    assert day.realized is None and day.estimated is not None and day.estimated.n == 3
    assert live_quality(settings, until=UNTIL).window.predictions == 4  # 200 h is out of 7 days
    newest = live_quality(settings, until=UNTIL, limit=2)
    assert (newest.window.predictions, newest.window.estimated_on) == (4, 2)
    assert newest.window.limited and newest.estimated is not None and newest.estimated.n == 2
    assert newest.window.start == UNTIL - timedelta(days=7)  # the window's, not the estimate's


def test_one_label_gives_n_1_and_a_wide_interval() -> None:
    right = realized_quality(ServedCounts.of(np.array([1]), np.array([1])))
    assert right.n == 1 and right.f1.value == 1.0 and right.accuracy.value == 1.0
    assert right.accuracy.low is not None and right.accuracy.low < 0.25
    assert right.f1.low is not None and right.f1.low < 0.4 and right.f1.high == 1.0
    wrong = realized_quality(ServedCounts.of(np.array([0]), np.array([1])))
    assert wrong.accuracy.value == 0.0 and wrong.accuracy.high is not None
    assert wrong.accuracy.high > 0.75  # one wrong answer does not show a useless model
    assert wrong.recall.value is None and wrong.recall.low is None  # no churner: 0/0, not 0
    assert wrong.f1.value == 0.0 and wrong.f1.high is not None and wrong.f1.high > 0.75


def test_undefined_figures_are_none_never_zero() -> None:
    stays = realized_quality(ServedCounts(tp=0, fp=0, fn=0, tn=20))
    assert stays.accuracy.value == 1.0
    for name in ("precision", "recall", "f1"):
        assert getattr(stays, name).model_dump() == {
            "value": None, "low": None, "high": None, "n": 0,
        }  # fmt: skip
    with pytest.raises(ValueError, match="2 outcomes for 3 served labels"):
        ServedCounts.of(np.array([0, 1]), np.array([0, 1, 1]))


def test_realized_counts_every_labelled_prediction_of_the_window_past_the_estimate_cap(
    settings: Settings,
) -> None:
    """20 predictions in the window with the estimate capped at the newest 5: the feedback on the
    15 older ones still counts in the realized figures (exactly, every labelled row of the
    window), the estimate reads the newest 5 and says so; rows outside the window never count."""
    rng = np.random.default_rng(11)
    p = rng.uniform(0.05, 0.95, 20)
    thresholds = np.where(np.arange(20) < 10, 0.4, 0.5)  # newest 10: version 3, older: 2
    churned = rng.random(20) < p
    labelled = np.array([i % 3 != 0 for i in range(20)])  # 13 labels, 10 of them past the 5
    rows = [
        row(
            UNTIL - timedelta(hours=1 + i),  # i = 0 is the newest
            float(p[i]),
            float(thresholds[i]),
            ("yes" if churned[i] else "no") if labelled[i] else None,
        )
        for i in range(20)
    ]
    too_old = [row(UNTIL - timedelta(days=8, hours=h), 0.9, 0.5, "no") for h in range(3)]
    after_the_end = row(UNTIL + timedelta(minutes=1), 0.9, 0.5, "yes")
    seed_predictions(settings.db_url, [*rows, *too_old, after_the_end])

    def expect(hours: float) -> None:
        quality = live_quality(settings, hours=hours, until=UNTIL, limit=5)
        inside = np.arange(20) < hours - 1  # row i is 1 + i hours old
        y, served = churned[inside & labelled], (p >= thresholds)[inside & labelled]
        _, fp, fn, tp = confusion_matrix(y, served, labels=[False, True]).ravel()
        realized = quality.realized
        assert realized is not None and realized.n == y.size and realized.churners == y.sum()
        assert realized.accuracy.n == y.size and realized.f1.n == tp + fp + fn
        assert (realized.precision.n, realized.recall.n) == (tp + fp, tp + fn)
        for name, sklearn_metric in FIGURES.items():
            assert getattr(realized, name).value == pytest.approx(sklearn_metric(y, served)), name
        window = quality.window
        assert (window.predictions, window.labelled) == (int(inside.sum()), y.size)
        assert (window.estimated_on, window.limited) == (5, True)
        assert window.start == UNTIL - timedelta(hours=hours) and window.end == UNTIL
        assert quality.estimated == estimate_performance(p[:5], thresholds[:5])

    expect(168.0)  # the whole 20 (the 8-day-old and the future rows are out)
    expect(12.5)  # the newest 12 only
    assert live_quality(settings, until=UNTIL, limit=5).window.model_versions == ["3", "2"]
    full = live_quality(settings, until=UNTIL, limit=20)
    assert (full.window.estimated_on, full.window.limited) == (20, False)
