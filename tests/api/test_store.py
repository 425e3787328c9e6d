"""The API on its predictions store, on both back ends (a SQLite file, a real PostgreSQL
database): rows, filters, feedback, live metrics, nothing lost on shutdown.

The store itself (engine, migrations, writer, copy) is tested in ``tests/core/store/``.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from sqlalchemy import func, select

from core.evaluate import estimate_performance
from core.monitoring import quality
from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL
from core.settings import Settings
from core.store import PREDICTION, open_engine
from tests.api.conftest import AppFactory


@pytest.fixture()
def settings(settings: Settings, store_url: str) -> Settings:
    """The tmp settings, with the predictions in ``store_url`` (SQLite, then PostgreSQL)."""
    return settings.model_copy(update={"database_url": store_url})


def _rows(settings: Settings) -> list[tuple[str, datetime | None]]:
    """(id, shipped_at) of every stored prediction, oldest first."""
    query = select(PREDICTION.c.id, PREDICTION.c.shipped_at).order_by(PREDICTION.c.created_at)
    with open_engine(settings.db_url).connect() as conn:
        return [(row.id, row.shipped_at) for row in conn.execute(query)]


def test_every_answer_is_stored_and_nothing_lost_on_shutdown(
    make_app: AppFactory, settings: Settings
) -> None:
    """Rows in the database == answered predictions, counted after shutdown."""
    answered = 0
    with TestClient(make_app()) as client:
        for i in range(150):
            record = EXAMPLE_CHURNER if i % 2 else EXAMPLE_LOYAL
            answered += client.post("/predict", json=record).status_code == 200
        batch = client.post("/predict/batch", json=[EXAMPLE_LOYAL] * 120)
        answered += len(batch.json()["results"])
        assert client.post("/predict/explain", json=EXAMPLE_CHURNER).status_code == 200
        with client.websocket_connect("/ws/predict") as socket:
            socket.send_json([EXAMPLE_LOYAL, EXAMPLE_CHURNER])
            answered += len(socket.receive_json()["predictions"])
    with open_engine(settings.db_url).connect() as conn:
        stored = conn.execute(select(func.count()).select_from(PREDICTION)).scalar_one()
    assert stored == answered == 272  # /predict/explain explains, it stores nothing
    if settings.db_url.startswith("sqlite"):
        path = settings.db_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_list_filter_get(client: TestClient) -> None:
    """Newest first, paginated, filtered by label/version/time; one by id; 404 otherwise."""
    ids = [client.post("/predict", json=EXAMPLE_LOYAL).json()["prediction_id"] for _ in range(3)]
    churn_id = client.post("/predict", json=EXAMPLE_CHURNER).json()["prediction_id"]
    page = client.get("/predictions", params={"limit": 2}).json()
    assert page["total"] == 4 and len(page["items"]) == 2
    assert page["items"][0]["id"] == churn_id
    rest = client.get("/predictions", params={"limit": 10, "offset": 2}).json()["items"]
    assert {item["id"] for item in rest} <= set(ids)
    yes = client.get("/predictions", params={"label": "yes"}).json()
    assert yes["total"] == 1 and yes["items"][0]["features"] == EXAMPLE_CHURNER
    assert client.get("/predictions", params={"model_version": "9"}).json()["total"] == 0
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.get("/predictions", params={"since": future}).json()["total"] == 0
    assert client.get("/predictions", params={"until": future}).json()["total"] == 4
    naive = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert client.get("/predictions", params={"since": naive}).json()["total"] == 4
    # an offset other than UTC's means the same instant (PostgreSQL compares TIMESTAMPTZ)
    kolkata = (datetime.now(UTC) + timedelta(minutes=1)).astimezone(
        timezone(timedelta(hours=5, minutes=30))
    )
    assert client.get("/predictions", params={"until": kolkata.isoformat()}).json()["total"] == 4
    one = client.get(f"/predictions/{churn_id}")
    assert one.status_code == 200 and one.json()["label"] == "yes"
    created = datetime.fromisoformat(one.json()["created_at"].replace("Z", "+00:00"))
    assert created.utcoffset() == timedelta(0)  # UTC whatever the server's time zone
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=10)
    assert client.get("/predictions/nope").status_code == 404
    assert client.get("/predictions/" + "x" * 80).status_code == 404  # longer than the column
    assert client.get("/predictions", params={"limit": 0}).status_code == 422
    assert client.get("/predictions", params={"label": "maybe"}).status_code == 422


def test_feedback_and_live_metrics(client: TestClient, settings: Settings) -> None:
    """Feedback sets the true outcome; /metrics/live gives, over the last 7 days, the realized
    figures of the served labels (scikit-learn's values, with intervals that hold them) and the
    CBPE estimate of every prediction, each with its n."""
    empty = client.get("/metrics/live").json()
    assert empty["window"]["hours"] == 168 and empty["window"]["predictions"] == 0
    assert empty["realized"] is None and empty["estimated"] is None
    churner = client.post("/predict", json=EXAMPLE_CHURNER).json()["prediction_id"]
    loyal = client.post("/predict", json=EXAMPLE_LOYAL).json()["prediction_id"]
    missed = client.post("/predict", json=EXAMPLE_LOYAL).json()["prediction_id"]
    client.post("/predict", json=EXAMPLE_LOYAL)  # no feedback: estimated only
    for pid, actual in ((churner, "yes"), (loyal, "no"), (missed, "yes")):
        answer = client.post("/feedback", json={"prediction_id": pid, "actual": actual})
        assert answer.status_code == 200 and answer.json()["actual"] == actual
        assert answer.json()["feedback_at"] is not None
    again = client.post("/feedback", json={"prediction_id": missed, "actual": "yes"})
    assert again.status_code == 200  # the same outcome twice is counted once
    live = client.get("/metrics/live").json()
    assert live["window"]["predictions"] == 4 and live["window"]["labelled"] == 3
    realized = live["realized"]
    assert realized["n"] == 3 and realized["churners"] == 2
    rows = _stored(settings)
    y = [rows[pid]["actual"] == "yes" for pid in (churner, loyal, missed)]
    served = [rows[pid]["label"] == "yes" for pid in (churner, loyal, missed)]
    assert served == [True, False, False]
    assert realized["accuracy"]["value"] == pytest.approx(accuracy_score(y, served))
    assert realized["precision"]["value"] == pytest.approx(precision_score(y, served))
    assert realized["recall"]["value"] == pytest.approx(recall_score(y, served))
    assert realized["f1"]["value"] == pytest.approx(f1_score(y, served))
    for name in ("accuracy", "precision", "recall", "f1"):
        figure = realized[name]
        assert figure["low"] <= figure["value"] <= figure["high"], name
        assert figure["high"] - figure["low"] > 0.3, name  # three labels say little
    estimated = live["estimated"]
    expected = estimate_performance(
        np.array([r["probability"] for r in rows.values()]),
        np.array([r["threshold"] for r in rows.values()]),
    )
    assert estimated["n"] == 4
    assert estimated["f1"] == expected.f1.model_dump()
    assert estimated["threshold"] == pytest.approx(rows[churner]["threshold"])
    assert client.get("/metrics/live", params={"hours": 0}).status_code == 422
    assert client.get("/metrics/live", params={"hours": "week"}).status_code == 422
    unknown = client.post("/feedback", json={"prediction_id": "nope", "actual": "yes"})
    assert unknown.status_code == 404
    bad = client.post("/feedback", json={"prediction_id": churner, "actual": "maybe"})
    assert bad.status_code == 422


def test_one_label_gives_n_1_and_a_wide_interval(client: TestClient) -> None:
    """One feedback label: n = 1 and an interval that says how little it shows, never a bare 0."""
    loyal = client.post("/predict", json=EXAMPLE_LOYAL).json()["prediction_id"]
    client.post("/feedback", json={"prediction_id": loyal, "actual": "no"})
    realized = client.get("/metrics/live").json()["realized"]
    assert realized["n"] == 1 and realized["churners"] == 0
    assert realized["accuracy"]["value"] == 1.0 and realized["accuracy"]["low"] < 0.25
    assert realized["accuracy"]["n"] == 1
    for name in ("precision", "recall", "f1"):  # no churn served, none observed: 0/0
        assert realized[name] == {"value": None, "low": None, "high": None, "n": 0}, name


def test_live_realized_counts_feedback_past_the_estimate_cap(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More predictions in the window than the estimate reads: the feedback on the older ones
    still counts in the realized figures, the estimate says it used the newest only."""
    monkeypatch.setattr(quality, "MAX_ROWS", 5)
    ids = [
        client.post("/predict", json=EXAMPLE_CHURNER if i < 2 else EXAMPLE_LOYAL).json()[
            "prediction_id"
        ]
        for i in range(8)
    ]
    outcomes = {ids[0]: "yes", ids[1]: "no", ids[2]: "yes"}  # the oldest 3, none of the newest 5
    for pid, actual in outcomes.items():
        assert client.post("/feedback", json={"prediction_id": pid, "actual": actual}).is_success
    live = client.get("/metrics/live").json()
    window = live["window"]
    assert (window["predictions"], window["labelled"]) == (8, 3)
    assert (window["estimated_on"], window["limited"]) == (5, True)
    assert live["estimated"]["n"] == 5
    y, served = [True, False, True], [True, True, False]
    realized = live["realized"]
    assert realized is not None and (realized["n"], realized["churners"]) == (3, 2)
    assert realized["accuracy"]["value"] == pytest.approx(accuracy_score(y, served))
    assert realized["precision"]["value"] == pytest.approx(precision_score(y, served))
    assert realized["recall"]["value"] == pytest.approx(recall_score(y, served))
    assert realized["f1"]["value"] == pytest.approx(f1_score(y, served))


def _stored(settings: Settings) -> dict[str, dict[str, object]]:
    """Every stored prediction by id (what /metrics/live reads)."""
    with open_engine(settings.db_url).connect() as conn:
        return {row["id"]: dict(row) for row in conn.execute(select(PREDICTION)).mappings()}


def test_database_url_is_honoured(make_app: AppFactory, tmp_path: Path, settings: Settings) -> None:
    """DATABASE_URL points the store elsewhere."""
    other = tmp_path / "elsewhere" / "predictions.db"
    custom = settings.model_copy(update={"database_url": f"sqlite:///{other}"})
    with TestClient(make_app(settings=custom)) as client:
        assert client.post("/predict", json=EXAMPLE_LOYAL).status_code == 200
    with sqlite3.connect(other) as conn:
        assert conn.execute("SELECT count(*) FROM prediction").fetchone()[0] == 1


def test_ready_reports_database_failure(client: TestClient) -> None:
    """/ready is 503 not_ready when the database does not answer."""
    state = client.app.state.churnops  # type: ignore[attr-defined]
    good = state.engine
    state.engine = _broken_engine()
    try:
        answer = client.get("/ready")
        assert answer.status_code == 503 and answer.json()["status"] == "not_ready"
    finally:
        state.engine = good


def _broken_engine() -> object:
    from sqlalchemy import create_engine  # pylint: disable=import-outside-toplevel

    return create_engine("sqlite:////nonexistent-dir/never/x.db")


def test_the_api_ships_nothing_itself(
    make_app: AppFactory, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ES_URL set, predictions are stored unshipped: the shipper process sends them."""
    import core.monitoring.sink  # pylint: disable=import-outside-toplevel

    def no_sink(*args: object, **kwargs: object) -> None:
        raise AssertionError("the API must not build an event sink")

    monkeypatch.setattr(core.monitoring.sink.BulkEventSink, "__init__", no_sink)
    with_es = settings.model_copy(update={"es_url": "http://127.0.0.1:9"})
    with TestClient(make_app(settings=with_es)) as client:
        pid = client.post("/predict", json=EXAMPLE_CHURNER).json()["prediction_id"]
    assert _rows(settings) == [(pid, None)]


def test_feedback_takes_the_outcome_as_the_data_writes_it(client: TestClient) -> None:
    """``actual`` as a JSON boolean, 0/1 or the dataset's ``True.`` is read by the features'
    yes/no rule (core.schema.normalise_yes_no) and stored as ``yes``/``no``; anything else is a
    422 that names the field, and nothing is stored."""
    accepted = [(True, "yes"), (False, "no"), (1, "yes"), (0, "no"), ("True.", "yes"),
                ("NO", "no"), ("oui", "yes")]  # fmt: skip
    for sent, stored in accepted:
        pid = client.post("/predict", json=EXAMPLE_LOYAL).json()["prediction_id"]
        answer = client.post("/feedback", json={"prediction_id": pid, "actual": sent})
        assert answer.status_code == 200, (sent, answer.text)
        assert answer.json()["actual"] == stored, sent
        assert client.get(f"/predictions/{pid}").json()["actual"] == stored, sent
    for sent in ("maybe", 2, None, [], 0.5):
        pid = client.post("/predict", json=EXAMPLE_LOYAL).json()["prediction_id"]
        answer = client.post("/feedback", json={"prediction_id": pid, "actual": sent})
        assert answer.status_code == 422 and "actual" in answer.text, (sent, answer.text)
        assert client.get(f"/predictions/{pid}").json()["actual"] is None, sent
