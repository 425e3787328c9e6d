"""A SQLite store made by an older churnops (before the PostgreSQL back end existed, so SQLite
only): the drift table of the PSI era is migrated and its old runs still read."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import make_url

from core.monitoring import jobs
from core.monitoring.read import latest_drift
from core.settings import Settings
from tests.core.monitoring.helpers import reference, training_frame


def test_runs_stored_before_the_tests_still_read(settings: Settings) -> None:
    """A monitoring_drift table of the PSI era gains the new columns; its old rows still read."""
    path = Path(make_url(settings.db_url).database or "")
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path)) as conn, conn:  # made by an older churnops, unmigrated
        conn.execute(
            "CREATE TABLE monitoring_drift (id INTEGER PRIMARY KEY, run_id VARCHAR(64) NOT NULL,"
            " computed_at DATETIME NOT NULL, feature VARCHAR(64) NOT NULL, kind VARCHAR(16) NOT"
            " NULL, psi FLOAT NOT NULL, ks_statistic FLOAT, ks_pvalue FLOAT, drifted BOOLEAN NOT"
            " NULL, threshold FLOAT NOT NULL, reference_rows INTEGER NOT NULL, current_rows"
            " INTEGER NOT NULL, model_version VARCHAR(32), source VARCHAR(32))"
        )
        conn.execute(
            "INSERT INTO monitoring_drift (run_id, computed_at, feature, kind, psi, drifted,"
            " threshold, reference_rows, current_rows) VALUES ('old', '2025-01-01 00:00:00',"
            " 'state', 'categorical', 0.3, 1, 0.2, 4000, 85)"
        )
    old = latest_drift(settings)
    assert old is not None and old["verdict"] == "drift" and old["features"][0]["test"] is None
    csv = settings.var_dir / "new.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    training_frame().iloc[3000:3300].to_csv(csv, index=False)
    run = jobs.run_drift(settings, jobs.DriftOptions(notify=False), csv=csv, reference=reference())
    found = latest_drift(settings)
    assert found is not None and found["run_id"] == run.report.run_id
    assert found["verdict"] == "no_drift" and found["features"][0]["test"] == "ks"
