"""Quality gate: the default model reaches the shared floors on the fixed 20 % holdout."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.data import to_xy
from core.evaluate import QUALITY_THRESHOLDS, choose_threshold, evaluate
from core.pipelines import TrainedModel
from core.predict import Predictor


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
    trained_model: TrainedModel, predictor: Predictor, holdout: tuple[pd.DataFrame, np.ndarray]
) -> None:
    x_test, y_test = holdout
    frame_p = predictor.predict_frame(x_test)["probability"].to_numpy()
    record_p = np.array(
        [p.probability for p in predictor.predict_records(x_test.to_dict("records"))]
    )
    np.testing.assert_array_equal(frame_p, record_p)
    served = evaluate(y_test, frame_p, predictor.threshold)
    assert served == trained_model.bundle.metrics


def test_model_beats_the_majority_class_baseline(trained_model: TrainedModel) -> None:
    metrics = trained_model.bundle.metrics
    (tn, fp), (fn, tp) = metrics.confusion
    majority_accuracy = (tn + fp) / metrics.n
    assert metrics.accuracy > majority_accuracy
    assert tp > 0 and tp + fn > 0
