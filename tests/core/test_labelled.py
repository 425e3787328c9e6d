"""core.labelled: realized quality with sample size and intervals; a labelled file's report."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from core.data import to_xy
from core.fingerprints import fingerprint_set
from core.labelled import METRICS, Confusion, SampleRule, labelled_quality, labelled_report
from core.pipelines import TrainedModel
from tests.factories import dataset


def _holdout(model: TrainedModel) -> tuple[np.ndarray, np.ndarray, float]:
    x, y = model.holdout()
    return y, model.bundle.pipeline.predict_proba(x)[:, 1], model.bundle.threshold


def test_the_figures_are_scikit_learns(trained_model: TrainedModel) -> None:
    """On the real holdout, and on probabilities rounded to force ties."""
    y, p, threshold = _holdout(trained_model)
    for probabilities in (p, np.round(p, 1)):
        labels = probabilities >= threshold
        expected = {
            "precision": precision_score(y, labels),
            "recall": recall_score(y, labels),
            "f1": f1_score(y, labels),
            "accuracy": accuracy_score(y, labels),
            "roc_auc": roc_auc_score(y, probabilities),
            "pr_auc": average_precision_score(y, probabilities),
            "brier": brier_score_loss(y, probabilities),
        }
        quality = labelled_quality(y, probabilities, threshold)
        for name in METRICS:
            assert quality.figure(name).value == pytest.approx(expected[name], abs=1e-12), name
    assert quality.n == len(y) and quality.churners == int(y.sum())


def test_intervals_hold_the_figure_are_repeatable_and_shrink_with_rows(
    trained_model: TrainedModel,
) -> None:
    y, p, threshold = _holdout(trained_model)
    whole = labelled_quality(y, p, threshold)
    assert whole == labelled_quality(y, p, threshold)  # seeded
    half = labelled_quality(y[:250], p[:250], threshold)
    for name in METRICS:
        figure = whole.figure(name)
        assert figure.low is not None and figure.high is not None and figure.value is not None
        assert figure.low <= figure.value <= figure.high
    for name in ("recall", "f1", "roc_auc", "pr_auc", "brier"):
        assert (half.figure(name).width or 0.0) > (whole.figure(name).width or 0.0), name
    # Each proportion has its own n: precision of the predicted churners, recall of the churners.
    churn = p >= threshold
    assert (
        whole.precision.n == int(churn.sum()) and whole.recall.n == int(y.sum()) == whole.churners
    )
    assert whole.accuracy.n == whole.n and whole.roc_auc.n is None
    # A model right on every row: the proportions' Wilson intervals are not zero-width (8 of 8
    # churners found: recall 1, 95 % CI 0.68-1); the bootstrap's ROC-AUC interval is (every
    # resample agrees: the degenerate case SampleRule's per-class minimum is there for).
    perfect = labelled_quality(np.array([1] * 8 + [0] * 40), np.array([0.9] * 8 + [0.1] * 40), 0.5)
    assert perfect.recall.value == perfect.recall.high == 1.0 and perfect.recall.n == 8
    assert perfect.recall.low is not None and 0.6 < perfect.recall.low < 0.7
    assert (perfect.f1.width or 0.0) > 0.0 and (perfect.accuracy.width or 0.0) > 0.0
    assert perfect.roc_auc.width == 0.0
    assert whole.text("f1").startswith(f"f1 {whole.f1.value:.4f} (95 % CI ")


def test_the_f1_interval_covers_the_population_figure(trained_model: TrainedModel) -> None:
    """The honesty check: over 100 samples of 400 customers, the 95 % interval holds the F1 of
    the whole population (all 5,000 bundled rows) about 95 times (at least 85 asserted)."""
    x, y = to_xy(dataset())
    p = trained_model.bundle.pipeline.predict_proba(x)[:, 1]
    threshold = trained_model.bundle.threshold
    truth = f1_score(y, p >= threshold)
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(100):
        rows = rng.choice(len(y), 400, replace=False)
        f1 = labelled_quality(y[rows], p[rows], threshold, resamples=500).f1
        covered += int(f1.low is not None and f1.high is not None and f1.low <= truth <= f1.high)
    assert covered >= 85


def test_undefined_figures_are_none_never_zero() -> None:
    stays = labelled_quality(np.zeros(50, int), np.full(50, 0.1), 0.5)
    assert stays.roc_auc.value is None and stays.precision.value is None
    assert stays.recall.value is None and stays.accuracy.value == 1.0
    nothing = labelled_quality(np.empty(0, int), np.empty(0), 0.5)
    assert nothing.n == 0 and all(nothing.figure(m).value is None for m in METRICS)
    one = labelled_quality(np.array([1]), np.array([0.9]), 0.5)
    assert one.f1.value == 1.0 and one.f1.n == 1  # one right answer: F1 1, 95 % CI 0.34-1
    assert one.f1.low is not None and one.f1.low < 0.5 and one.roc_auc.low is None
    with pytest.raises(ValueError, match="0 \\(stays\\) or 1"):
        labelled_quality(np.array([2]), np.array([0.5]), 0.5)
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        labelled_quality(np.array([1]), np.array([1.5]), 0.5)
    with pytest.raises(ValueError, match="2 labels for 1 probabilities"):
        labelled_quality(np.array([1, 0]), np.array([0.5]), 0.5)
    with pytest.raises(KeyError, match="unknown metric"):
        nothing.figure("lift")


def test_sample_rule(trained_model: TrainedModel) -> None:
    y, p, threshold = _holdout(trained_model)
    rule = SampleRule()
    assert rule.shortfall(labelled_quality(y, p, threshold)) is None  # 141 churners, narrow
    few = labelled_quality(y[:150], p[:150], threshold)
    assert "at least 30 of each" in str(rule.shortfall(few))
    wide = SampleRule(min_class_rows=1, max_interval_width=0.01)
    assert "interval of roc_auc is" in str(wide.shortfall(labelled_quality(y, p, threshold)))


def test_report_of_a_labelled_file_leaves_out_the_rows_the_model_saw(
    trained_model: TrainedModel,
) -> None:
    """Training rows and holdout rows mixed: the figures are those of the holdout rows alone, and
    the report counts the training rows it left out."""
    split = trained_model.split
    table = dataset().loc[list(split.train.index[:300]) + list(split.test.index)]
    p = trained_model.bundle.pipeline.predict_proba(table.drop(columns="churn"))[:, 1]
    seen = trained_model.bundle.seen_rows
    report = labelled_report(table, p, trained_model.bundle.threshold, seen, SampleRule())
    assert report is not None
    assert (report.rows, report.labelled, report.seen) == (len(table), len(table), 300)
    y, p_test, threshold = _holdout(trained_model)
    assert report.quality == labelled_quality(y, p_test, threshold)
    # the confusion matrix of the same rows, as scikit-learn counts it (rows: truth 0/1)
    (tn, fp), (fn, tp) = confusion_matrix(y, p_test >= threshold, labels=[0, 1])
    assert report.confusion == Confusion(
        true_positives=tp, false_negatives=fn, false_positives=fp, true_negatives=tn
    )
    assert report.enough_rows and report.fingerprinted
    assert "300 rows it was trained on left out" in report.note
    assert f"{len(y)} labelled rows the model never trained on" in report.note


def test_report_without_fingerprints_without_labels_and_with_blanks(
    trained_model: TrainedModel,
) -> None:
    table = dataset().head(120).copy()
    p = np.full(len(table), 0.2)
    assert labelled_report(table.drop(columns="churn"), p, 0.5, None, SampleRule()) is None
    blind = labelled_report(table, p, 0.5, None, SampleRule())
    assert blind is not None and not blind.fingerprinted and blind.seen == 0
    assert "cannot be told" in blind.note and not blind.enough_rows
    table.loc[table.index[:20], "churn"] = None  # a file whose label column has blanks
    partial = labelled_report(table, p, 0.5, fingerprint_set(dataset().tail(5)), SampleRule())
    assert partial is not None and partial.labelled == 100 and partial.quality.n == 100
    assert "too few to judge the model" in partial.note
    del trained_model
