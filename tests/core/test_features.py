"""core.features: encoding, the numpy derivation and the transformer protocol."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from core.features import (
    CATEGORY_CODES,
    CHARGE_COLUMNS,
    RAW_COLUMNS,
    ChurnFeatures,
    FeatureParams,
    build_features,
    encode_frame,
    encode_records,
    feature_plan,
)
from core.schema import US_STATES
from tests.factories import churner, customer, dataset

DEFAULT_OUT = [
    "account_length",
    "international_plan",
    "voice_mail_plan",
    "number_vmail_messages",
    "total_day_calls",
    "total_eve_calls",
    "total_night_calls",
    "total_intl_calls",
    "number_customer_service_calls",
    "total_day_usage",
    "total_eve_usage",
    "total_night_usage",
    "total_intl_usage",
    "total_charge",
]


@pytest.fixture(name="rows")
def fixture_rows() -> pd.DataFrame:
    """A validated sample of real rows (features only)."""
    return dataset().sample(40, random_state=1).drop(columns="churn")


def test_encode_frame_and_encode_records_agree(rows: pd.DataFrame) -> None:
    from_frame = encode_frame(rows)
    from_records = encode_records(rows.to_dict("records"))
    assert from_frame.dtype == np.float64 and from_frame.shape == (len(rows), len(RAW_COLUMNS))
    np.testing.assert_array_equal(from_frame, from_records)


@pytest.mark.parametrize(
    ("column", "value", "code"),
    [
        ("international_plan", "yes", 1.0),
        ("voice_mail_plan", "no", 0.0),
        ("state", US_STATES[0], 0.0),
        ("state", US_STATES[-1], float(len(US_STATES) - 1)),
        ("area_code", "area_code_510", 2.0),
    ],
)
def test_categories_are_their_index_in_the_schema(column: str, value: str, code: float) -> None:
    encoded = encode_records([customer(**{column: value})])
    assert encoded[0, RAW_COLUMNS.index(column)] == code
    assert CATEGORY_CODES[column][value] == code


def test_unknown_category_encodes_to_nan() -> None:
    record = customer(state="XX")
    assert np.isnan(encode_records([record])[0, RAW_COLUMNS.index("state")])
    frame = pd.DataFrame([record])
    assert np.isnan(encode_frame(frame)[0, RAW_COLUMNS.index("state")])


def test_default_output_order_and_total_charge(rows: pd.DataFrame) -> None:
    features = build_features().fit(rows)
    out = features.transform(rows)
    assert list(features.get_feature_names_out()) == DEFAULT_OUT
    assert out.dtype == np.float64 and out.shape == (len(rows), len(DEFAULT_OUT))
    # the reconciled charges add up to the billed total within the cent rounding of each charge
    np.testing.assert_allclose(out[:, -1], rows[list(CHARGE_COLUMNS)].sum(axis=1), atol=0.02)
    np.testing.assert_array_equal(out[:, 0], rows["account_length"].to_numpy())


def test_tariffs_are_the_charge_per_minute_of_the_training_rows() -> None:
    features = build_features().fit(dataset().drop(columns="churn"))
    np.testing.assert_allclose(features.tariffs_, [0.17, 0.085, 0.045, 0.27], atol=1e-4)


def test_each_minutes_charge_pair_is_one_usage_moved_by_both_fields() -> None:
    """Minutes and charge weigh equally; a missing one is replaced by the other."""
    features = build_features().fit(dataset().drop(columns="churn"))
    tariff = features.tariffs_[0]
    usage = DEFAULT_OUT.index("total_day_usage")
    base = customer(total_day_minutes=100.0, total_day_charge=100.0 * tariff)
    more_minutes = customer(total_day_minutes=120.0, total_day_charge=100.0 * tariff)
    more_charge = customer(total_day_minutes=100.0, total_day_charge=120.0 * tariff)
    out = features.transform(encode_records([base, more_minutes, more_charge]))
    np.testing.assert_allclose(out[:, usage], [100.0, 110.0, 110.0])
    np.testing.assert_allclose(out[:, -1] - out[0, -1], [0.0, 10 * tariff, 10 * tariff])
    raw = encode_records([base, base])
    raw[0, RAW_COLUMNS.index("total_day_minutes")] = np.nan
    raw[1, RAW_COLUMNS.index("total_day_charge")] = np.nan
    np.testing.assert_allclose(features.transform(raw)[:, usage], [100.0, 100.0])


def test_charges_alone_without_usage(rows: pd.DataFrame) -> None:
    """usage=False: the charges pass through unchanged (the pipeline before usage features)."""
    features = build_features(FeatureParams(usage=False)).fit(rows)
    out = features.transform(rows)
    assert not hasattr(features, "tariffs_")
    names = list(features.feature_names_out_)
    assert "total_day_charge" in names and "total_day_usage" not in names
    day = names.index("total_day_charge")
    np.testing.assert_array_equal(out[:, day], rows["total_day_charge"].to_numpy())
    np.testing.assert_allclose(out[:, -1], rows[list(CHARGE_COLUMNS)].sum(axis=1), rtol=1e-12)
    with pytest.raises(ValueError, match="usage=False"):
        FeatureParams(minutes=True)
    # an object saved before the usage flag existed has no `usage` attribute: charges alone
    del features.__dict__["usage"]
    np.testing.assert_array_equal(features.transform(rows), out)
    assert features.params().usage is False and features.get_params()["usage"] is False


def test_frame_array_and_transform_array_paths_are_identical(rows: pd.DataFrame) -> None:
    features = ChurnFeatures(usage_totals=True, state=True).fit(rows)
    raw = encode_frame(rows)
    np.testing.assert_array_equal(features.transform(rows), features.transform(raw))
    np.testing.assert_array_equal(features.transform(rows), features.transform_array(raw))


@pytest.mark.parametrize(
    ("params", "added"),
    [
        (FeatureParams(total_charge=False), ()),
        (
            FeatureParams(usage=False, minutes=True),
            ("total_day_minutes", "total_intl_minutes", "total_day_charge"),
        ),
        (FeatureParams(usage_totals=True), ("total_minutes", "total_calls")),
        (FeatureParams(state=True, area_code=True), ("state", "area_code")),
    ],
)
def test_feature_flags_change_the_output(
    rows: pd.DataFrame, params: FeatureParams, added: tuple[str, ...]
) -> None:
    features = build_features(params).fit(rows)
    names = list(features.feature_names_out_)
    assert features.transform(rows).shape[1] == len(names) == len(feature_plan(params))
    assert ("total_charge" in names) == params.total_charge
    assert set(added) <= set(names)
    singles = [name for name, idx in feature_plan(params) if len(idx) == 1]
    assert names[: len(singles)] == singles  # pass-throughs first, totals last


def test_transform_does_not_mutate_the_input(rows: pd.DataFrame) -> None:
    snapshot = rows.copy()
    raw = encode_frame(rows)
    raw_copy = raw.copy()
    features = build_features().fit(rows)
    features.transform(rows)
    features.transform(raw)
    pd.testing.assert_frame_equal(rows, snapshot)
    np.testing.assert_array_equal(raw, raw_copy)


def test_bad_inputs_are_refused(rows: pd.DataFrame) -> None:
    with pytest.raises(NotFittedError):
        build_features().transform(rows)
    features = build_features().fit(rows)
    with pytest.raises(ValueError, match="missing raw column"):
        features.transform(rows.drop(columns="state"))
    with pytest.raises(ValueError, match="encoded"):
        features.transform(np.zeros((2, 5)))


def test_sklearn_protocol_get_params_and_clone() -> None:
    features = build_features(FeatureParams(usage=False, minutes=True))
    assert features.get_params()["minutes"] is True
    assert features.params() == FeatureParams(usage=False, minutes=True)
    copy = clone(features)
    assert copy.get_params() == features.get_params()
    fitted = copy.fit(encode_records([churner(), customer()]))
    assert fitted.n_features_in_ == len(RAW_COLUMNS)
    assert list(fitted.feature_names_in_) == list(RAW_COLUMNS)
