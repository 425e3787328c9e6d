"""The predictions store on real SQLite files: rows, filters, feedback, live metrics, no loss."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from core.store import PredictionWriter, open_engine, utcnow
from core.store.engine import current_revision, head_revision
from core.store.tables import METADATA
from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL
from core.settings import Settings
from tests.api.conftest import AppFactory
from tests.conftest import ROOT


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
        assert client.post("/predict/explain", json=EXAMPLE_CHURNER).status_code == 200
        with client.websocket_connect("/ws/predict") as socket:
            socket.send_json([EXAMPLE_LOYAL, EXAMPLE_CHURNER])
            answered += len(socket.receive_json()["predictions"])
    path = _db_file(settings)
    assert _count(path) == answered == 272  # /predict/explain explains, it stores nothing
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
    engine = open_engine(f"sqlite:///{tmp_path / 'w.db'}")
    writer = PredictionWriter(engine, interval=0.01)
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
    for i in range(100):
        writer.submit(row(10_000 + i))
    writer.close()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM prediction")).scalar_one() == 2100
    assert writer.written == 2100
    engine.dispose()


def test_writer_retries_until_the_database_answers(tmp_path: Path) -> None:
    """A failing insert is retried: no row lost."""
    engine = open_engine(f"sqlite:///{tmp_path / 'r.db'}")
    calls = {"n": 0}
    writer = PredictionWriter(engine, interval=0.01)
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


# The pre-outbox schema of the prediction table (no shipped_at, no partial index).
OLD_SCHEMA = """
CREATE TABLE prediction (
    id VARCHAR(36) NOT NULL PRIMARY KEY, created_at DATETIME NOT NULL,
    request_id VARCHAR(64) NOT NULL, model_version VARCHAR(32) NOT NULL,
    probability FLOAT NOT NULL, label VARCHAR(3) NOT NULL, threshold FLOAT NOT NULL,
    latency_ms FLOAT NOT NULL, features VARCHAR NOT NULL, actual VARCHAR(3), feedback_at DATETIME
);
CREATE INDEX ix_prediction_created_at ON prediction (created_at);
INSERT INTO prediction VALUES
    ('old', '2025-01-02 03:04:05.000000', 'r', '1', 0.9, 'yes', 0.5, 1.0, '{}', NULL, NULL);
"""


def _old_database(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
    return path


def _outbox_schema(path: Path) -> tuple[list[str], list[str]]:
    """The prediction table's columns and the SQL of its unshipped index."""
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(prediction)")]
        index = conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'ix_prediction_unshipped'"
        ).fetchall()
    return columns, [row[0] for row in index]


def test_a_database_from_before_the_outbox_is_migrated(tmp_path: Path) -> None:
    """shipped_at and its partial index are added; old rows stay (unshipped); twice is fine."""
    path = _old_database(tmp_path / "old.db")
    for _ in range(2):
        open_engine.cache_clear()
        open_engine(f"sqlite:///{path}").dispose()
    columns, index = _outbox_schema(path)
    assert columns.count("shipped_at") == 1
    assert index == [
        "CREATE INDEX ix_prediction_unshipped ON prediction (created_at) WHERE shipped_at IS NULL"
    ]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id, shipped_at FROM prediction").fetchall() == [("old", None)]
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM prediction WHERE shipped_at IS NULL "
            "ORDER BY created_at LIMIT 2000"
        ).fetchall()
    assert "ix_prediction_unshipped" in str(plan)  # the shipper's query reads only that index


def test_the_migrations_build_exactly_the_tables_the_code_defines(tmp_path: Path) -> None:
    """Alembic's comparison of the migrated database with core.store's metadata finds nothing."""
    engine = open_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), METADATA)
    assert diff == []
    assert current_revision(engine) == head_revision()


OPEN_STORE = """
import sys, time
from core.store import open_engine
while time.time() < float(sys.argv[2]):
    pass
open_engine(sys.argv[1]).dispose()
print("ok")
"""


@pytest.mark.slow
@pytest.mark.parametrize("start", ["empty", "old"])
def test_processes_racing_to_open_a_store_all_start_and_migrate_once(
    tmp_path: Path, start: str
) -> None:
    """Four processes released at the same instant on a new (or pre-outbox) database: each gets
    an engine, the schema is migrated exactly once, to the newest revision."""
    path = tmp_path / "race.db"
    if start == "old":
        _old_database(path)
    go = time.time() + 3.0
    procs = [
        subprocess.Popen(  # pylint: disable=consider-using-with  # waited for below
            [sys.executable, "-c", OPEN_STORE, f"sqlite:///{path}", str(go)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, [err for _, err in outputs]
    assert sum("migrating the predictions database" in err for _, err in outputs) <= 1
    assert _outbox_schema(path)[0].count("shipped_at") == 1
    open_engine.cache_clear()
    assert current_revision(open_engine(f"sqlite:///{path}")) == head_revision()


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
    with sqlite3.connect(_db_file(settings)) as conn:
        rows = conn.execute("SELECT id, shipped_at FROM prediction").fetchall()
    assert rows == [(pid, None)]
