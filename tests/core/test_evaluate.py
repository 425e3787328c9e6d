"""core.evaluate: metrics, validation threshold, CV and the shared quality floors."""

from __future__ import annotations

import numpy as np
import pytest

from core.data import to_xy
from core.evaluate import (
    QUALITY_THRESHOLDS,
    Metrics,
    QualityThresholds,
    choose_threshold,
    cross_validate_f1,
    estimate_performance,
    evaluate,
    reliability,
)
from tests.factories import dataset, small_config


def test_evaluate_on_a_hand_computed_example() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    metrics = evaluate(y, p, 0.5)
    assert metrics.confusion == [[1, 1], [1, 1]]
    assert (metrics.f1, metrics.precision, metrics.recall, metrics.accuracy) == (0.5, 0.5, 0.5, 0.5)
    assert metrics.roc_auc == pytest.approx(0.75)
    assert metrics.brier == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)
    assert metrics.pr_auc == pytest.approx((1.0 + 2 / 3) / 2)
    assert metrics.n == 4 and metrics.threshold == 0.5
    assert set(metrics.numbers()) == set(Metrics.model_fields) - {"confusion"}


@pytest.mark.parametrize("threshold", [0.0, 0.45, 0.95])
def test_threshold_decides_the_labels(threshold: float) -> None:
    y = np.array([0, 1, 0, 1, 1])
    p = np.array([0.2, 0.5, 0.45, 0.95, 0.7])
    (tn, fp), (fn, tp) = evaluate(y, p, threshold).confusion
    assert tp + fp == int((p >= threshold).sum())
    assert tn + fn == int((p < threshold).sum())


def test_evaluate_refuses_a_single_class() -> None:
    with pytest.raises(ValueError, match="both"):
        evaluate(np.zeros(5), np.linspace(0, 1, 5), 0.5)


@pytest.mark.parametrize(
    ("y", "p"),
    [
        ([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.8]),
        ([0, 1, 0, 1, 1, 0], [0.05, 0.4, 0.35, 0.9, 0.6, 0.5]),
        ([1, 0, 1, 0], [0.9, 0.1, 0.2, 0.8]),
    ],
)
def test_choose_threshold_maximises_f1_on_validation(y: list[int], p: list[float]) -> None:
    y_arr, p_arr = np.array(y), np.array(p)
    best = choose_threshold(y_arr, p_arr)
    f1_best = evaluate(y_arr, p_arr, best).f1
    assert best in p_arr
    assert all(evaluate(y_arr, p_arr, t).f1 <= f1_best for t in np.unique(p_arr))


def test_choose_threshold_without_positives_falls_back_to_one_half() -> None:
    assert choose_threshold(np.zeros(4), np.array([0.1, 0.2, 0.3, 0.4])) == 0.5


def test_quality_thresholds_report_every_missed_floor() -> None:
    good = evaluate(np.array([0, 0, 1, 1]), np.array([0.0, 0.1, 0.9, 1.0]), 0.5)
    assert not QUALITY_THRESHOLDS.failures(good)
    bad = good.model_copy(update={"f1": 0.5, "roc_auc": 0.6, "brier": 0.3})
    reasons = QUALITY_THRESHOLDS.failures(bad)
    assert len(reasons) == 3
    assert any(r.startswith("f1 0.5000 < 0.92") for r in reasons)
    strict = QualityThresholds(min_f1=1.01)
    assert strict.failures(good) == ["f1 1.0000 < 1.01"]


def test_cross_validate_f1_runs_every_fold() -> None:
    frame = dataset().sample(1200, random_state=0)
    x, y = to_xy(frame)
    done: list[tuple[int, int]] = []
    result = cross_validate_f1(
        small_config("hgb"), x, y, folds=3, on_fold=lambda k, n: done.append((k, n))
    )
    assert done == [(1, 3), (2, 3), (3, 3)]
    assert len(result.scores) == 3 and all(0 < s <= 1 for s in result.scores)
    assert result.mean == pytest.approx(np.mean(result.scores))
    assert result.std == pytest.approx(np.std(result.scores))


