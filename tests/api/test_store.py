"""The predictions store on real SQLite files: rows, filters, feedback, live metrics, no loss."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.db import PredictionWriter, make_engine, utcnow
from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL
from core.settings import Settings
from tests.api.conftest import AppFactory


def _db_file(settings: Settings) -> Path:
    return Path(settings.db_url.removeprefix("sqlite:///"))


def _count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM prediction").fetchone()[0])


def test_every_answer_is_stored_and_nothing_lost_on_shutdown(
    make_app: AppFactory, settings: Settings
) -> None:
    """Rows in the SQLite file (WAL mode) == answered predictions, counted after shutdown."""
    answered = 0
    with TestClient(make_app()) as client:
        for i in range(150):
            record = EXAMPLE_CHURNER if i % 2 else EXAMPLE_LOYAL
            answered += client.post("/predict", json=record).status_code == 200
        batch = client.post("/predict/batch", json=[EXAMPLE_LOYAL] * 120)
        answered += len(batch.json()["results"])
        answered += client.post("/predict/explain", json=EXAMPLE_CHURNER).status_code == 200
        with client.websocket_connect("/ws/predict") as socket:
            socket.send_json([EXAMPLE_LOYAL, EXAMPLE_CHURNER])
            answered += len(socket.receive_json()["predictions"])
    path = _db_file(settings)
    assert _count(path) == answered == 273
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
    one = client.get(f"/predictions/{churn_id}")
    assert one.status_code == 200 and one.json()["label"] == "yes"
    assert one.json()["created_at"].endswith("Z") or "+00:00" in one.json()["created_at"]
    assert client.get("/predictions/nope").status_code == 404
    assert client.get("/predictions", params={"limit": 0}).status_code == 422
    assert client.get("/predictions", params={"label": "maybe"}).status_code == 422


def test_feedback_and_live_metrics(client: TestClient) -> None:
    """Feedback sets the true outcome; /metrics/live computes accuracy, precision, recall, F1."""
    empty = client.get("/metrics/live").json()
    assert empty == {"count": 0, "accuracy": None, "precision": None, "recall": None, "f1": None}
    churner = client.post("/predict", json=EXAMPLE_CHURNER).json()["prediction_id"]
    loyal = client.post("/predict", json=EXAMPLE_LOYAL).json()["prediction_id"]
    missed = client.post("/predict", json=EXAMPLE_LOYAL).json()["prediction_id"]
    for pid, actual in ((churner, "yes"), (loyal, "no"), (missed, "yes")):
        answer = client.post("/feedback", json={"prediction_id": pid, "actual": actual})
        assert answer.status_code == 200 and answer.json()["actual"] == actual
        assert answer.json()["feedback_at"] is not None
    live = client.get("/metrics/live").json()
    assert live["count"] == 3
    assert live["accuracy"] == pytest.approx(2 / 3)
    assert live["precision"] == 1.0 and live["recall"] == 0.5
    assert live["f1"] == pytest.approx(2 / 3)
    unknown = client.post("/feedback", json={"prediction_id": "nope", "actual": "yes"})
    assert unknown.status_code == 404
    bad = client.post("/feedback", json={"prediction_id": churner, "actual": "maybe"})
    assert bad.status_code == 422


def test_writer_batches_concurrent_submitters(tmp_path: Path) -> None:
    """Many threads submitting at once: every row lands; flush waits for them; close drains."""
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    shipped: list[int] = []
    writer = PredictionWriter(
        engine, interval=0.01, on_batch=lambda rows: shipped.append(len(rows))
    )
    writer.start()

    def row(i: int) -> dict[str, object]:
        return {
            "id": str(uuid.uuid4()),
            "created_at": utcnow(),
            "request_id": "r",
            "model_version": "1",
            "probability": 0.5,
            "label": "no",
            "threshold": 0.5,
            "latency_ms": 0.1,
            "features": {"a": i},
            "actual": None,
            "feedback_at": None,
        }

    def work() -> None:
        for i in range(500):
            writer.submit(row(i))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert writer.flush(timeout=20)
    writer.submit_many([row(10_000 + i) for i in range(100)])
    writer.close()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM prediction")).scalar_one() == 2100
    assert writer.written == sum(shipped) == 2100
    engine.dispose()


def test_writer_retries_until_the_database_answers(tmp_path: Path) -> None:
    """A failing insert is retried (no row lost) and a failing sink never blocks writes."""
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    calls = {"n": 0}

    def broken_sink(rows: object) -> None:
        raise RuntimeError("sink down")

    writer = PredictionWriter(engine, interval=0.01, on_batch=broken_sink)
    original = writer._insert  # pylint: disable=protected-access

    def flaky(rows: list[dict[str, object]]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            from sqlalchemy.exc import OperationalError  # pylint: disable=C0415

            raise OperationalError("INSERT", {}, Exception("database is locked"))
        original(rows)

    writer._insert = flaky  # type: ignore[method-assign]  # pylint: disable=protected-access
    writer.submit(
        {
            "id": "x",
            "created_at": datetime.now(UTC),
            "request_id": "r",
            "model_version": "1",
            "probability": 0.5,
            "label": "no",
            "threshold": 0.5,
            "latency_ms": 0.1,
            "features": "{}",
            "actual": None,
            "feedback_at": None,
        }
    )
    writer.close()  # never started: close() drains in the caller's thread
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM prediction")).scalar_one() == 1
    assert calls["n"] == 2
    engine.dispose()


def test_database_url_is_honoured(make_app: AppFactory, tmp_path: Path, settings: Settings) -> None:
    """DATABASE_URL points the store elsewhere."""
    other = tmp_path / "elsewhere" / "predictions.db"
    custom = settings.model_copy(update={"database_url": f"sqlite:///{other}"})
    with TestClient(make_app(settings=custom)) as client:
        assert client.post("/predict", json=EXAMPLE_LOYAL).status_code == 200
    assert _count(other) == 1


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


class RecordingSink:
    """Stands in for core.monitoring's event sink."""

    def __init__(self) -> None:
        self.docs: list[tuple[str, dict[str, object]]] = []
        self.closed = False

    def submit(self, kind: str, docs: list[dict[str, object]]) -> None:
        """Record the documents."""
        self.docs += [(kind, dict(doc)) for doc in docs]

    def close(self, timeout: float = 10.0) -> None:
        """Mark closed."""
        del timeout
        self.closed = True


def test_prediction_events_go_to_the_monitoring_sink(
    make_app: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each stored batch is shipped to core.monitoring's sink (table-shaped), closed on shutdown."""
    import core.monitoring  # pylint: disable=import-outside-toplevel

    sink = RecordingSink()
    monkeypatch.setattr(core.monitoring, "get_event_sink", lambda settings: sink)
    with TestClient(make_app()) as client:
        pid = client.post("/predict", json=EXAMPLE_CHURNER).json()["prediction_id"]
        client.get("/predictions")  # flushes the writer
    assert sink.closed
    assert [(kind, doc["id"]) for kind, doc in sink.docs] == [("prediction", pid)]
    from core.monitoring.events import to_document  # pylint: disable=import-outside-toplevel

    _, document = to_document("prediction", sink.docs[0][1])
    assert document["prediction"]["id"] == pid  # type: ignore[index]
    assert document["features"] == EXAMPLE_CHURNER
