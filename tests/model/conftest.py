"""Fixtures of the model tests: the trained default model's holdout and the model as served."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.pipelines import TrainedModel
from core.predict import ServedModel


@pytest.fixture(scope="session")
def served(trained_model: TrainedModel) -> ServedModel:
    """The session's trained default model as the API and the CLI serve it (compiled)."""
    return ServedModel.build(trained_model.bundle, "test")


@pytest.fixture(scope="session")
def holdout(trained_model: TrainedModel) -> tuple[pd.DataFrame, np.ndarray]:
    """Raw holdout features and 0/1 labels of the fixed split (read-only)."""
    return trained_model.holdout()
