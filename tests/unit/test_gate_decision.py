"""The promotion decision alone: a pure function, no MLflow."""

from __future__ import annotations

import numpy as np
import pytest

from core.evaluate import QUALITY_THRESHOLDS, Metrics, evaluate
from core.registry import decide


def _metrics(f1_target: str) -> Metrics:
    """Metrics of a model that gets ``good`` (all right), ``ok`` (one churner missed of 8) or
    ``bad`` (most churners missed) on a fixed 100-row set with 8 churners."""
    y = np.array([1] * 8 + [0] * 92)
    proba = np.where(y == 1, 0.9, 0.1).astype(float)
    if f1_target == "ok":
        proba[0] = 0.2
    if f1_target == "bad":
        proba[:6] = 0.2
    return evaluate(y, proba, 0.5)


def test_no_champion_promotes_a_challenger_above_the_floors() -> None:
    decision = decide("3", _metrics("good"), None, None, metric="f1", margin=0.002)
    assert decision.promoted and "no champion" in decision.reason
    assert decision.champion_score is None and decision.failed_floors == []


def test_below_the_floors_is_rejected_whatever_the_champion() -> None:
    bad = _metrics("bad")
    decision = decide("3", bad, None, None, metric="f1", margin=0.0)
    assert not decision.promoted and "quality floors" in decision.reason
    assert decision.failed_floors == QUALITY_THRESHOLDS.failures(bad)


@pytest.mark.parametrize(
    ("challenger", "champion", "margin", "promoted"),
    [("good", "ok", 0.002, True), ("ok", "good", 0.002, False), ("good", "good", 0.0, True),
     ("good", "good", 0.01, False)],
)  # fmt: skip
def test_the_challenger_must_lead_by_the_margin(
    challenger: str, champion: str, margin: float, promoted: bool
) -> None:
    decision = decide(
        "4", _metrics(challenger), _metrics(champion), "2", metric="f1", margin=margin
    )
    assert decision.promoted is promoted
    assert decision.champion_version == "2" and decision.margin == margin
    assert decision.challenger_score == pytest.approx(_metrics(challenger).f1)
    assert decision.champion_score == pytest.approx(_metrics(champion).f1)
    assert ("beats champion v2" in decision.reason) is promoted


def test_the_compared_metric_is_the_one_asked() -> None:
    decision = decide("4", _metrics("good"), _metrics("ok"), "2", metric="roc_auc", margin=0.0)
    assert decision.metric == "roc_auc"
    assert decision.challenger_score == pytest.approx(_metrics("good").roc_auc)
