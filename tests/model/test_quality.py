"""Quality gate: the default model reaches the shared floors on the fixed 20 % holdout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data import to_xy
from core.evaluate import QUALITY_THRESHOLDS, choose_threshold, evaluate
from core.pipelines import TrainedModel
from core.predict import ServedModel
from core.tables import PROBABILITY


def test_default_model_reaches_the_quality_floors(trained_model: TrainedModel) -> None:
    metrics = trained_model.bundle.metrics
    assert QUALITY_THRESHOLDS.failures(metrics) == []
    assert metrics.f1 >= QUALITY_THRESHOLDS.min_f1
    assert metrics.roc_auc >= QUALITY_THRESHOLDS.min_roc_auc
    assert metrics.n == len(trained_model.split.test)


def test_threshold_comes_from_validation_rows_only(trained_model: TrainedModel) -> None:
    x_valid, y_valid = to_xy(trained_model.split.valid)
    p_valid = trained_model.bundle.pipeline.predict_proba(x_valid)[:, 1]
    assert trained_model.bundle.threshold == choose_threshold(y_valid, p_valid)
    train_ids = set(trained_model.split.train.index)
    assert not train_ids & set(trained_model.split.valid.index)
    assert not train_ids & set(trained_model.split.test.index)


def test_served_predictions_reproduce_the_offline_metrics(
    trained_model: TrainedModel, served: ServedModel, holdout: tuple[pd.DataFrame, np.ndarray]
) -> None:
    """The model as served (compiled) scores the holdout as training measured it: the same
    labels, so the same confusion matrix, and every figure within the compiled path's 1e-6."""
    x_test, y_test = holdout
    frame_p = served.predict_frame(x_test)[PROBABILITY].to_numpy()
    record_p = np.array([served.score_one(record) for record in x_test.to_dict("records")])
    np.testing.assert_allclose(frame_p, record_p, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(served.labels(frame_p), served.labels(record_p))
    metrics = evaluate(y_test, frame_p, served.threshold)
    offline = trained_model.bundle.metrics
    assert metrics.confusion == offline.confusion
    assert metrics.numbers() == pytest.approx(offline.numbers(), abs=1e-6)


def test_model_beats_the_majority_class_baseline(trained_model: TrainedModel) -> None:
    metrics = trained_model.bundle.metrics
    (tn, fp), (fn, tp) = metrics.confusion
    majority_accuracy = (tn + fp) / metrics.n
    assert metrics.accuracy > majority_accuracy
    assert tp > 0 and tp + fn > 0
