"""Scoring endpoints through TestClient: answers, validation, limits, content types."""

from __future__ import annotations

import io
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from api import errors, ids, tables
from core.persist import ModelBundle
from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL, FEATURE_NAMES, SPECS
from tests.api.conftest import AppFactory

PARITY = 1e-6  # the compiled path (ONNX Runtime) vs the sklearn pipeline


def test_examples_churner_and_loyal(client: TestClient, bundle: ModelBundle) -> None:
    """The documented churner is predicted to churn, the loyal customer not; fields complete."""
    churner = client.post("/predict", json=EXAMPLE_CHURNER)
    loyal = client.post("/predict", json=EXAMPLE_LOYAL)
    assert churner.status_code == loyal.status_code == 200
    body = churner.json()
    assert set(body) == {
        "prediction_id",
        "churn_probability",
        "label",
        "churn",
        "threshold",
        "model_version",
        "latency_ms",
        "passthrough",
        "warnings",
    }
    assert body["passthrough"] == {} and body["warnings"] == []
    assert body["label"] == "yes" and body["churn"] is True
    assert loyal.json()["label"] == "no" and loyal.json()["churn"] is False
    assert body["threshold"] == pytest.approx(bundle.threshold)
    assert body["model_version"] == "1"
    frame = pd.DataFrame([EXAMPLE_CHURNER])
    expected = bundle.pipeline.predict_proba(frame)[:, 1][0]
    assert body["churn_probability"] == pytest.approx(expected, abs=PARITY)


def test_minutes_and_charges_that_disagree_are_scored_and_said(client: TestClient) -> None:
    """Day charge 2.00 for 300 minutes (the data's tariff gives 51.00): scored, with a warning
    naming both fields; the documented examples (consistent pairs) carry none."""
    odd = {**EXAMPLE_LOYAL, "total_day_minutes": 300.0, "total_day_charge": 2.0}
    answer = client.post("/predict", json=odd)
    assert answer.status_code == 200
    (warning,) = answer.json()["warnings"]
    assert "total_day_charge 2.00" in warning and "total_day_minutes 300" in warning
    assert "expected 51.00" in warning
    assert client.post("/predict", json=EXAMPLE_LOYAL).json()["warnings"] == []


def test_bigml_spellings_accepted(client: TestClient) -> None:
    """Yes/No plans and a bare area code are normalised like in training data."""
    record = {**EXAMPLE_LOYAL, "international_plan": "No", "area_code": 415}
    assert client.post("/predict", json=record).status_code == 200


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ({"state": "XX"}, "state"),
        ({"account_length": -1}, "account_length"),
        ({"total_day_minutes": "many"}, "total_day_minutes"),
        ({"state": ["KS"]}, "state"),
        ({"account_length": {"v": 1}}, "account_length"),
    ],
)
def test_field_level_422(module_client: TestClient, change: dict[str, object], column: str) -> None:
    """Bad values (lists and objects too): 422 naming the field, never a traceback."""
    answer = module_client.post("/predict", json={**EXAMPLE_LOYAL, **change})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert any(item["column"] == column and item["msg"] for item in detail)
    assert "Traceback" not in answer.text


