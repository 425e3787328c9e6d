"""core.schema: normalisation of the spellings found in the wild and the one-customer model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from core.schema import (
    EXAMPLE_CHURNER,
    FEATURE_NAMES,
    Customer,
    normalise_frame,
    validate_frame,
)


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
