"""The batched prediction writer on both back ends: every row lands once, transient failures are
retried, what cannot be written is spooled and replayed, refused rows are kept."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.exc import OperationalError

from core.monitoring.spool import Spool
from core.store import PREDICTION, PredictionWriter, open_engine, utcnow
from core.store.writer import transient
from tests.postgres import LocalPostgres


def row(i: int = 0, **overrides: Any) -> dict[str, Any]:
    """One prediction row as the API submits it."""
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
        **overrides,
    }


def stored(url: str) -> int:
    """Rows of the prediction table."""
    with open_engine(url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(PREDICTION)).scalar_one())


def test_writer_batches_concurrent_submitters(store_url: str) -> None:
    """Many threads submitting at once: every row lands; flush waits for them; close drains."""
    engine = open_engine(store_url)
    writer = PredictionWriter(engine, interval=0.01)
    writer.start()

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
    assert stored(store_url) == 2100
    assert writer.written == 2100 and writer.spooled == writer.duplicates == 0


def test_writer_retries_until_the_database_answers(store_url: str) -> None:
    """A transient failure (locked, restarting) is retried: no row lost."""
    engine = open_engine(store_url)
    calls = {"n": 0}
    writer = PredictionWriter(engine, interval=0.01)
    original = writer._insert  # pylint: disable=protected-access

    def flaky(rows: list[dict[str, object]]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        original(rows)

    writer._insert = flaky  # type: ignore[method-assign]  # pylint: disable=protected-access
    writer.submit(row())
    writer.close()  # never started: close() runs the thread once, which drains
    assert stored(store_url) == 1
    assert calls["n"] == 2


def test_a_connection_the_server_dropped_is_replaced(pg_url: str) -> None:
    """PostgreSQL terminates the writer's pooled connection (as a restart does): the next batch
    still lands (pool_pre_ping replaces it; a failure mid-batch is transient and retried)."""
    engine = open_engine(pg_url)
    writer = PredictionWriter(engine, interval=0.01)
    writer.start()
    writer.submit(row())
    assert writer.flush(timeout=20)
    name = pg_url.rsplit("/", 1)[1]
    with create_engine(pg_url).connect() as conn:  # not from the writer's pool
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        ).scalar_one()
    assert killed >= 1
    for i in range(50):
        writer.submit(row(i))
    assert writer.flush(timeout=30)
    writer.close()
    assert stored(pg_url) == 51 and writer.spooled == 0


def test_psycopg_disconnects_are_transient(pg_url: str) -> None:
    """The errors psycopg raises on a terminated connection are the ones the writer retries."""
    engine = open_engine(pg_url)
    with engine.connect() as victim:
        pid = victim.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as killer:
            killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        try:
            victim.execute(text("SELECT 1"))
        except Exception as exc:  # pylint: disable=broad-exception-caught  # what it raises
            assert transient(exc), repr(exc)
        else:
            raise AssertionError("a terminated connection answered")


def test_rows_the_database_cannot_take_are_spooled_and_replayed(
    postgres: LocalPostgres, pg_url: str, tmp_path: Path
) -> None:
    """The server is down when the API stops: close() gives up after its timeout and keeps the
    rows in the spool; the next writer (server back) replays them, each once."""
    spool = tmp_path / "spool"
    engine = open_engine(pg_url)
    writer = PredictionWriter(engine, interval=0.01, spool_dir=spool)
    writer.start()
    for i in range(30):
        writer.submit(row(i))
    assert writer.flush(timeout=20)
    postgres.stop()
    try:
        for i in range(70):
            writer.submit(row(100 + i))
        writer.close(timeout=2.0)
        assert writer.written == 30 and writer.spooled == 70
        assert Spool(spool).pending_records() == 70
    finally:
        postgres.start()
    again = PredictionWriter(engine, interval=0.01, spool_dir=spool)
    again.start()
    again.submit(row(999))
    assert again.flush(timeout=30)
    again.close()
    assert again.written == 71 and Spool(spool).pending_records() == 0
    assert stored(pg_url) == 101


def test_a_refused_row_is_kept_and_a_duplicate_is_not_a_loss(
    store_url: str, tmp_path: Path
) -> None:
    """One row the database refuses (NULL request id), one already stored (same id): the other
    rows of the batch land, the refused one goes to rejected/, the duplicate is only counted."""
    engine = open_engine(store_url)
    spool = tmp_path / "spool"
    first = row(0)
    writer = PredictionWriter(engine, spool_dir=spool)
    writer.submit(first)
    writer.close()
    again = PredictionWriter(engine, spool_dir=spool)
    bad = row(1, request_id=None)
    for item in (row(2), dict(first), bad, row(3)):
        again.submit(item)
    again.close()
    assert stored(store_url) == 3
    assert (again.written, again.duplicates, again.spooled) == (2, 1, 1)
    kept = Spool(spool / "rejected")
    assert kept.pending_records() == 1
    (segment,) = kept.segments()
    assert json.loads(segment.read_text("utf-8"))["id"] == bad["id"]
    assert Spool(spool).pending_records() == 0  # never replayed as if it could be written


def test_a_row_is_committed_when_stored_returns(store_url: str) -> None:
    """``await stored(ticket)`` returns only once the row is in the database (group commit):
    what the API answered is already a row. 64 concurrent requests share the commits."""
    engine = open_engine(store_url)
    writer = PredictionWriter(engine, interval=5.0)  # a long sleep: stored() must wake it
    writer.start()
    missing: list[str] = []

    async def request(i: int) -> None:
        submitted = row(i)
        await writer.stored(writer.submit(submitted))
        with engine.connect() as conn:
            query = select(PREDICTION.c.id).where(PREDICTION.c.id == submitted["id"])
            if conn.execute(query).first() is None:
                missing.append(submitted["id"])

    async def requests() -> None:
        await asyncio.gather(*(request(i) for i in range(64)))

    asyncio.run(requests())
    writer.close()
    assert not missing
    assert writer.written == stored(store_url) == 64


def test_the_requests_of_one_event_loop_iteration_share_one_commit(store_url: str) -> None:
    """The writer is woken once per event-loop iteration, not once per request: 32 requests
    that reach ``stored`` in the same iteration are inserted in one transaction, however long
    the iteration takes (each request here blocks the loop 10 ms before it submits, as scoring
    would: a writer woken by the first request would commit it alone meanwhile)."""
    engine = open_engine(store_url)
    commits: list[int] = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    writer = PredictionWriter(engine, interval=60.0)  # only stored() wakes it
    writer.start()

    async def request(i: int) -> None:
        time.sleep(0.01)  # work in this iteration (blocking), not a figure
        await writer.stored(writer.submit(row(i)))

    async def requests() -> None:
        await asyncio.gather(*(request(i) for i in range(32)))

    asyncio.run(requests())
    assert len(commits) == 1 and stored(store_url) == 32
    writer.close()


def test_a_loop_closed_with_its_wake_up_pending_does_not_stall_later_requests(
    store_url: str,
) -> None:
    """An event loop that stops with the writer's wake-up callback still queued (it never runs)
    must not leave later requests waiting for the writer's interval: once the writer thread has
    woken for any reason, a request of another loop wakes it at once again."""
    writer = PredictionWriter(open_engine(store_url), interval=600.0)  # only wake-ups move it
    writer.start()
    first = asyncio.new_event_loop()

    async def leave_a_request_waiting() -> None:
        # the request runs in the next iteration and schedules the wake-up; the loop stops at
        # the end of that iteration, before the wake-up's turn
        first.create_task(writer.stored(writer.submit(row(0))))

    first.run_until_complete(leave_a_request_waiting())
    first.close()
    assert writer.flush()  # wakes the writer thread once (row 0 is stored)

    async def later_request() -> bool:
        try:  # a hang guard, not a figure: without the wake-up this waits the 600 s interval
            await asyncio.wait_for(writer.stored(writer.submit(row(1))), timeout=30)
        except TimeoutError:
            return False
        return True

    assert asyncio.run(later_request())
    assert stored(store_url) == 2
    writer.close()


def test_with_the_database_down_stored_returns_and_the_spool_is_replayed_while_running(
    postgres: LocalPostgres, pg_url: str, tmp_path: Path
) -> None:
    """PostgreSQL stopped: the requests are not held until it returns — their rows go to the
    spool on disk at once — and the running writer replays the spool once the server is back."""
    spool = tmp_path / "spool"
    writer = PredictionWriter(open_engine(pg_url), interval=0.01, spool_dir=spool)
    writer.start()

    async def requests(first: int) -> None:
        await asyncio.gather(*(writer.stored(writer.submit(row(first + i))) for i in range(20)))

    asyncio.run(requests(0))
    postgres.stop()
    try:
        asyncio.run(requests(100))
        assert writer.spooled == 20 and Spool(spool).pending_records() == 20
    finally:
        postgres.start()
    for _ in range(600):  # the back-off is at most 2 s; this is a hang guard, not a figure
        if writer.written == 40:
            break
        time.sleep(0.1)
    writer.close()
    assert writer.written == stored(pg_url) == 40 and Spool(spool).pending_records() == 0


def test_stored_returns_when_the_writer_is_not_running(store_url: str) -> None:
    """A writer never started (or closed) cannot store more: ``stored`` does not hang the
    request; ``close`` then writes the row."""
    writer = PredictionWriter(open_engine(store_url))
    asyncio.run(writer.stored(writer.submit(row())))
    writer.close()
    assert stored(store_url) == 1
