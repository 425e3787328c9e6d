"""core.data: loading, the fixed split, X/y separation and the file digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.data import SplitParams, file_sha256, load_dataset, split_dataset, to_xy
from core.schema import FEATURE_NAMES, NUMERIC_FEATURES, TARGET, SchemaError
from tests.factories import DATA_CSV, dataset, raw_rows, to_bigml, write_csv


def test_file_sha256_matches_hashlib_and_the_committed_checksum(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"churn" * 300_000)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    committed = (DATA_CSV.parent / "churn.csv.sha256").read_text(encoding="utf-8").split()[0]
    assert file_sha256(DATA_CSV) == committed


def test_load_dataset_returns_typed_canonical_columns() -> None:
    frame = dataset()
    assert list(frame.columns) == [*FEATURE_NAMES, TARGET]
    assert len(frame) == len(pd.read_csv(DATA_CSV))
    assert all(frame[name].dtype == np.float64 for name in NUMERIC_FEATURES)
    assert set(frame[TARGET]) == {"yes", "no"}


def test_load_dataset_accepts_the_bigml_spelling(tmp_path: Path) -> None:
    rows = raw_rows(30, seed=3)
    canonical = load_dataset(write_csv(rows, tmp_path / "modeldata.csv"))
    bigml = load_dataset(write_csv(to_bigml(rows), tmp_path / "bigml.csv"))
    pd.testing.assert_frame_equal(canonical, bigml)


def test_load_dataset_rejects_bad_rows(tmp_path: Path) -> None:
    rows = raw_rows(10).assign(total_day_calls=-1)
    with pytest.raises(SchemaError, match="total_day_calls"):
        load_dataset(write_csv(rows, tmp_path / "bad.csv"))


@pytest.mark.parametrize(("test_size", "valid_size"), [(0.2, 0.2), (0.25, 0.1), (0.1, 0.3)])
def test_split_sizes_are_disjoint_complete_and_stratified(
    test_size: float, valid_size: float
) -> None:
    frame = dataset()
    split = split_dataset(frame, SplitParams(test_size=test_size, valid_size=valid_size))
    parts = (split.train, split.valid, split.test)
    ids = [set(part.index) for part in parts]
    assert sum(len(i) for i in ids) == len(frame) == len(set().union(*ids))
    assert len(split.test) == pytest.approx(test_size * len(frame), abs=1)
    assert len(split.valid) == pytest.approx(valid_size * (1 - test_size) * len(frame), abs=1)
    overall = (frame[TARGET] == "yes").mean()
    for part in parts:
        assert (part[TARGET] == "yes").mean() == pytest.approx(overall, abs=0.01)


def test_split_is_deterministic_and_depends_on_the_seed() -> None:
    frame = dataset()
    first, again = split_dataset(frame), split_dataset(frame)
    other = split_dataset(frame, SplitParams(seed=7))
    assert first.test.index.equals(again.test.index)
    assert not first.test.index.equals(other.test.index)


def test_split_and_to_xy_do_not_mutate_their_input() -> None:
    frame = raw_rows(60)
    snapshot = frame.copy()
    split = split_dataset(frame, SplitParams(test_size=0.25, valid_size=0.25))
    x, _ = to_xy(split.train)
    x.iloc[:, 1] = -1
    split.test.iloc[:, 1] = -1
    pd.testing.assert_frame_equal(frame, snapshot)


def test_to_xy_orders_features_and_encodes_the_target() -> None:
    frame = raw_rows(20)
    x, y = to_xy(frame)
    assert list(x.columns) == list(FEATURE_NAMES)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, (frame[TARGET] == "yes").astype(int).to_numpy())
