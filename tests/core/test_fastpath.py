"""The compiled inference path (core.fastpath): exact parity with sklearn over the whole holdout."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from core import fastpath
from core.data import DatasetSplit
from core.features import build_features, encode_frame, encode_records
from core.persist import ModelBundle
from core.train import HGBParams, LogRegParams, RFParams, TrainConfig
from tests.factories import make_bundle

PARITY = 1e-6


def _parity(bundle: ModelBundle, holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    x_test, _ = holdout
    expected = bundle.pipeline.predict_proba(x_test)[:, 1]
    scorer = fastpath.RawScorer(bundle.pipeline, threshold=bundle.threshold, sklearn_from=10**9)
    raw = encode_frame(x_test)
    batch = scorer(raw)
    one_by_one = np.array([scorer.one(row) for row in raw])
    assert np.max(np.abs(batch - expected)) <= PARITY
    assert np.max(np.abs(one_by_one - expected)) <= PARITY
    threshold = bundle.threshold
    assert np.array_equal(one_by_one >= threshold, expected >= threshold)
    assert np.array_equal(batch >= threshold, expected >= threshold)


def test_hgb_parity_over_the_whole_holdout(
    bundle: ModelBundle, holdout: tuple[pd.DataFrame, np.ndarray]
) -> None:
    """The served family: same labels and |Δp| ≤ 1e-6 on every holdout row (one by one, batched)."""
    _parity(bundle, holdout)


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(family="rf", params=RFParams(n_estimators=20), cv_folds=0),
        TrainConfig(family="logreg", params=LogRegParams(), cv_folds=0),
        TrainConfig(params=HGBParams(max_iter=5, max_leaf_nodes=2), cv_folds=0),
    ],
    ids=["rf", "logreg", "hgb-stumps"],
)
def test_other_families_parity(
    split: DatasetSplit, holdout: tuple[pd.DataFrame, np.ndarray], config: TrainConfig
) -> None:
    """RandomForest and LogisticRegression compile exactly too."""
    _parity(make_bundle(split, config), holdout)


def test_missing_values_follow_the_trees(bundle: ModelBundle) -> None:
    """NaN inputs take each split's missing-value branch, like sklearn."""
    compiled = fastpath.compile_pipeline(bundle.pipeline)
    raw = encode_records([{"state": "KS", **_numbers()}])
    raw[0, 6] = np.nan  # a missing minute count
    expected = bundle.pipeline.predict_proba(raw)[:, 1]
    assert compiled.proba_one(raw[0]) == pytest.approx(expected[0], abs=PARITY)
    assert compiled.proba(np.vstack([raw, raw]))[1] == pytest.approx(expected[0], abs=PARITY)


def _numbers() -> dict[str, object]:
    from core.schema import EXAMPLE_LOYAL  # pylint: disable=import-outside-toplevel

    return {k: v for k, v in EXAMPLE_LOYAL.items() if k != "state"}


def test_raw_scorer_uses_sklearn_for_big_batches(
    bundle: ModelBundle, holdout: tuple[pd.DataFrame, np.ndarray]
) -> None:
    """Inputs from ``sklearn_from`` rows go through sklearn's Cython; both paths agree."""
    scorer = fastpath.RawScorer(bundle.pipeline, sklearn_from=10)
    raw = encode_frame(holdout[0])
    big = scorer(raw)
    small = scorer(raw[:5])
    assert np.max(np.abs(big[:5] - small)) <= PARITY
    assert scorer.one(raw[0]) == pytest.approx(big[0], abs=PARITY)


@pytest.mark.parametrize(
    "pipeline",
    [
        "not a pipeline",
        Pipeline([("model", HistGradientBoostingClassifier())]),
    ],
    ids=["not-a-pipeline", "unfitted"],
)
def test_not_compilable(pipeline: object) -> None:
    """Anything unknown raises NotCompilable (the caller then uses sklearn)."""
    with pytest.raises(fastpath.NotCompilable):
        fastpath.compile_pipeline(pipeline)


def test_unsupported_models_and_steps(bundle: ModelBundle) -> None:
    """Multiclass, native categorical and unknown estimators are refused."""
    x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, 1.0]] * 10)
    y = np.array([0, 1, 2, 1] * 10)
    with pytest.raises(fastpath.NotCompilable):
        fastpath.compile_estimator(HistGradientBoostingClassifier(max_iter=3).fit(x, y))
    categorical = HistGradientBoostingClassifier(max_iter=3, categorical_features=[0])
    with pytest.raises(fastpath.NotCompilable):
        fastpath.compile_estimator(categorical.fit(x, (y > 0).astype(int)))
    with pytest.raises(fastpath.NotCompilable):
        fastpath.compile_estimator(MinMaxScaler())
    unfitted = Pipeline([("features", build_features()), ("model", bundle.pipeline[-1])])
    with pytest.raises(fastpath.NotCompilable):
        fastpath.compile_pipeline(unfitted)
