"""The drift reference document: binning rules, round trip, and its shape on the real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.reference import (
    REFERENCE_FORMAT,
    CategoricalReference,
    NumericReference,
    bin_edges,
    bin_frequencies,
    build_reference,
    category_frequencies,
    load_reference,
)
from core.schema import CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES, check_frame
from tests.conftest import ROOT


@pytest.fixture(scope="module", name="frame")
def frame_fixture() -> pd.DataFrame:
    """The real training data, validated."""
    return check_frame(pd.read_csv(ROOT / "data/raw/churn.csv"), require_target=True)


@pytest.mark.parametrize(
    ("values", "edges", "expected"),
    [
        ([0, 1, 2, 3], [0, 2, 4], [0.5, 0.5]),
        ([4, 4], [0, 2, 4], [0.0, 1.0]),  # the last edge belongs to the last bin
        ([-5, 10], [0, 2, 4], [0.5, 0.5]),  # outside the range: clipped into the end bins
        ([np.nan, 1.0], [0, 2, 4], [1.0, 0.0]),  # missing values ignored
        ([], [0, 1], [0.0]),
    ],
)
def test_bin_frequencies_follow_the_documented_rule(
    values: list[float], edges: list[float], expected: list[float]
) -> None:
    """Bins are [a, b) with the last closed; out-of-range values count in the end bins."""
    assert bin_frequencies(values, edges) == pytest.approx(expected)


def test_bin_edges_merge_duplicates_and_handle_constants() -> None:
    """Few distinct values give fewer bins; a constant feature still gets one bin."""
    assert bin_edges(np.array([0.0] * 99 + [5.0])) == [0.0, 5.0]
    assert bin_edges(np.array([3.0, 3.0])) == [3.0, 4.0]
    edges = bin_edges(np.arange(1000, dtype=float))
    assert len(edges) == 11 and edges == sorted(edges)


def test_category_frequencies_sum_to_one() -> None:
    """Frequencies are sorted by category and ignore missing values."""
    freq = category_frequencies(pd.Series(["b", "a", "a", None]))
    assert freq == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    assert list(freq) == ["a", "b"]
    assert not category_frequencies(pd.Series([None], dtype=object))


def test_reference_covers_every_feature(frame: pd.DataFrame, tmp_path: Path) -> None:
    """Every numeric feature has a histogram summing to 1, every category its frequencies."""
    reference = build_reference(frame, data_sha256="abc")
    assert set(reference.features) == set(FEATURE_NAMES)
    assert reference.n_rows == len(frame) and reference.format == REFERENCE_FORMAT
    for name in NUMERIC_FEATURES:
        feature = reference.features[name]
        assert isinstance(feature, NumericReference)
        assert len(feature.frequencies) == len(feature.bins) - 1
        assert sum(feature.frequencies) == pytest.approx(1.0)
        assert len(feature.quantiles) == 101 and len(feature.sample) == 500
    for name in CATEGORICAL_FEATURES:
        feature = reference.features[name]
        assert isinstance(feature, CategoricalReference)
        assert sum(feature.frequencies.values()) == pytest.approx(1.0)
    assert reference.features["international_plan"].frequencies["yes"] == pytest.approx(
        (frame["international_plan"] == "yes").mean()
    )
    loaded = load_reference(reference.save(tmp_path / "sub" / "reference.json"))
    assert loaded == reference


def test_reference_rejects_foreign_documents(tmp_path: Path) -> None:
    """A JSON file of another format is refused, as is a feature without any value."""
    path = tmp_path / "other.json"
    path.write_text('{"format": "something-else"}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a churnops.reference"):
        load_reference(path)
    with pytest.raises(ValueError, match="no finite training value"):
        build_reference(pd.DataFrame({"account_length": [np.nan]}))
