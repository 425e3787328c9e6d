"""POST /predict/batch with a label column: the model's quality on the rows it never trained on,
how many it had seen, and the labels recorded as bulk feedback (real app, TestClient)."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from core.data import DatasetSplit, to_xy
from core.labelled import LabelledReport, labelled_quality
from core.persist import ModelBundle
from core.registry import LoadedModel
from tests.api.conftest import AppFactory, Champion
from tests.factories import bigml_like, to_bigml


def _bigml20() -> pd.DataFrame:
    """The BigML-like 20 % file, in the BigML spelling (Churn True/False)."""
    return to_bigml(bigml_like()[1])


def _seen_index(split: DatasetSplit) -> set[int]:
    return set(split.train.index) | set(split.valid.index)


def test_a_labelled_file_is_judged_on_the_rows_the_model_never_saw(
    client: TestClient, split: DatasetSplit, bundle: ModelBundle
) -> None:
    """BigML-20 scored by a model trained on the bundled data: most of its rows were training
    rows; the figures are those of the rest, from the probabilities the API returned."""
    table = bigml_like()[1]
    csv = _bigml20().to_csv(index=False)
    answer = client.post("/predict/batch", files={"file": ("bigml-20.csv", csv, "text/csv")})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    report = LabelledReport.model_validate(body["labelled"])
    seen = np.array([i in _seen_index(split) for i in table.index])
    assert (report.rows, report.labelled, report.seen) == (667, 667, int(seen.sum()))
    assert 0 < report.seen < report.rows and report.fingerprinted
    p = np.array([r["churn_probability"] for r in body["results"]])
    _, y = to_xy(table)
    assert report.quality == labelled_quality(y[~seen], p[~seen], bundle.threshold)
    assert report.quality.n == int((~seen).sum()) and report.quality.f1.low is not None
    assert f"{report.seen} rows it was trained on left out" in report.note
    assert body["feedback_recorded"] == 0
    assert body["threshold"] == bundle.threshold  # the cut behind every label of the answer
    assert {r["label"] for r in body["results"] if r["churn_probability"] >= bundle.threshold} == {
        "yes"
    }


def test_a_json_batch_with_a_churn_field_gets_the_same_report(client: TestClient) -> None:
    """The UI sends the valid rows as JSON with the label as a `churn` field: the report is the
    one a CSV upload of the same rows gets."""
    table = bigml_like()[1]
    as_json = client.post("/predict/batch", json=table.to_dict(orient="records")).json()
    files = {"file": ("bigml-20.csv", _bigml20().to_csv(index=False), "text/csv")}
    assert as_json["labelled"] == client.post("/predict/batch", files=files).json()["labelled"]
    confusion = as_json["labelled"]["confusion"]
    assert sum(confusion.values()) == as_json["labelled"]["quality"]["n"]


def test_csv_out_carries_the_same_report_in_a_header(client: TestClient) -> None:
    csv = _bigml20().to_csv(index=False)
    files = {"file": ("bigml-20.csv", csv, "text/csv")}
    as_json = client.post("/predict/batch", files=files).json()["labelled"]
    as_csv = client.post("/predict/batch", files=files, headers={"accept": "text/csv"})
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert json.loads(as_csv.headers["x-labelled-quality"]) == as_json
    assert as_csv.headers["x-feedback-recorded"] == "0"
    assert len(pd.read_csv(io.StringIO(as_csv.text))) == 667


def test_without_a_label_column_there_is_no_report(client: TestClient) -> None:
    rows = bigml_like()[1].drop(columns="churn").head(20)
    answer = client.post("/predict/batch", json=rows.to_dict(orient="records"))
    assert answer.status_code == 200
    assert answer.json()["labelled"] is None and "x-labelled-quality" not in answer.headers
    refused = client.post(
        "/predict/batch?record_feedback=true", json=rows.to_dict(orient="records")
    )
    assert refused.status_code == 422
    (item,) = refused.json()["detail"]
    assert item["column"] == "churn" and "label column" in item["reason"]


def test_record_feedback_stores_the_outcomes_with_the_predictions(client: TestClient) -> None:
    """record_feedback=true: every stored prediction of the batch has its outcome (and the time
    it was given); live metrics count them."""
    table = bigml_like()[1].head(40)
    answer = client.post(
        "/predict/batch?record_feedback=true", json=table.to_dict(orient="records")
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["feedback_recorded"] == 40 and body["labelled"]["labelled"] == 40
    for result, actual in zip(body["results"], table["churn"]):
        stored = client.get(f"/predictions/{result['prediction_id']}").json()
        assert stored["actual"] == actual and stored["feedback_at"] is not None
    realized = client.get("/metrics/live").json()["realized"]
    assert realized["n"] == 40
    correct = sum(r["label"] == a for r, a in zip(body["results"], table["churn"]))
    assert realized["accuracy"]["value"] == pytest.approx(correct / 40)


@pytest.fixture()
def blind_champion(champion: Champion, bundle: ModelBundle) -> Champion:
    """A champion trained before fingerprints were kept."""
    meta = bundle.meta.model_copy(update={"fingerprint_format": ""})
    champion.loaded = LoadedModel(replace(bundle, meta=meta), "1", {"source": "test"})
    return champion


def test_a_model_without_fingerprints_says_it_cannot_tell(
    blind_champion: Champion, make_app: AppFactory
) -> None:
    del blind_champion
    with TestClient(make_app(), raise_server_exceptions=False) as client:
        csv = _bigml20().to_csv(index=False)
        body = client.post("/predict/batch", files={"file": ("b.csv", csv, "text/csv")}).json()
    report = body["labelled"]
    assert report["fingerprinted"] is False and report["seen"] == 0
    assert report["quality"]["n"] == 667 and "cannot be told" in report["note"]
