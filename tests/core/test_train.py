"""core.train: typed configs, the one pipeline per family, fitting and the training curve."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from threadpoolctl import threadpool_info

from core.data import split_dataset, to_xy
from core.families import MODEL_FAMILIES, ModelFamily
from core.features import ChurnFeatures
from core.train import (
    HGBParams,
    LogRegParams,
    RFParams,
    TrainConfig,
    build_pipeline,
    fit_pipeline,
    thread_limit,
    training_curve,
)
from tests.factories import dataset, small_config

MODEL_TYPES = {
    "hgb": (HGBParams, HistGradientBoostingClassifier),
    "rf": (RFParams, RandomForestClassifier),
    "logreg": (LogRegParams, LogisticRegression),
}


@pytest.fixture(name="parts", scope="module")
def fixture_parts() -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    """Raw train and validation rows of the fixed split."""
    split = split_dataset(dataset())
    return (*to_xy(split.train), *to_xy(split.valid))


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_config_defaults_to_the_family_params(family: ModelFamily) -> None:
    config = TrainConfig(family=family)
    assert isinstance(config.params, MODEL_TYPES[family][0])
    again = TrainConfig.model_validate_json(config.model_dump_json())
    assert again == config


def test_config_refuses_inconsistent_or_unknown_settings() -> None:
    with pytest.raises(ValidationError, match="params of family 'rf'"):
        TrainConfig(family="hgb", params=RFParams())
    with pytest.raises(ValidationError, match="cv_folds"):
        TrainConfig(cv_folds=1)
    with pytest.raises(ValidationError):
        TrainConfig.model_validate({"family": "hgb", "learning_rate": 0.1})
    with pytest.raises(ValidationError):
        HGBParams(learning_rate=0)


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_build_pipeline_is_features_then_model(family: ModelFamily) -> None:
    pipeline = build_pipeline(TrainConfig(family=family))
    names = [name for name, _ in pipeline.steps]
    assert names[0] == "features" and names[-1] == "model"
    assert isinstance(pipeline.named_steps["features"], ChurnFeatures)
    assert isinstance(pipeline.named_steps["model"], MODEL_TYPES[family][1])
    assert ("scale" in names) == (family == "logreg")


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_fit_pipeline_and_training_curve(
    family: ModelFamily, parts: tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]
) -> None:
    x_train, y_train, x_valid, y_valid = parts
    snapshot = x_train.copy()
    pipeline = fit_pipeline(small_config(family), x_train, y_train)
    pd.testing.assert_frame_equal(x_train, snapshot)
    proba = pipeline.predict_proba(x_valid)[:, 1]
    assert proba.shape == (len(x_valid),) and ((proba >= 0) & (proba <= 1)).all()
    curve = training_curve(pipeline, x_train, y_train, x_valid, y_valid, max_points=8)
    steps = [point.step for point in curve]
    assert steps == sorted(set(steps)) and 1 <= len(steps) <= 8
    assert all(np.isfinite(p.train_loss) and p.valid_loss > 0 for p in curve)
    model = pipeline.named_steps["model"]
    if family == "hgb":
        assert steps[-1] == model.n_iter_ and curve[-1].train_loss < curve[0].train_loss
    elif family == "rf":
        assert steps[-1] == len(model.estimators_)


def test_fit_is_reproducible_with_the_seed(
    parts: tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray],
) -> None:
    x_train, y_train, x_valid, _ = parts
    first = fit_pipeline(small_config("rf"), x_train, y_train).predict_proba(x_valid)
    again = fit_pipeline(small_config("rf"), x_train, y_train).predict_proba(x_valid)
    other = fit_pipeline(small_config("rf", seed=1), x_train, y_train).predict_proba(x_valid)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_thread_limit_applies_inside_the_block_only() -> None:
    openmp = [lib for lib in threadpool_info() if lib["user_api"] == "openmp"]
    if not openmp:
        pytest.skip("no OpenMP runtime loaded")
    with thread_limit(1):
        assert all(
            lib["num_threads"] == 1 for lib in threadpool_info() if lib["user_api"] == "openmp"
        )
    after = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "openmp"]
    assert after == [lib["num_threads"] for lib in openmp]


def test_hgb_stops_early_on_the_validation_split(
    parts: tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray],
) -> None:
    """Early stopping watches the given validation rows' log-loss; without them, max_iter trees."""
    x_train, y_train, x_valid, y_valid = parts
    params = HGBParams(max_iter=150, learning_rate=0.3, n_iter_no_change=10)
    config = TrainConfig(params=params, cv_folds=0)
    stopped = fit_pipeline(config, x_train, y_train, valid=(x_valid, y_valid))
    model = stopped.named_steps["model"]
    assert model.n_iter_ < params.max_iter
    # no improvement over the last n_iter_no_change iterations: that is why it stopped
    scores = model.validation_score_
    assert len(scores) == model.n_iter_ + 1
    assert int(np.argmax(scores)) <= model.n_iter_ - params.n_iter_no_change
    # the scores are the negative log-loss of exactly these validation rows
    proba = stopped.predict_proba(x_valid)[:, 1]
    assert -scores[-1] == pytest.approx(log_loss(y_valid, proba), rel=1e-9)
    full = fit_pipeline(config, x_train, y_train)
    assert full.named_steps["model"].n_iter_ == params.max_iter
