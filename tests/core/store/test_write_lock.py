"""Writers of several processes on one SQLite file take turns on a kernel lock: a writer that
finds another process writing waits for its commit (it does not fail, it does not poll), and the
lock never outlives a transaction."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from core.store import PREDICTION, open_engine
from tests.conftest import ROOT
from tests.core.store.test_writer import row

HOLDER = """
import sys
from sqlalchemy import insert
from core.store import PREDICTION, open_engine, utcnow
engine = open_engine(sys.argv[1])
row = dict(id=sys.argv[2], created_at=utcnow(), request_id="r", model_version="1",
           probability=0.5, label="no", threshold=0.5, latency_ms=0.1, features="{}")
with engine.begin() as conn:
    conn.execute(insert(PREDICTION), [row])
    if len(sys.argv) > 3:
        print("holding", flush=True)
        sys.stdin.readline()  # commit when the test says so
"""


def _row(prediction_id: str) -> dict[str, object]:
    """A prediction row as the writer inserts it (features already JSON text)."""
    return row(id=prediction_id, features="{}")


def _process(url: str, prediction_id: str, hold: bool) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", HOLDER, url, prediction_id, *(["hold"] if hold else [])]
    return subprocess.Popen(  # pylint: disable=consider-using-with  # waited for by the callers
        argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _ids(url: str) -> list[str]:
    with open_engine(url).connect() as conn:
        return list(
            conn.execute(select(PREDICTION.c.id).order_by(PREDICTION.c.created_at)).scalars()
        )


def _write_without_busy_wait(url: str, prediction_id: str, errors: list[BaseException]) -> None:
    """Insert one row on a connection whose SQLite busy timeout is 0: without the write lock,
    finding another writer fails at once with "database is locked"."""
    try:
        with open_engine(url).connect() as conn:
            sqlite = conn.connection.driver_connection
            assert sqlite is not None
            sqlite.execute("PRAGMA busy_timeout=0")
            try:
                with conn.begin():
                    conn.execute(insert(PREDICTION), [_row(prediction_id)])
            finally:
                sqlite.execute("PRAGMA busy_timeout=30000")
    except BaseException as exc:  # pylint: disable=broad-exception-caught  # reported to the test
        errors.append(exc)


@pytest.mark.slow  # a second interpreter
def test_a_writer_waits_for_another_process_s_commit_instead_of_failing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    open_engine(url)
    holder = _process(url, "first", hold=True)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "holding"  # inside its write transaction
        errors: list[BaseException] = []
        waiter = threading.Thread(target=_write_without_busy_wait, args=(url, "second", errors))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive(), f"the second writer did not wait: {errors}"
        holder.stdin.write("commit\n")
        holder.stdin.flush()
        assert holder.wait(60) == 0
        waiter.join(60)
        assert not waiter.is_alive() and errors == []
    finally:
        holder.kill()
        holder.wait()
    assert _ids(url) == ["first", "second"]


def test_threads_of_one_process_share_the_lock_and_never_wait_for_themselves(
    tmp_path: Path,
) -> None:
    """Two connections of one process writing at once meet SQLite's own lock (its busy
    timeout), not a wait on their own process's lock: with a busy timeout of 0 the second one
    fails at once instead of hanging."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    engine = open_engine(url)
    errors: list[BaseException] = []
    with engine.begin() as conn:
        conn.execute(insert(PREDICTION), [_row("first")])
        other = threading.Thread(target=_write_without_busy_wait, args=(url, "second", errors))
        other.start()
        other.join(60)
        assert not other.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], OperationalError)
    assert "locked" in str(errors[0])
    assert _ids(url) == ["first"]


@pytest.mark.slow  # a second interpreter
@pytest.mark.parametrize("ending", ["rollback", "refused"])
def test_the_lock_ends_with_the_transaction(tmp_path: Path, ending: str) -> None:
    """After a rolled-back or refused write, another process writes (it would wait forever on a
    lock left held)."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    engine = open_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(PREDICTION), [_row("first")])
    if ending == "rollback":
        with engine.connect() as conn:
            conn.execute(insert(PREDICTION), [_row("undone")])
            conn.rollback()
    else:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(insert(PREDICTION), [_row("first")])
    with engine.connect() as conn:  # the pool's connection stays open, its lock released
        assert conn.execute(select(func.count()).select_from(PREDICTION)).scalar_one() == 1
        writer = _process(url, "second", hold=False)
        assert writer.wait(120) == 0
    assert _ids(url) == ["first", "second"]
