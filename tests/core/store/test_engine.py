"""Opening the predictions database on both back ends: migrations under a lock, racing
processes, the schema the code defines, clear errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from core.store import StoreError, open_engine
from core.store.engine import (
    _alembic_config,
    current_revision,
    exclusive,
    head_revision,
    store_url,
)
from core.store.tables import METADATA
from tests.conftest import ROOT
from tests.net import free_port


def _at_revision(url: str, revision: str) -> None:
    """Build the schema of an older revision (as an older churnops left it), one row in it."""
    engine = create_engine(store_url(url))
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)
        conn.execute(
            text(
                "INSERT INTO prediction (id, created_at, request_id, model_version, probability,"
                " label, threshold, latency_ms, features) VALUES ('old', :at, 'r', '1', 0.9,"
                " 'yes', 0.5, 1.0, '{}')"
            ),
            {"at": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)},
        )
    engine.dispose()


def _unshipped_index(url: str) -> str:
    """The definition of the partial index of unshipped rows."""
    engine = open_engine(url)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sql = "SELECT sql FROM sqlite_master WHERE name = 'ix_prediction_unshipped'"
        else:
            sql = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_prediction_unshipped'"
        return str(conn.execute(text(sql)).scalar_one())


def test_a_database_at_the_first_revision_is_migrated(store_url: str) -> None:
    """shipped_at and its partial index are added; old rows stay (unshipped); twice is fine."""
    _at_revision(store_url, "0001")
    for _ in range(2):
        open_engine.cache_clear()
        engine = open_engine(store_url)
    assert current_revision(engine) == head_revision()
    columns = [c["name"] for c in inspect(engine).get_columns("prediction")]
    assert columns.count("shipped_at") == 1
    assert "WHERE" in _unshipped_index(store_url).upper()
    assert "shipped_at IS NULL" in _unshipped_index(store_url).replace("(", "").replace(")", "")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, shipped_at, created_at FROM prediction")).all()
    assert [(r[0], r[1]) for r in rows] == [("old", None)]


def test_the_migrations_build_exactly_the_tables_the_code_defines(store_url: str) -> None:
    """Alembic's comparison of the migrated database with core.store's metadata finds nothing
    (on PostgreSQL: every timestamp a TIMESTAMPTZ, the partial index, the types)."""
    engine = open_engine(store_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), METADATA)
    assert diff == []
    assert current_revision(engine) == head_revision()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            kinds = conn.execute(
                text(
                    "SELECT DISTINCT data_type FROM information_schema.columns WHERE "
                    "table_schema = 'public' AND column_name IN "
                    "('created_at', 'feedback_at', 'shipped_at', 'updated_at', 'at', 'computed_at')"
                )
            ).scalars()
            assert set(kinds) == {"timestamp with time zone"}


def test_timestamps_come_back_in_utc_whatever_the_server_zone(store_url: str) -> None:
    """The test PostgreSQL runs in Asia/Kolkata: values read back are still UTC."""
    from core.store import RetrainJob  # pylint: disable=import-outside-toplevel
    from sqlmodel import Session  # pylint: disable=import-outside-toplevel

    engine = open_engine(store_url)
    at = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    with Session(engine) as session:
        session.add(RetrainJob(id="j", status="queued", created_at=at, updated_at=at))
        session.commit()
    with Session(engine) as session:
        job = session.get(RetrainJob, "j")
        assert job is not None
        assert job.created_at == at and job.created_at.utcoffset().total_seconds() == 0


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
    store_url: str, start: str
) -> None:
    """Four processes released at the same instant on a new (or first-revision) database: each
    gets an engine, the schema is migrated exactly once, to the newest revision (a file lock on
    SQLite, an advisory lock on PostgreSQL)."""
    if start == "old":
        _at_revision(store_url, "0001")
    go = time.time() + 3.0
    procs = [
        subprocess.Popen(  # pylint: disable=consider-using-with  # waited for below
            [sys.executable, "-c", OPEN_STORE, store_url, str(go)],
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
    open_engine.cache_clear()
    engine = open_engine(store_url)
    assert current_revision(engine) == head_revision()
    columns = [c["name"] for c in inspect(engine).get_columns("prediction")]
    assert columns.count("shipped_at") == 1


# The prediction table as churnops created it before the store had migrations (SQLite only).
LEGACY_SQLITE = """
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


