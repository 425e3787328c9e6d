"""Every input of tests/fixtures/cases/ (copied from shared/cases/) through the API, with the
behaviour its README expects; the CLI and the UI have their own test per file."""

from __future__ import annotations

import io
import json
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import API_KEY
from tests.factories import CASES

ADMIN = {"X-API-Key": API_KEY}


def _upload(client: TestClient, name: str, path: str = "/predict/batch", **kw: Any) -> Any:
    files = {"file": (name, (CASES / name).read_bytes(), "text/csv")}
    return client.post(path, files=files, **kw)


def _probabilities(answer: Any) -> list[float]:
    assert answer.status_code == 200, answer.text
    return [r["churn_probability"] for r in answer.json()["results"]]


def test_fr_excel_semicolon_decimal_comma(client: TestClient) -> None:
    """Scored like the same rows in canonical form; the detected dialect is reported."""
    answer = _upload(client, "fr_excel_semicolon_decimal_comma.csv")
    baseline = _upload(client, "bigml_5rows_baseline.csv")
    assert _probabilities(answer) == _probabilities(baseline)
    assert answer.json()["read_as"] == "read as ;-separated, decimal comma, UTF-8"
    canonical = pd.read_csv(CASES / "bigml_5rows_baseline.csv").drop(columns="Churn")
    canonical_rows = client.post("/predict/batch", json=canonical.to_dict("records"))
    assert _probabilities(canonical_rows) == _probabilities(answer)
    checked = _upload(client, "fr_excel_semicolon_decimal_comma.csv", "/predict/validate")
    assert checked.json()["valid_rows"] == 5 and checked.json()["issues"] == []
    assert checked.json()["read_as"] == "read as ;-separated, decimal comma, UTF-8"


def test_kaggle_telecoms_phone_number(client: TestClient) -> None:
    """Scored; `phone number` passed through next to each prediction and listed as a warning."""
    answer = _upload(client, "kaggle_telecoms_phone_number.csv")
    body = answer.json()
    assert len(_probabilities(answer)) == 5
    phones = pd.read_csv(CASES / "kaggle_telecoms_phone_number.csv")["phone number"].tolist()
    assert [r["passthrough"]["phone number"] for r in body["results"]] == phones
    assert body["warnings"] == ["not in the schema, passed through unchanged: 'phone number'"]
    as_csv = _upload(client, "kaggle_telecoms_phone_number.csv", headers={"accept": "text/csv"})
    scored = pd.read_csv(io.StringIO(as_csv.text))
    assert scored["phone number"].tolist() == phones
    assert scored["churn_probability"].tolist() == _probabilities(answer)
    assert json.loads(as_csv.headers["x-table-warnings"]) == body["warnings"]  # CSV answers too
    assert json.loads(answer.headers["x-table-warnings"]) == body["warnings"]


@pytest.mark.parametrize("path", ["/predict/batch", "/predict/validate", "/retrain"])
def test_duplicate_churn_columns(client: TestClient, path: str) -> None:
    """A 4xx naming both columns, never a 500 (scoring, validation and training)."""
    answer = _upload(client, "duplicate_churn_columns.csv", path, headers=ADMIN)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert [d["column"] for d in detail] == ["Churn", "churn"]
    assert "'Churn' and 'churn' are both the field 'churn'" in detail[0]["reason"]


def test_batch_value_is_list(client: TestClient) -> None:
    """A 4xx naming the field and the row."""
    body = (CASES / "batch_value_is_list.json").read_bytes()
    answer = client.post(
        "/predict/batch", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert [(d["row"], d["column"]) for d in answer.json()["detail"]] == [(0, "state")]
    assert "a list is not a single value" in answer.json()["detail"][0]["reason"]


def test_batch_df_to_dict_wrapped_in_list(client: TestClient) -> None:
    """A 4xx saying which shape is expected."""
    body = (CASES / "batch_df_to_dict_wrapped_in_list.json").read_bytes()
    answer = client.post(
        "/predict/batch", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422
    assert "to_dict() in a list" in answer.json()["detail"]
    assert "df.to_dict(orient='records')" in answer.json()["detail"]


def test_json_bigml_keys(client: TestClient) -> None:
    """/predict gives the same answer as /predict/batch (and the socket) for it."""
    record = json.loads((CASES / "json_bigml_keys.json").read_text())
    one = client.post("/predict", json=record)
    assert one.status_code == 200, one.text
    batch = client.post("/predict/batch", json=[record])
    assert one.json()["churn_probability"] == _probabilities(batch)[0]
    with client.websocket_connect("/ws/predict") as socket:
        socket.send_json(record)
        assert socket.receive_json()["churn_probability"] == one.json()["churn_probability"]


def test_bigml_5rows_baseline(client: TestClient, settings: Any) -> None:
    """Scores fine; as a training file: 422 up front (too few rows per class), no 202, no upload."""
    assert len(_probabilities(_upload(client, "bigml_5rows_baseline.csv"))) == 5
    answer = _upload(client, "bigml_5rows_baseline.csv", "/retrain", headers=ADMIN)
    assert answer.status_code == 422, answer.text
    assert "too few rows per class to train: 3 'no' and 2 'yes'" in answer.text
    uploads = settings.var_dir / "uploads"
    assert not uploads.exists() or not list(uploads.iterdir())


@pytest.mark.parametrize("path", ["/predict/batch", "/predict/validate", "/retrain"])
def test_empty_file(client: TestClient, path: str) -> None:
    """A 4xx saying the file is empty."""
    answer = _upload(client, "empty_file.csv", path, headers=ADMIN)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("the file is empty")
