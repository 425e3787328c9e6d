"""Fixtures of the model tests: the trained default model's holdout and a predictor on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.pipelines import TrainedModel
from core.predict import Predictor


@pytest.fixture(scope="session")
def predictor(trained_model: TrainedModel) -> Predictor:
    """A predictor on the session's trained default model (sklearn path)."""
    return Predictor(trained_model.bundle)


@pytest.fixture(scope="session")
def holdout(trained_model: TrainedModel) -> tuple[pd.DataFrame, np.ndarray]:
    """Raw holdout features and 0/1 labels of the fixed split (read-only)."""
    return trained_model.holdout()
