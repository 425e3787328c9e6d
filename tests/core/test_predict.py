"""core.predict: the served model (validated tables, records, the label rule, the fallback)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from core.features import build_features
from core.persist import ModelBundle
from core.pipelines import TrainedModel
from core.predict import ServedModel, labels_of
from core.schema import Customer, SchemaError, predicted_churn
from core.tables import LABEL, PROBABILITY, scored_table
from tests.factories import churner, customer, raw_rows, to_bigml


@pytest.fixture(name="served", scope="module")
def fixture_served(trained_model: TrainedModel) -> ServedModel:
    return ServedModel.build(trained_model.bundle, "7", name="churn-model")


def _features(record: dict[str, object]) -> dict[str, object]:
    """What the API scores: the record validated by the Customer model."""
    return Customer.model_validate(record).features()


def test_records_and_frames_agree(served: ServedModel) -> None:
    rows = raw_rows(40, seed=5).drop(columns="churn")
    by_frame = served.predict_frame(rows)
    records = [_features(r) for r in rows.to_dict("records")]
    by_record = served.score_records(records)
    one_by_one = np.array([served.score_one(r) for r in records])
    assert by_frame.index.equals(rows.index)
    assert list(by_frame.columns) == [PROBABILITY, LABEL]
    np.testing.assert_array_equal(by_frame[PROBABILITY], by_record)
    np.testing.assert_allclose(one_by_one, by_record, rtol=0, atol=1e-6)
    expected = np.where(by_frame[PROBABILITY] >= served.threshold, "yes", "no")
    assert list(by_frame[LABEL]) == list(expected)
    assert [served.label(p) for p in one_by_one] == list(expected)


def test_the_label_rule_is_at_or_above_the_threshold() -> None:
    """A probability equal to the threshold is churn (the threshold is one of the model's
    probabilities); the scalar and the vectorised forms agree."""
    p = np.array([0.2, 0.30000000000000004, 0.3, 0.9])
    assert list(predicted_churn(p, 0.3)) == [False, True, True, True]
    assert list(labels_of(p, 0.3)) == ["no", "yes", "yes", "yes"]
    assert predicted_churn(0.3, 0.3) and not predicted_churn(0.29, 0.3)


def test_bigml_spellings_score_like_the_canonical_ones(served: ServedModel) -> None:
    canonical = served.score_one(_features(churner()))
    spelled = served.score_one(
        _features(
            churner(international_plan="Yes", voice_mail_plan=False, area_code=415, state=" nj ")
        )
    )
    assert spelled == canonical
    rows = raw_rows(20, seed=6)
    np.testing.assert_array_equal(
        served.predict_frame(to_bigml(rows))[PROBABILITY],
        served.predict_frame(rows)[PROBABILITY],
    )


@pytest.mark.parametrize(
    "record",
    [
        customer(number_customer_service_calls=-1),
        customer(total_day_charge=float("nan")),
        customer(state="XX"),
        {**customer(), "Account length": 3},
        {k: v for k, v in customer().items() if k != "state"},
    ],
    ids=["negative", "nan", "unknown-state", "duplicate-field", "missing-field"],
)
def test_invalid_records_are_refused(record: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _features(record)


def test_fields_that_are_not_features_are_not_scored(served: ServedModel) -> None:
    plain = served.score_one(_features(customer()))
    assert served.score_one(_features({**customer(), "tenure": 3, "Churn": "VRAI"})) == plain


def test_invalid_frames_are_refused_with_the_reason(served: ServedModel) -> None:
    rows = raw_rows(5).assign(total_eve_calls=[1, 2, 3, 4, 900])
    with pytest.raises(SchemaError, match="total_eve_calls"):
        served.predict_frame(rows)


def test_empty_input_gives_no_predictions(served: ServedModel) -> None:
    assert served.score_records([]).shape == (0,)
    assert served.score_frame(raw_rows(3).head(0)).shape == (0,)


def test_the_model_is_compiled_and_described(served: ServedModel) -> None:
    assert served.compiled == "onnx" and served.version == "7"
    assert served.info["compiled"] == "onnx" and served.info["name"] == "churn-model"
    assert served.info["threshold"] == served.threshold and not served.degraded


def test_a_pipeline_it_cannot_compile_is_served_by_sklearn(trained_model: TrainedModel) -> None:
    """An unknown step: the pipeline is served by sklearn itself, and says so."""
    bundle = trained_model.bundle
    odd = Pipeline([("features", build_features()), ("scale", MinMaxScaler())])
    x, y = trained_model.holdout()
    odd.steps.append(("model", bundle.pipeline.steps[-1][1]))
    odd[:-1].fit(x, y)
    fallback = ServedModel.build(
        ModelBundle(odd, bundle.threshold, bundle.metrics, bundle.meta), "8"
    )
    assert fallback.compiled == "sklearn" and fallback.info["compiled"] == "sklearn"
    rows = raw_rows(30, seed=8).drop(columns="churn")
    expected = odd.predict_proba(rows)[:, 1]
    np.testing.assert_array_equal(fallback.predict_frame(rows)[PROBABILITY], expected)
    one = fallback.score_one(_features(rows.iloc[0].to_dict()))
    assert one == pytest.approx(expected[0], abs=1e-12)


def test_scored_tables_append_the_results_by_one_vocabulary() -> None:
    inputs = pd.DataFrame({"id": [1, 2], "churn_label": ["old", "old"]})
    table = scored_table(
        inputs, np.array([0.1, 0.9]), np.array(["no", "yes"]), prediction_id=["a", "b"]
    )
    assert list(table.columns) == ["id", "churn_label (input)", "prediction_id", PROBABILITY, LABEL]
    assert list(table[LABEL]) == ["no", "yes"]