def test_cbpe_with_certain_probabilities_is_the_realized_metric() -> None:
    """Probabilities of 0 and 1 leave nothing to chance: estimate = interval = the metrics."""
    p = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0])
    estimate = estimate_performance(p, threshold=0.5)
    assert estimate.n == 8 and estimate.predicted_churners == 4 and estimate.expected_churners == 4
    for interval in (estimate.precision, estimate.recall, estimate.f1, estimate.accuracy):
        assert interval.value == interval.low == interval.high == 1.0


def test_cbpe_expected_counts_give_the_published_formulas() -> None:
    """All rows labelled churn at p = 0.9: precision 0.9, recall 1, F1 = 1.8 / 1.9 (CBPE)."""
    estimate = estimate_performance(np.full(400, 0.9), threshold=0.5, seed=3)
    assert estimate.precision.value == pytest.approx(0.9)
    assert estimate.recall.value == pytest.approx(1.0)
    assert estimate.f1.value == pytest.approx(1.8 / 1.9)
    assert estimate.accuracy.value == pytest.approx(0.9)
    # realized precision ~ Binomial(400, 0.9) / 400: sd 0.015, so the 95 % interval is ~ ±0.03
    low, high = estimate.precision.low, estimate.precision.high
    assert low is not None and high is not None
    assert 0.86 < low < 0.89 < 0.91 < high < 0.94
    assert estimate.recall.low == estimate.recall.high == 1.0  # no row labelled stay: no FN


def test_cbpe_interval_covers_realized_f1_of_calibrated_windows() -> None:
    """Labels drawn from the probabilities fall in the 95 % interval about 95 % of the time."""
    rng = np.random.default_rng(7)
    p = rng.beta(0.4, 2.0, size=300)
    estimate = estimate_performance(p, threshold=0.5, seed=1)
    assert estimate.f1.low is not None and estimate.f1.high is not None
    inside = 0
    for _ in range(400):
        y = rng.random(p.size) < p
        labels = p >= 0.5
        tp, wrong = int((y & labels).sum()), int((y ^ labels).sum())
        inside += estimate.f1.low <= 2 * tp / (2 * tp + wrong) <= estimate.f1.high
    assert 0.90 <= inside / 400 <= 0.99


