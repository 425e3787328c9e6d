"""Performance estimated before labels arrive (CBPE) from the default model's probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.evaluate import reliability
from core.monitoring.simulation import cbpe_replay
from core.pipelines import TrainedModel


def _holdout_probabilities(
    trained_model: TrainedModel, holdout: tuple[pd.DataFrame, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    x_test, y_test = holdout
    return trained_model.bundle.pipeline.predict_proba(x_test)[:, 1], y_test


def test_probabilities_are_calibrated_on_the_holdout(
    trained_model: TrainedModel, holdout: tuple[pd.DataFrame, np.ndarray]
) -> None:
    """CBPE needs calibrated probabilities: the mean matches the churn rate, ECE is small."""
    p, y = _holdout_probabilities(trained_model, holdout)
    found = reliability(y, p)
    assert abs(found.mean_probability - found.churn_rate) < 0.01
    assert found.ece < 0.02
    low, high = found.bins[0], found.bins[-1]  # most rows sit in the first and last bins
    assert low.n + high.n > 0.9 * found.n
    assert abs(low.mean_probability - low.churn_rate) < 0.02
    assert abs(high.mean_probability - high.churn_rate) < 0.03


def test_cbpe_replayed_on_the_holdout_estimates_f1_within_005(
    trained_model: TrainedModel, holdout: tuple[pd.DataFrame, np.ndarray]
) -> None:
    """Windows of 500 holdout rows: the F1 estimated before labels is off by <= 0.05 on average.

    The figure for every window size is in ``make bench-drift``'s output.
    """
    p, y = _holdout_probabilities(trained_model, holdout)
    replay = cbpe_replay(p, y, trained_model.bundle.threshold, n=500, windows=100, seed=0)
    print(f"CBPE F1 MAE at 500 rows: {replay.mae:.4f} (bias {replay.bias:+.4f}, coverage "
          f"{replay.coverage:.2f}, {replay.windows} windows)")  # fmt: skip
    assert replay.windows == 100
    assert replay.mae <= 0.05
    assert replay.coverage >= 0.8  # the interval holds the realized F1 most of the time
