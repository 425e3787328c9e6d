"""core.pipelines: the pure fit-and-evaluate step and train_and_register with local bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.pipelines import fit_and_evaluate, train_and_register
from core.schema import SchemaError
from core.settings import Settings
from tests.factories import raw_rows, small_config, write_csv


def test_fit_and_evaluate_is_pure_and_keeps_the_holdout_apart() -> None:
    frame = raw_rows(400, seed=4)
    snapshot = frame.copy()
    trained = fit_and_evaluate(frame, small_config("hgb", cv_folds=2), data_sha256="x")
    assert frame.equals(snapshot)
    x_test, y_test = trained.holdout()
    assert len(x_test) == len(y_test) == trained.bundle.metrics.n == 80
    assert trained.bundle.meta.cv is not None and len(trained.bundle.meta.cv.scores) == 2
    assert trained.bundle.meta.data_sha256 == "x"
    assert trained.bundle.meta.feature_names_out[-1] == "total_charge"
    assert (trained.bundle.meta.n_train, trained.bundle.meta.n_valid) == (256, 64)
    assert trained.curve and trained.curve[-1].step == 20


def test_train_and_register_refuses_invalid_data(settings: Settings, tmp_path: Path) -> None:
    bad = write_csv(raw_rows(30).drop(columns="total_day_charge"), tmp_path / "bad.csv")
    with pytest.raises(SchemaError, match="total_day_charge"):
        train_and_register(settings.model_copy(update={"data_path": bad}), small_config())
    assert not (settings.var_dir / "models").exists()