def test_missing_field_422(client: TestClient) -> None:
    """A missing field is reported by name."""
    record = {k: v for k, v in EXAMPLE_LOYAL.items() if k != "voice_mail_plan"}
    answer = client.post("/predict", json=record)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["column"] == "voice_mail_plan"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_rejected(module_client: TestClient, literal: str) -> None:
    """Non-finite numbers never reach the model."""
    body = pd.Series(EXAMPLE_LOYAL).to_json().replace('"total_day_minutes":265.1', "")
    raw = body.rstrip("}") + f',"total_day_minutes":{literal}}}'
    for path in ("/predict", "/predict/batch"):
        payload = raw if path == "/predict" else f"[{raw}]"
        answer = module_client.post(
            path, content=payload, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422, (path, answer.text)


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b"42", b'"x"'])
def test_malformed_json_422(module_client: TestClient, body: bytes) -> None:
    """Broken or wrongly shaped JSON: 422."""
    answer = module_client.post(
        "/predict", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422


def test_wrong_content_type_415(client: TestClient) -> None:
    """A form or text body where JSON is expected: 415; CSV-only routes refuse JSON."""
    text = client.post("/predict", content=b"state=KS", headers={"content-type": "text/plain"})
    assert text.status_code == 415
    form = client.post("/predict", data={"state": "KS"})
    assert form.status_code == 415
    assert client.post("/predict/validate", json=[EXAMPLE_LOYAL]).status_code == 415
    assert (
        client.post("/feedback", content=b"x", headers={"content-type": "text/csv"}).status_code
        == 415
    )


def test_body_too_large_413(make_app: AppFactory) -> None:
    """Over the byte limit: 413 from the guard (declared length or chunked)."""
    app = make_app()
    app.user_middleware.clear()
    app.add_middleware(errors.BodyGuard, max_body=1000)
    with TestClient(app) as client:
        big = [EXAMPLE_LOYAL] * 20
        assert client.post("/predict/batch", json=big).status_code == 413

        def chunks() -> object:
            for _ in range(20):
                yield b"[" + b" " * 100

        chunked = client.post(
            "/predict/batch", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413


def test_batch_too_many_rows_413(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """More rows than the batch limit: 413 (JSON and CSV)."""
    monkeypatch.setattr(tables, "MAX_ROWS", 3)
    assert client.post("/predict/batch", json=[EXAMPLE_LOYAL] * 4).status_code == 413
    csv = pd.DataFrame([EXAMPLE_LOYAL] * 4).to_csv(index=False)
    answer = client.post("/predict/batch", files={"file": ("c.csv", csv, "text/csv")})
    assert answer.status_code == 413


def test_batch_json(client: TestClient, bundle: ModelBundle) -> None:
    """A JSON list: one result per row, in order, equal to the pipeline's probabilities."""
    rows = [EXAMPLE_CHURNER, EXAMPLE_LOYAL] * 40  # 80 rows: the sklearn batch path
    answer = client.post("/predict/batch", json=rows)
    assert answer.status_code == 200
    body = answer.json()
    assert body["model_version"] == "1"
    assert [r["row"] for r in body["results"]] == list(range(80))
    expected = bundle.pipeline.predict_proba(pd.DataFrame(rows))[:, 1]
    got = np.array([r["churn_probability"] for r in body["results"]])
    assert np.max(np.abs(got - expected)) <= PARITY
    assert len({r["prediction_id"] for r in body["results"]}) == 80
    assert float(answer.headers["x-process-time-ms"]) > 0


def test_batch_row_level_422(client: TestClient) -> None:
    """Invalid rows: 422 with row, column and reason for each."""
    rows = [EXAMPLE_LOYAL, {**EXAMPLE_LOYAL, "state": "XX", "account_length": -5}, "oops"]
    answer = client.post("/predict/batch", json=rows[:2])
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert {(d["row"], d["column"]) for d in detail} == {(1, "state"), (1, "account_length")}
    assert all(d["reason"] for d in detail)
    not_objects = client.post("/predict/batch", json=rows)
    assert not_objects.status_code == 422
    assert "row(s) 2 are not JSON objects" in not_objects.json()["detail"]
    assert client.post("/predict/batch", json={"rows": []}).status_code == 422
    assert client.post("/predict/batch", json=[]).status_code == 422


def _bigml(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.rename(columns={name: spec.bigml for name, spec in SPECS.items()})
    out["Area code"] = out["Area code"].str.replace("area_code_", "").astype(int)
    for column in ("International plan", "Voice mail plan"):
        out[column] = out[column].map({"yes": "Yes", "no": "No"})
    return out


def test_batch_csv_upload_bigml_and_csv_out(
    client: TestClient, holdout: tuple[pd.DataFrame, np.ndarray], bundle: ModelBundle
) -> None:
    """A BigML-spelled CSV upload scores like the canonical rows; Accept: text/csv gives CSV."""
    frame = holdout[0].head(50).reset_index(drop=True)
    csv = _bigml(frame).to_csv(index=False)
    answer = client.post(
        "/predict/batch",
        files={"file": ("bigml.csv", csv, "text/csv")},
        headers={"accept": "text/csv"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    scored = pd.read_csv(io.StringIO(answer.text))
    assert list(scored.columns) == [
        *FEATURE_NAMES,
        "prediction_id",
        "churn_probability",
        "churn_label",
    ]
    assert answer.headers["x-read-as"] == "read as ,-separated, decimal point, UTF-8"
    expected = bundle.pipeline.predict_proba(frame)[:, 1]
    assert np.max(np.abs(scored["churn_probability"].to_numpy() - expected)) <= PARITY
    assert scored["account_length"].dtype.kind == "i"
    raw = client.post(
        "/predict/batch",
        content=frame.to_csv(index=False),
        headers={"content-type": "text/csv"},
    )
    assert raw.status_code == 200 and len(raw.json()["results"]) == 50


@pytest.mark.parametrize(
    "files",
    [
        {"file": ("e.csv", "", "text/csv")},
        {"file": ("e.csv", 'state,account_length\n"1,2', "text/csv")},
        {"other": ("e.csv", "a\n1", "text/csv")},
    ],
    ids=["empty", "broken", "no-file-field"],
)
def test_bad_uploads_422(module_client: TestClient, files: dict[str, tuple[str, str, str]]) -> None:
    """Empty, unreadable or misnamed uploads: 422."""
    assert module_client.post("/predict/batch", files=files).status_code == 422
    assert module_client.post("/predict/validate", files=files).status_code == 422


def test_validate_reports_every_issue(client: TestClient) -> None:
    """/predict/validate lists row/column/reason without scoring."""
    frame = pd.DataFrame([EXAMPLE_LOYAL, {**EXAMPLE_LOYAL, "area_code": "x"}, EXAMPLE_CHURNER])
    answer = client.post("/predict/validate", files={"file": ("v.csv", frame.to_csv(index=False))})
    assert answer.status_code == 200
    body = answer.json()
    assert body["rows"] == 3 and body["valid_rows"] == 2
    assert body["issues"] == [
        {"row": 1, "column": "area_code", "reason": body["issues"][0]["reason"]}
    ]


def test_explain_drivers(client: TestClient) -> None:
    """Drivers: one per feature that differs from the typical customer, largest effect first."""
    answer = client.post("/predict/explain", json=EXAMPLE_CHURNER)
    assert answer.status_code == 200
    body = answer.json()
    drivers = body["drivers"]
    assert drivers and body["label"] == "yes"
    sizes = [abs(d["contribution"]) for d in drivers]
    assert sizes == sorted(sizes, reverse=True)
    assert {d["feature"] for d in drivers} <= set(FEATURE_NAMES)
    assert client.post("/predict/explain", json=EXAMPLE_LOYAL).json()["drivers"] == []
    assert "prediction_id" not in body
    assert client.get("/predictions").json()["total"] == 0  # explaining stores nothing
    predicted = client.post("/predict", json=EXAMPLE_CHURNER).json()
    assert predicted["churn_probability"] == body["churn_probability"]


def test_not_ready_503(make_app: AppFactory) -> None:
    """Without a champion: /ready and /predict say 503 with the reason; /health is still ok."""

    def no_model(settings: object) -> object:
        raise RuntimeError("registry empty")

    with TestClient(make_app(loader=no_model)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not_ready" and "registry empty" in ready.json()["reason"]
        answer = client.post("/predict", json=EXAMPLE_LOYAL)
        assert answer.status_code == 503 and "registry empty" in answer.json()["detail"]
        assert client.get("/model").status_code == 503
        with client.websocket_connect("/ws/predict") as socket:
            socket.send_json(EXAMPLE_LOYAL)
            assert socket.receive_json()["type"] == "error"


def test_uuid_generation() -> None:
    """Batch and single ids are valid, unique UUIDv7 strings, in time order across calls."""
    import uuid  # pylint: disable=import-outside-toplevel

    before = time.time_ns() // 1_000_000
    made = ids.new_ids(2000) + [ids.new_id() for _ in range(2000)]
    time.sleep(0.002)
    later = ids.new_id()
    assert len(set(made)) == 4000
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 for i in made)
    stamps = [uuid.UUID(i).int >> 80 for i in made]  # the 48-bit Unix milliseconds
    assert before <= min(stamps) and stamps == sorted(stamps)
    assert later > max(made)  # a later id sorts after: appends at the primary key's right edge
    assert ids.new_ids(0) == []


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        ("POST", "/predict", {"state": "KS"}, {}, 422),  # the fast lane
        ("POST", "/retrain", {}, {"X-API-Key": "wrong"}, 401),
        ("POST", "/predict/batch", [{"state": "KS"}], {}, 422),  # a FastAPI route
        ("GET", "/predictions/not-an-id", None, {}, 404),
        ("POST", "/retrain", {}, {"X-API-Key": ""}, 401),
    ],
)
def test_every_error_answer_names_its_request(
    module_client: TestClient,
    method: str,
    path: str,
    body: object,
    headers: dict[str, str],
    status: int,
) -> None:
    """An error body always carries a request id for support: the caller's X-Request-ID, else
    a new UUIDv7 (never null), on the fast lane and on the routes alike."""
    import uuid  # pylint: disable=import-outside-toplevel

    answer = module_client.request(method, path, json=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert uuid.UUID(answer.json()["request_id"]).version == 7
    named = module_client.request(
        method, path, json=body, headers={**headers, "X-Request-ID": "r-9"}
    )
    assert named.status_code == status and named.json()["request_id"] == "r-9"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (EXAMPLE_CHURNER, 200),
        (EXAMPLE_LOYAL, 200),
        ({**EXAMPLE_LOYAL, "state": "XX"}, 422),
        ({**EXAMPLE_LOYAL, "extra": 1}, 200),
        ({"state": "KS"}, 422),
        ([EXAMPLE_LOYAL], 422),
    ],
)
def test_every_post_predict_is_answered_by_the_fast_lane(
    client: TestClient, body: object, status: int
) -> None:
    """One path: the ASGI fast lane answers POST /predict whatever the app's dependency overrides
    (the FastAPI route only documents the operation), and its answers are the documented ones."""
    from api.deps import get_model  # pylint: disable=import-outside-toplevel

    app = client.app

    async def no_model() -> object:
        raise AssertionError("the route's dependencies are never solved for POST /predict")

    app.dependency_overrides[get_model] = no_model  # type: ignore[attr-defined]
    try:
        answer = client.post("/predict", json=body, headers={"x-request-id": "r1"})
    finally:
        app.dependency_overrides.clear()  # type: ignore[attr-defined]
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    if status == 200:
        assert set(answer.json()) >= {"prediction_id", "churn_probability", "label", "threshold"}
    else:
        assert answer.json()["request_id"] == "r1" and answer.json()["detail"]
    operation = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Customer"
    }
    assert "200" in operation["responses"] and "422" in operation["responses"]
