"""core.fingerprints: one stable hash per customer row, whatever its spelling; no pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import fingerprints
from core.schema import check_frame
from tests.factories import dataset, raw_rows, to_bigml


def test_spellings_and_sources_of_the_same_rows_agree() -> None:
    """The BigML spelling, integers written as floats and a JSON round trip give the same
    fingerprints as the canonical rows; the label column does not count."""
    raw = raw_rows(60, seed=3)
    canonical = fingerprints.row_fingerprints(check_frame(raw))
    bigml = fingerprints.row_fingerprints(check_frame(to_bigml(raw)))
    as_float = raw.astype({"account_length": "float64", "total_day_calls": "float64"})
    from_json = check_frame(as_float.drop(columns="churn").sample(frac=1.0, random_state=1))
    assert canonical.dtype == np.uint64 and canonical.shape == (60,)
    assert np.array_equal(canonical, bigml)
    assert np.array_equal(np.sort(canonical), np.sort(fingerprints.row_fingerprints(from_json)))


def test_a_changed_value_changes_the_fingerprint() -> None:
    rows = check_frame(raw_rows(20, seed=1).drop(columns="churn"))
    base = fingerprints.row_fingerprints(rows)
    for column, value in (
        ("total_day_minutes", 0.1),
        ("state", "WY"),
        ("area_code", "area_code_510"),
    ):
        changed = rows.copy()
        changed.loc[changed.index[0], column] = value
        after = fingerprints.row_fingerprints(changed)
        assert after[0] != base[0] and np.array_equal(after[1:], base[1:])


def test_the_hash_is_the_documented_one() -> None:
    """BLAKE2b-64 of the values in schema order, float64 little-endian and 16-byte ASCII: a
    value computed by hand from the first row of the bundled data."""
    import hashlib  # pylint: disable=import-outside-toplevel

    row = dataset().iloc[0]
    parts = []
    for spec in fingerprints.FEATURES:
        value = row[spec.name]
        parts.append(
            np.float64(value).astype("<f8").tobytes()
            if spec.is_numeric
            else str(value).encode("ascii").ljust(16, b"\0")
        )
    expected = int.from_bytes(hashlib.blake2b(b"".join(parts), digest_size=8).digest(), "big")
    assert int(fingerprints.row_fingerprints(dataset().head(1))[0]) == expected
    assert (
        int(fingerprints.row_fingerprints(dataset().head(1).assign(account_length=128.0))[0])
        == expected
    )


def test_every_row_of_the_bundled_data_is_told_apart() -> None:
    assert len(fingerprints.fingerprint_set(dataset())) == len(dataset())


def test_seen_mask_finds_the_training_rows() -> None:
    table = dataset()
    seen = fingerprints.fingerprint_set(table.iloc[:1000])
    mask = fingerprints.seen_mask(table.iloc[500:1500], seen)
    assert mask.tolist() == [True] * 500 + [False] * 500
    assert not fingerprints.seen_mask(table.head(5), np.empty(0, np.uint64)).any()


def test_save_and_load_round_trip_without_pickle(tmp_path: Path) -> None:
    seen = fingerprints.fingerprint_set(dataset().head(300))
    path = fingerprints.save(seen[::-1], tmp_path / fingerprints.FILE)
    assert np.array_equal(fingerprints.load(path), seen)  # sorted on the way
    assert path.stat().st_size == 128 + 8 * 300  # the .npy header, then 8 bytes a row
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle=False"):
        fingerprints.load(objects)
    np.save(tmp_path / "floats.npy", np.zeros(3))
    with pytest.raises(ValueError, match="not a fingerprints file"):
        fingerprints.load(tmp_path / "floats.npy")


def test_rows_that_cannot_be_fingerprinted_are_refused() -> None:
    rows = check_frame(raw_rows(5).drop(columns="churn"))
    with pytest.raises(ValueError, match="without total_day_minutes"):
        fingerprints.row_fingerprints(rows.drop(columns="total_day_minutes"))
    with pytest.raises(ValueError, match="missing or infinite"):
        fingerprints.row_fingerprints(rows.assign(total_day_minutes=np.nan))
    assert fingerprints.row_fingerprints(rows.head(0)).shape == (0,)
