"""core.persist: skops bundles, the explicit trusted types and the LATEST pointer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from core.data import split_dataset, to_xy
from core.evaluate import evaluate
from core.persist import (
    BUNDLE_FILE,
    BUNDLE_FORMAT,
    MODEL_FILE,
    BundleMeta,
    ModelBundle,
    UntrustedModelError,
    bundle_document,
    bundle_from_document,
    dumps_pipeline,
    latest_bundle_dir,
    load_bundle,
    loads_pipeline,
    mark_latest,
    save_bundle,
)
from core.families import MODEL_FAMILIES, ModelFamily
from core.train import fit_pipeline
from tests.factories import dataset, small_config


class _Custom(StandardScaler):  # a type no allow-list knows
    """A scaler subclass defined in the tests."""


def _bundle(family: ModelFamily) -> ModelBundle:
    split = split_dataset(dataset().sample(1500, random_state=2))
    config = small_config(family)
    x, y = to_xy(split.train)
    x_test, y_test = to_xy(split.test)
    pipeline = fit_pipeline(config, x, y)
    metrics = evaluate(y_test, pipeline.predict_proba(x_test)[:, 1], 0.5)
    meta = BundleMeta(family=family, config=config, data_sha256="abc", n_train=len(x))
    return ModelBundle(pipeline=pipeline, threshold=0.5, metrics=metrics, meta=meta)


@pytest.mark.parametrize("family", MODEL_FAMILIES)
def test_bundle_round_trip_gives_identical_predictions(tmp_path: Path, family: ModelFamily) -> None:
    bundle = _bundle(family)
    directory = save_bundle(bundle, tmp_path / "m")
    assert sorted(p.name for p in directory.iterdir()) == [BUNDLE_FILE, MODEL_FILE]
    loaded = load_bundle(directory)
    x = dataset().drop(columns="churn").head(200)
    np.testing.assert_array_equal(
        loaded.pipeline.predict_proba(x), bundle.pipeline.predict_proba(x)
    )
    assert loaded.threshold == bundle.threshold
    assert loaded.metrics == bundle.metrics
    assert loaded.meta == bundle.meta


def test_bundle_json_is_plain_documented_json(tmp_path: Path) -> None:
    bundle = _bundle("logreg")
    document = json.loads((save_bundle(bundle, tmp_path) / BUNDLE_FILE).read_text("utf-8"))
    assert document == bundle_document(bundle)
    assert document["format"] == BUNDLE_FORMAT
    assert document["meta"]["config"]["family"] == "logreg"
    assert set(document["metrics"]) >= {"f1", "roc_auc", "pr_auc", "brier", "confusion"}


def test_untrusted_types_are_refused_on_save_and_on_load() -> None:
    pipeline = Pipeline([("scale", _Custom())]).fit(np.ones((3, 2)))
    with pytest.raises(UntrustedModelError, match="_Custom"):
        dumps_pipeline(pipeline)
    data = sio.dumps(pipeline)
    with pytest.raises(UntrustedModelError, match="_Custom"):
        loads_pipeline(data)


def test_only_pipelines_are_accepted() -> None:
    with pytest.raises(UntrustedModelError, match="Pipeline"):
        loads_pipeline(sio.dumps(StandardScaler()))


def test_bundle_from_document_checks_the_format() -> None:
    bundle = _bundle("logreg")
    document = {**bundle_document(bundle), "format": "other/v9"}
    with pytest.raises(ValueError, match="other/v9"):
        bundle_from_document(bundle.pipeline, document)


def test_latest_pointer(tmp_path: Path) -> None:
    models = tmp_path / "models"
    with pytest.raises(FileNotFoundError, match="make train"):
        latest_bundle_dir(models)
    for name in ("a", "b"):
        (models / name).mkdir(parents=True)
        mark_latest(models / name)
    assert latest_bundle_dir(models) == models / "b"
