"""``churnops migrate-store``: a SQLite history copied into a real PostgreSQL, verified,
idempotent, with clear one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select, update
from sqlmodel import Session

from core.monitoring.store import MonitoringStore
from core.store import (
    DRIFT,
    HOST,
    PREDICTION,
    QUALITY,
    PredictionWriter,
    RetrainJob,
    bump_generation,
    open_engine,
    set_feedback,
)
from core.store.copy import copy_store
from core.store.tables import METADATA
from tests.conftest import ROOT
from tests.core.store.test_writer import row

PREDICTIONS = 1_234  # more than one chunk of the copy would be nicer, but a few are enough


def _history(url: str) -> None:
    """A history as a SQLite deployment leaves it: predictions (some with feedback, some
    shipped), a finished retrain job, two promotions, host metrics, a drift run, live quality."""
    engine = open_engine(url)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    writer = PredictionWriter(engine)
    rows = [row(i, created_at=start + timedelta(seconds=i)) for i in range(PREDICTIONS)]
    for item in rows:
        writer.submit(item)
    writer.close()
    for i, item in enumerate(rows[:40]):
        set_feedback(engine, item["id"], "yes" if i % 2 else "no")
    with engine.begin() as conn:
        conn.execute(
            update(PREDICTION)
            .where(PREDICTION.c.created_at < start + timedelta(seconds=1000))
            .values(shipped_at=start + timedelta(days=1))
        )
    with Session(engine) as session:
        session.add(
            RetrainJob(
                id="job-1", status="succeeded", created_at=start, updated_at=start,
                progress='[{"step": "done", "fraction": 1.0}]', result='{"promoted": true}',
            )
        )  # fmt: skip
        session.commit()
    bump_generation(engine, "promote v2")
    bump_generation(engine, "rollback to v1")
    store = MonitoringStore(url)
    docs = [
        {"@timestamp": (start + timedelta(minutes=i)).isoformat(), "host": {"name": "node-1"},
         "metricset": {"name": "host"}, "system": {"cpu": {"pct": 0.25}}}
        for i in range(30)
    ] + [
        {"@timestamp": start.isoformat(), "host": {"name": "node-1"},
         "metricset": {"name": "core"}, "system": {"core": {"id": core, "pct": 0.5}}}
        for core in range(2)
    ]  # fmt: skip
    store.add_host(docs)
    store.add_drift(
        [
            {"run_id": "run-1", "computed_at": start, "feature": name, "kind": "numeric",
             "psi": 0.3, "ks_statistic": 0.2, "ks_pvalue": 0.01, "drifted": True,
             "threshold": 0.2, "reference_rows": 3000, "current_rows": 500,
             "model_version": "2", "source": "db"}
            for name in ("total_day_minutes", "customer_service_calls")
        ]
    )  # fmt: skip
    store.add_quality(
        {"at": start, "count": 40, "accuracy": 0.5, "precision": 0.5, "recall": 0.5,
         "f1": 0.5, "model_version": "2"}
    )  # fmt: skip


def _content(url: str, table: Table) -> list[tuple[Any, ...]]:
    """The rows of ``table`` without surrogate ids, sorted (comparable across back ends)."""
    engine = open_engine(url)
    skip = {"id"} if table.name in (HOST.name, DRIFT.name, QUALITY.name) else set()
    columns = [c for c in table.columns if c.name not in skip]
    with engine.connect() as conn:
        rows = conn.execute(select(*columns)).all()
    return sorted((tuple(r) for r in rows), key=repr)


@pytest.fixture()
def history(tmp_path: Path) -> str:
    """The URL of a SQLite file holding a history."""
    url = f"sqlite:///{tmp_path / 'churnops.db'}"
    _history(url)
    return url


def test_a_sqlite_history_lands_in_postgresql_whole_and_once(history: str, pg_url: str) -> None:
    """Every table, every row, every value (feedback, stamps, timestamps); a second run copies
    nothing and changes nothing."""
    first = copy_store(history, pg_url)
    assert first.verified
    counts = {t.table: (t.source, t.copied, t.present, t.target) for t in first.tables}
    assert counts == {
        "prediction": (PREDICTIONS, PREDICTIONS, PREDICTIONS, PREDICTIONS),
        "retrain_job": (1, 1, 1, 1),
        "model_generation": (1, 1, 1, 1),
        "monitoring_host": (32, 32, 32, 32),
        "monitoring_drift": (2, 2, 2, 2),
        "monitoring_quality": (1, 1, 1, 1),
    }
    for table in METADATA.sorted_tables:
        assert _content(pg_url, table) == _content(history, table), table.name
    with open_engine(pg_url).connect() as conn:
        shipped = conn.execute(
            select(PREDICTION.c.id).where(PREDICTION.c.shipped_at.is_not(None))
        ).all()
        feedback = conn.execute(select(PREDICTION.c.id).where(PREDICTION.c.actual.is_not(None)))
        assert len(shipped) == 1000 and len(feedback.all()) == 40
    second = copy_store(history, pg_url)
    assert second.verified and sum(t.copied for t in second.tables) == 0
    assert [t.target for t in second.tables] == [t.target for t in first.tables]


def test_an_interrupted_copy_is_finished_and_the_targets_own_rows_are_kept(
    history: str, pg_url: str
) -> None:
    """Half the predictions already there (a copy that stopped), the target's own host metrics
    and a feedback given after the switch: the rest is copied, nothing collides or is overwritten.
    """
    source = open_engine(history)
    with source.connect() as conn:
        half = [dict(r) for r in conn.execute(select(PREDICTION).limit(600)).mappings()]
    target = open_engine(pg_url)
    with target.begin() as conn:
        conn.execute(PREDICTION.insert(), half)
    set_feedback(target, half[0]["id"], "yes")  # given on PostgreSQL after the switch
    MonitoringStore(pg_url).add_host(
        [{"@timestamp": datetime.now(UTC).isoformat(), "host": {"name": "node-2"},
          "metricset": {"name": "host"}}]
    )  # fmt: skip
    done = copy_store(history, pg_url)
    assert done.verified
    by_table = {t.table: t for t in done.tables}
    assert by_table["prediction"].copied == PREDICTIONS - 600
    assert by_table["monitoring_host"].copied == 32 and by_table["monitoring_host"].target == 33
    with target.connect() as conn:
        actual = conn.execute(
            select(PREDICTION.c.actual).where(PREDICTION.c.id == half[0]["id"])
        ).scalar_one()
    assert actual == "yes"  # the target wins


def _churnops(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        cwd=ROOT, env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_make_migrate_store_copies_the_default_sqlite_file_into_database_url(
    tmp_path: Path, pg_url: str
) -> None:
    """The user's path: a VAR_DIR with its churnops.db, DATABASE_URL set, `make migrate-store`;
    the last line is JSON; again, nothing is copied twice."""
    var = tmp_path / "var"
    _history(f"sqlite:///{(var / 'churnops.db').resolve()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(VAR_DIR=str(var), DATABASE_URL=pg_url)
    runs = [
        subprocess.run(
            ["make", "-s", "migrate-store"], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=600, check=False,
        )  # fmt: skip
        for _ in range(2)
    ]
    for done in runs:
        assert done.returncode == 0, done.stderr[-2000:]
    first, again = (json.loads(done.stdout.strip().splitlines()[-1]) for done in runs)
    assert first["verified"] and first["copied"] == PREDICTIONS + 1 + 1 + 32 + 2 + 1
    assert again["verified"] and again["copied"] == 0
    assert "test-only-pw" not in runs[0].stdout + runs[0].stderr  # the password is not shown
    assert "prediction" in runs[0].stderr and str(PREDICTIONS) in runs[0].stderr


@pytest.mark.slow  # four runs of the real churnops command, each a new Python process
def test_cli_errors_are_one_line(tmp_path: Path, pg_url: str) -> None:
    """No such file, no target, the same database twice, a wrong password: one line each, no
    traceback, a non-zero exit."""
    missing = _churnops("migrate-store", "--from", f"sqlite:///{tmp_path / 'nope.db'}",
                        "--to", pg_url)  # fmt: skip
    no_target = _churnops("migrate-store", "--from", f"sqlite:///{tmp_path / 'x.db'}")
    history = f"sqlite:///{tmp_path / 'h.db'}"
    open_engine(history)
    same = _churnops("migrate-store", "--from", history, "--to", history)
    denied = _churnops("migrate-store", "--from", history,
                       "--to", pg_url.replace(":test-only-pw@", ":wrong@"))  # fmt: skip
    for done, says in (
        (missing, "no SQLite database at"),
        (no_target, "--to URL or DATABASE_URL"),
        (same, "the same database"),
        (denied, "password authentication failed"),
    ):
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], done.stderr[-2000:]
        assert "Traceback" not in done.stderr and "wrong" not in done.stderr
    assert not (tmp_path / "nope.db").exists()  # a missing source is not created
