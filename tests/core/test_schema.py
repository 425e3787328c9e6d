"""core.schema: normalisation of the spellings found in the wild and the one-customer model."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from core.schema import (
    TARIFFS,
    usage_warnings,
    EXAMPLE_CHURNER,
    EXAMPLE_LOYAL,
    FEATURE_NAMES,
    FEATURES,
    SPECS,
    Customer,
    customer_from_json,
    normalise_frame,
    validate_frame,
)
from tests.conftest import ROOT


def test_normalise_maps_bigml_values_and_keeps_missing_and_unknown() -> None:
    raw = pd.DataFrame(
        {
            "International plan": ["Yes", "No", None, " yes ", True],
            "Area code": [415, "408", np.nan, "510.0", "x"],
            "State": [" nj", "KS", None, 3, "zz"],
            "Churn": [True, False, "True.", "0", np.nan],
        }
    )
    out = normalise_frame(raw)
    assert list(out.columns) == ["international_plan", "area_code", "state", "churn"]
    assert out["international_plan"].tolist()[:2] == ["yes", "no"]
    assert out["international_plan"].tolist()[3:] == ["yes", "yes"]
    assert out["international_plan"].iloc[2] is None
    assert out["area_code"].tolist()[:2] == ["area_code_415", "area_code_408"]
    assert out["area_code"].tolist()[3:] == ["area_code_510", "x"]
    assert math.isnan(out["area_code"].iloc[2])
    assert out["state"].tolist() == ["NJ", "KS", None, 3, "ZZ"]
    assert out["churn"].tolist()[:4] == ["yes", "no", "yes", "no"]
    assert raw.columns[0] == "International plan"  # the input is untouched


def test_validator_reports_normalised_unknowns_per_row() -> None:
    frame = pd.DataFrame([EXAMPLE_CHURNER, {**EXAMPLE_CHURNER, "area_code": 999, "state": "zz"}])
    report = validate_frame(frame)
    assert report.valid_rows.tolist() == [True, False]
    reasons = {(i.row, i.column): i.reason for i in report.issues}
    assert reasons[(1, "area_code")].startswith("unknown value 'area_code_999'")
    assert reasons[(1, "state")].startswith("unknown value 'ZZ'")


@pytest.mark.parametrize(
    ("field", "value"),
    [("area_code", 415), ("area_code", "415"), ("international_plan", "Yes"), ("state", " nj")],
)
def test_customer_accepts_bigml_spellings(field: str, value: object) -> None:
    customer = Customer.model_validate({**EXAMPLE_CHURNER, field: value})
    assert customer.model_dump()[field] == EXAMPLE_CHURNER[field]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"total_day_minutes": float("nan")}, "total_day_minutes"),
        ({"total_day_minutes": float("inf")}, "total_day_minutes"),
        ({"account_length": -1}, "account_length"),
        ({"state": "XX"}, "state"),
        ({"state": ["KS"]}, "state"),
        ({"international_plan": "maybe"}, "international_plan"),
    ],
)
def test_customer_rejects_bad_values_naming_the_field(patch: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        Customer.model_validate({**EXAMPLE_CHURNER, **patch})
    assert [e["loc"][0] for e in error.value.errors()] == [field]


def test_customer_schema_documents_every_field_with_examples() -> None:
    properties = Customer.model_json_schema()["properties"]
    assert tuple(properties) == FEATURE_NAMES
    for name, prop in properties.items():
        assert prop["description"], name
        assert len(prop["examples"]) == 2, name


def _field_values(name: str) -> st.SearchStrategy[Any]:
    spec = SPECS[name]
    if spec.kind == "category":
        spellings = [*spec.allowed, "Yes", "TRUE", "vrai", "0", 1, 415, "415.0", " nj", "XX"]
        return st.sampled_from(spellings)
    finite = st.floats(-10, (spec.maximum or 0) + 10, allow_nan=False)
    return st.one_of(finite, st.integers(-5, 600), finite.map(str), st.just("many"))


@given(
    values=st.fixed_dictionaries({spec.name: _field_values(spec.name) for spec in FEATURES}),
    extra=st.dictionaries(st.sampled_from(["id", "Churn", "Account length"]), st.integers()),
)
def test_the_canonical_fast_path_answers_like_the_customer_model(
    values: dict[str, Any], extra: dict[str, Any]
) -> None:
    """customer_from_json == Customer.model_validate_json: same features, passthrough, errors."""
    raw = json.dumps({**values, **extra})
    try:
        want = Customer.model_validate_json(raw)
    except ValidationError as error:
        with pytest.raises(ValidationError) as caught:
            customer_from_json(raw)
        assert caught.value.errors(include_context=False) == error.errors(include_context=False)
        return
    got = customer_from_json(raw)
    assert got.features() == want.features() and got.passthrough == want.passthrough


def test_record_and_table_spellings_agree() -> None:
    """The same spellings give the same canonical values for one record and for a table."""
    renamed = ("international_plan", "area_code", "state")
    spelled = {k: v for k, v in EXAMPLE_LOYAL.items() if k not in renamed} | {
        "International plan": "VRAI",
        "Area code": 415.0,
        "STATE": " ks ",
        "voice_mail_plan": "oui",
        "Churn": "FAUX",
    }
    record = Customer.model_validate(spelled)
    table = validate_frame(pd.DataFrame([spelled]))
    assert table.ok
    typed = {
        k: int(v) if SPECS[k].kind == "integer" else v
        for k, v in table.frame.iloc[0].to_dict().items()
    }
    assert record.features() == typed
    assert record.passthrough == {"Churn": "FAUX"}
    assert (typed["international_plan"], typed["area_code"], typed["state"]) == (
        "yes",
        "area_code_415",
        "KS",
    )


def test_the_tariffs_are_those_of_the_training_data() -> None:
    """Every row of the bundled data agrees with TARIFFS (charge = round(minutes * rate, 2)), so
    no customer of the training data would be warned about."""
    frame = pd.read_csv(ROOT / "data" / "raw" / "churn.csv")
    for period, rate in TARIFFS.items():
        gap = (frame[f"total_{period}_charge"] - frame[f"total_{period}_minutes"] * rate).abs()
        assert gap.max() <= 0.005 + 1e-9, period
    assert not any(usage_warnings(row) for row in frame.head(500).to_dict(orient="records"))
    odd = {"total_night_minutes": 100.0, "total_night_charge": 9.0}
    assert usage_warnings(odd) == [
        "total_night_charge 9.00 disagrees with total_night_minutes 100 at 0.045 $/min (expected "
        "4.50): the model learned from customers whose charge is minutes times that tariff"
    ]
    assert usage_warnings({"total_night_minutes": None, "total_night_charge": 9.0}) == []
    assert usage_warnings({"total_day_minutes": -50, "total_day_charge": 39.97}) == []