def test_a_sqlite_file_from_before_migrations_is_adopted(tmp_path: Path) -> None:
    """Tables made table by table (no alembic_version) are kept and brought to the newest
    revision; the shipper's query reads only the partial index."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(LEGACY_SQLITE)
    url = f"sqlite:///{path}"
    engine = open_engine(url)
    assert current_revision(engine) == head_revision()
    assert _unshipped_index(url) == (
        "CREATE INDEX ix_prediction_unshipped ON prediction (created_at) WHERE shipped_at IS NULL"
    )
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id, shipped_at FROM prediction").fetchall() == [("old", None)]
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM prediction WHERE shipped_at IS NULL "
            "ORDER BY created_at LIMIT 2000"
        ).fetchall()
    assert "ix_prediction_unshipped" in str(plan)


def test_postgres_urls_get_the_shipped_driver(pg_url: str) -> None:
    """postgresql:// and postgres:// (what PostgreSQL's tools print) work: psycopg 3 is used."""
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    assert store_url(plain) == pg_url
    assert store_url(pg_url.replace("postgresql+psycopg://", "postgres://")) == pg_url
    engine = open_engine(plain)
    assert engine.dialect.driver == "psycopg"
    assert current_revision(engine) == head_revision()


def test_errors_are_one_clear_line(pg_url: str, tmp_path: Path) -> None:
    """A wrong password, a server that is not there, a URL that is not one, a driver churnops
    does not ship: each a StoreError naming the database (password hidden) and what to check."""
    wrong = pg_url.replace(":test-only-pw@", ":nope@")
    with pytest.raises(StoreError) as denied:
        open_engine(wrong)
    message = str(denied.value)
    assert "nope" not in message and "***" in message and "\n" not in message
    assert "password authentication failed" in message and "DATABASE_URL" in message

    nobody = f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/x"
    with pytest.raises(StoreError, match="cannot be opened") as down:
        open_engine(nobody)
    assert "\n" not in str(down.value)
    with pytest.raises(StoreError, match="not a database URL"):
        open_engine("churnops.db")
    with pytest.raises(StoreError, match="ships the drivers"):
        open_engine(f"mysql+nosuchdriver://u:p@127.0.0.1/{tmp_path.name}")


def test_the_password_can_come_from_a_docker_secret_file(pg_url: str, tmp_path: Path) -> None:
    """DATABASE_URL without a password + DATABASE_PASSWORD_FILE (a Docker secret): the store
    opens; the URL in the environment holds no secret."""
    from core.settings import Settings  # pylint: disable=import-outside-toplevel

    secret = tmp_path / "db_password"
    secret.write_text("test-only-pw\n", encoding="utf-8")
    bare = pg_url.replace(":test-only-pw@", "@")
    settings = Settings(_env_file=None, database_url=bare, database_password_file=secret)
    assert settings.db_url == pg_url
    assert current_revision(open_engine(settings.db_url)) == head_revision()
    assert Settings(_env_file=None, database_url=bare).db_url == bare


def test_an_exclusive_lock_has_one_holder_at_a_time(store_url: str) -> None:
    """``exclusive`` on each back end (a lock file next to SQLite, an advisory lock on
    PostgreSQL): a second holder of the same name waits, and past its timeout gets a StoreError
    naming the lock; another name is another lock; once released, the lock is free again."""
    url = store_url
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with exclusive(url, "champion"):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(60)
        with pytest.raises(StoreError, match="champion lock"):
            with exclusive(url, "champion", timeout=0.3):
                pass
        with exclusive(url, "other", timeout=30):
            pass
    finally:
        release.set()
        holder.join()
    with exclusive(url, "champion", timeout=30):
        pass
