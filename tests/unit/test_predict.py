"""core.predict: validated single-record and batch scoring, and the scorer seam."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from core.features import encode_frame
from core.pipelines import TrainedModel
from core.predict import Predictor
from core.schema import SchemaError
from core.train import thread_limit
from tests.factories import churner, customer, raw_rows, to_bigml


def test_records_and_frames_agree(trained_model: TrainedModel) -> None:
    predictor = Predictor(trained_model.bundle)
    rows = raw_rows(40, seed=5).drop(columns="churn")
    by_frame = predictor.predict_frame(rows)
    by_record = predictor.predict_records(rows.to_dict("records"))
    assert by_frame.index.equals(rows.index)
    np.testing.assert_array_equal(by_frame["probability"], [p.probability for p in by_record])
    assert list(by_frame["label"]) == [p.label for p in by_record]
    expected = np.where(by_frame["probability"] >= predictor.threshold, "yes", "no")
    assert list(by_frame["label"]) == list(expected)
    assert all(p.threshold == trained_model.bundle.threshold for p in by_record)


def test_bigml_spellings_score_like_the_canonical_ones(trained_model: TrainedModel) -> None:
    predictor = Predictor(trained_model.bundle)
    canonical = predictor.predict_records([churner()])[0]
    spelled = predictor.predict_records(
        [churner(international_plan="Yes", voice_mail_plan=False, area_code=415, state=" nj ")]
    )[0]
    assert spelled == canonical
    rows = raw_rows(20, seed=6)
    np.testing.assert_array_equal(
        predictor.predict_frame(to_bigml(rows))["probability"],
        predictor.predict_frame(rows)["probability"],
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
def test_invalid_records_are_refused(
    trained_model: TrainedModel, record: dict[str, object]
) -> None:
    with pytest.raises(ValidationError):
        Predictor(trained_model.bundle).predict_records([record])


def test_fields_that_are_not_features_are_not_scored(trained_model: TrainedModel) -> None:
    predictor = Predictor(trained_model.bundle)
    plain = predictor.predict_records([customer()])[0]
    assert predictor.predict_records([{**customer(), "tenure": 3, "Churn": "VRAI"}])[0] == plain


def test_invalid_frames_are_refused_with_the_reason(trained_model: TrainedModel) -> None:
    rows = raw_rows(5).assign(total_eve_calls=[1, 2, 3, 4, 900])
    with pytest.raises(SchemaError, match="total_eve_calls"):
        Predictor(trained_model.bundle).predict_frame(rows)


def test_empty_input_gives_no_predictions(trained_model: TrainedModel) -> None:
    assert not Predictor(trained_model.bundle).predict_records([])


def test_a_compiled_scorer_plugs_into_the_seam(trained_model: TrainedModel) -> None:
    pipeline = trained_model.bundle.pipeline
    features, model = pipeline.named_steps["features"], pipeline.named_steps["model"]

    def numpy_scorer(raw: np.ndarray) -> np.ndarray:
        with thread_limit(1):
            return np.asarray(model.predict_proba(features.transform_array(raw))[:, 1])

    reference = Predictor(trained_model.bundle)
    compiled = Predictor(trained_model.bundle, scorer=numpy_scorer, compiled="numpy")
    assert (reference.compiled, compiled.compiled) == ("sklearn", "numpy")
    assert Predictor(trained_model.bundle, compiled="onnx").compiled == "sklearn"
    rows = raw_rows(30, seed=8).drop(columns="churn")
    np.testing.assert_array_equal(
        compiled.predict_frame(rows)["probability"], reference.predict_frame(rows)["probability"]
    )
    np.testing.assert_array_equal(
        compiled.predict_proba_raw(encode_frame(rows)),
        reference.predict_proba_raw(encode_frame(rows)),
    )