def test_cbpe_undefined_metrics_and_bad_input() -> None:
    none_churn = estimate_performance(np.full(50, 0.01), threshold=0.5)
    assert none_churn.predicted_churners == 0 and none_churn.precision.value is None
    assert none_churn.precision.low is None
    # half an expected churner in 50 rows: recall (TP / churners) is 0/0 in 61 % of outcomes
    assert none_churn.recall.value is None and none_churn.accuracy.value is not None
    with pytest.raises(ValueError, match="no predictions"):
        estimate_performance(np.array([]), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        estimate_performance(np.array([0.2, 1.2]), 0.5)
    with pytest.raises(ValueError, match="confidence"):
        estimate_performance(np.array([0.2]), 0.5, confidence=1.0)


def test_cbpe_judges_each_row_at_its_own_threshold() -> None:
    """A window served by two model versions: each row is labelled at its model's threshold."""
    p = np.array([0.45, 0.45, 0.8, 0.2])
    mixed = estimate_performance(p, np.array([0.4, 0.5, 0.5, 0.5]))
    assert mixed.threshold is None and mixed.predicted_churners == 2  # 0.45 >= 0.4, 0.8 >= 0.5
    # TP = 0.45 + 0.8, FP = 0.55 + 0.2, FN = 0.45 + 0.2
    assert mixed.f1.value == pytest.approx(2 * 1.25 / (2 * 1.25 + 0.75 + 0.65))
    same = estimate_performance(p, np.full(4, 0.5))
    assert same == estimate_performance(p, 0.5) and same.threshold == 0.5
    with pytest.raises(ValueError, match="3 thresholds for 4 probabilities"):
        estimate_performance(p, np.full(3, 0.5))


def test_reliability_bins_and_expected_calibration_error() -> None:
    y = np.array([0, 0, 1, 0, 1, 1, 1, 1])
    p = np.array([0.05, 0.05, 0.05, 0.05, 0.95, 0.95, 0.95, 0.95])
    found = reliability(y, p, bins=10)
    assert [(b.low, b.n) for b in found.bins] == [(0.0, 4), (0.9, 4)]
    assert found.bins[0].churn_rate == 0.25 and found.bins[1].churn_rate == 1.0
    assert found.ece == pytest.approx((4 * 0.2 + 4 * 0.05) / 8)
    assert found.mean_probability == pytest.approx(0.5) and found.churn_rate == 0.625


def test_the_estimate_lies_in_its_own_interval() -> None:
    """One prediction at 0.998: its realized F1 will be 0 or 1, the expected-count estimate is
    0.998; the interval is widened to hold it (a figure outside its own interval reads as a
    contradiction, and widening keeps the coverage)."""
    estimate = estimate_performance(np.array([0.998]), 0.5)
    f1 = estimate.f1
    assert f1.value is not None and f1.low is not None and f1.high is not None
    assert f1.low <= f1.value <= f1.high and f1.value < 1.0


@pytest.mark.parametrize("p", [[0.1], [0.9], [0.1, 0.2], [0.3] * 40, [0.05] * 200 + [0.7] * 20])
def test_a_reported_interval_holds_the_realized_metric_as_often_as_it_says(p: list[float]) -> None:
    """Labels drawn from the probabilities (another seed than the estimate's): a metric with an
    interval is defined in at least 95 % of the outcomes and inside its interval in at least
    95 % of those; a metric undefined more often than that (one row at 10 %: no churner to
    recall in 90 % of outcomes) has no value and no interval rather than a point that reads as
    certain."""
    probabilities = np.array(p)
    estimate = estimate_performance(probabilities, 0.5)
    rng = np.random.default_rng(7)
    predicted = probabilities >= 0.5
    outcomes = rng.random((4000, probabilities.size)) < probabilities
    tp = (outcomes & predicted).sum(axis=1)
    fp, fn = predicted.sum() - tp, (outcomes & ~predicted).sum(axis=1)
    realized = {
        "precision": (tp, tp + fp), "recall": (tp, tp + fn), "f1": (2 * tp, 2 * tp + fp + fn),
        "accuracy": (probabilities.size - fp - fn, np.full(tp.shape, probabilities.size)),
    }  # fmt: skip
    for name, (num, den) in realized.items():
        figure = getattr(estimate, name)
        defined = den > 0
        if figure.value is None:
            assert defined.mean() < 0.96, name  # refused only when often undefined (MC margin)
            continue
        assert defined.mean() >= 0.94, name
        values = num[defined] / den[defined]
        inside = (values >= figure.low - 1e-12) & (values <= figure.high + 1e-12)
        assert inside.mean() >= 0.94, (name, inside.mean())
    if len(p) == 1 and p[0] < 0.5:
        assert estimate.recall.value is None and estimate.f1.value is None


def test_the_estimate_shows_the_sample_size_of_each_proportion() -> None:
    """Precision is a share of the predicted churners and accuracy of every row, both known before
    any label; recall's denominator (the true churners) is itself estimated and F1 has none."""
    p = np.array([0.05] * 200 + [0.7] * 20 + [0.4] * 5)
    estimate = estimate_performance(p, 0.5)
    assert estimate.precision.n == estimate.predicted_churners == 20
    assert estimate.accuracy.n == estimate.n == 225
    assert estimate.recall.n is None and estimate.f1.n is None
