"""Drift: PSI/KS computation, the drift job (on both database back ends, and CSV), live quality,
alerts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.monitoring import jobs
from core.monitoring.drift import compute_drift, drift_documents, psi
from core.monitoring.read import latest_drift, summary_from_db
from core.settings import Settings
from tests.monitoring.helpers import (
    prediction_rows,
    reference,
    seed_predictions,
    shifted,
    training_frame,
)


@pytest.fixture()
def settings(settings: Settings, store_url: str) -> Settings:
    """The tmp settings with the predictions (and embedded monitoring tables) in ``store_url``:
    a SQLite file, then a PostgreSQL database."""
    return settings.model_copy(update={"database_url": store_url})


def test_psi_is_zero_for_identical_and_large_for_disjoint() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0.0)
    assert psi([1.0, 0.0], [0.0, 1.0]) > 10


def test_same_distribution_does_not_drift() -> None:
    report = compute_drift(reference(), training_frame().iloc[3000:])
    assert len(report.features) == 19
    assert not report.drifted, report.drifted_features
    assert report.max_psi < 0.1
    numeric = [f for f in report.features if f.kind == "numeric"]
    assert all(f.ks_pvalue is not None and f.ks_statistic is not None for f in numeric)
    assert all(f.ks_pvalue is None for f in report.features if f.kind == "categorical")


def test_shifted_features_drift() -> None:
    report = compute_drift(reference(), shifted(training_frame().iloc[3000:]))
    assert set(report.drifted_features) >= {"total_day_minutes", "international_plan"}
    day = next(f for f in report.features if f.feature == "total_day_minutes")
    assert day.ks_statistic is not None and day.ks_statistic > 0.3 and day.psi > 0.2
    docs = drift_documents(report)
    assert len(docs) == 20 and docs[-1]["_id"] == f"{report.run_id}-overall"


def test_unseen_category_and_empty_window() -> None:
    frame = training_frame().iloc[:200].copy()
    frame["state"] = "ZZ"
    report = compute_drift(reference(), frame)
    assert "state" in report.drifted_features
    with pytest.raises(ValueError):
        compute_drift(reference(), frame.iloc[:0])


def test_drift_job_on_recent_predictions_writes_sqlite(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = shifted(training_frame().iloc[3000:3300]).reset_index(drop=True)
    seed_predictions(settings.db_url, prediction_rows(hours=3, per_hour=100, features=live))
    sent: list[str] = []
    monkeypatch.setattr(jobs, "alert", lambda _s, report: sent.append(report.run_id) or True)
    monkeypatch.setattr(jobs, "request_retrain", lambda _s: "job-1")
    options = jobs.DriftOptions(retrain=True)
    outcome = jobs.run_drift(settings, options, reference=reference(), model_version="7")
    assert outcome.stored_in == settings.db_url.split(":")[0].split("+")[0]
    assert outcome.notified and outcome.retrain_job == "job-1"
    assert sent == [outcome.report.run_id]
    assert outcome.report.current_rows == 300
    found = latest_drift(settings)
    assert found is not None and found["run_id"] == outcome.report.run_id
    assert found["drifted"] and found["model_version"] == "7"
    assert {f["feature"] for f in found["features"] if f["drifted"]} >= {"total_day_minutes"}
    quality = jobs.MonitoringStore(settings.db_url).latest_quality()
    assert quality is not None and quality["count"] == 150


def test_drift_job_on_a_csv_without_drift(settings: Settings, tmp_path: Path) -> None:
    csv = tmp_path / "new.csv"
    training_frame().iloc[3000:].to_csv(csv, index=False)
    outcome = jobs.run_drift(settings, csv=csv, reference=reference())
    assert not outcome.report.drifted and not outcome.notified and outcome.retrain_job is None
    assert outcome.report.source == "csv:new.csv"


def test_empty_window_is_an_error(settings: Settings) -> None:
    with pytest.raises(ValueError):
        jobs.run_drift(settings, reference=reference())
    assert latest_drift(settings) is None


def test_live_quality_counts_only_feedback(settings: Settings) -> None:
    assert jobs.live_quality(settings) is None
    seed_predictions(settings.db_url, prediction_rows(hours=2, per_hour=10))
    quality = jobs.live_quality(settings)
    assert quality is not None and quality["count"] == 10
    # i in 0..4: predicted yes only for i=0, actual yes only for i=0 -> all correct
    assert quality["accuracy"] == 1.0 and quality["f1"] == 1.0


def test_summary_from_the_prediction_table(settings: Settings) -> None:
    empty = summary_from_db(settings)
    assert empty["count"] == 0 and empty["by_hour"] == []
    seed_predictions(settings.db_url, prediction_rows(hours=3, per_hour=10))
    summary = summary_from_db(settings, hours=24)
    assert summary["count"] == 30
    assert summary["churn_rate"] == pytest.approx(0.2)
    assert summary["latency_ms"]["p50"] == pytest.approx(float(np.percentile(range(1, 11), 50)))
    assert len(summary["by_hour"]) == 3
    assert all(
        b["count"] == 10 and b["churn_rate"] == pytest.approx(0.2) for b in summary["by_hour"]
    )
    assert summary["by_hour"][0]["hour"] < summary["by_hour"][-1]["hour"]


def test_window_from_db_reads_features(settings: Settings) -> None:
    seed_predictions(settings.db_url, prediction_rows(hours=1, per_hour=5))
    window = jobs.window_from_db(settings, hours=2)
    assert len(window.frame) == 5 and window.source == "db"
    assert isinstance(window.frame, pd.DataFrame) and "state" in window.frame.columns


def test_request_retrain_posts_with_the_key(settings: Settings) -> None:
    # Nothing listens on this port: the function logs and returns None instead of raising.
    broken = settings.model_copy(update={"api_url": "http://127.0.0.1:9"})
    assert jobs.request_retrain(broken, timeout=1.0) is None


def test_alert_uses_core_notify(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from core import notify

    calls: list[str] = []
    monkeypatch.setattr(notify, "notify_desktop", lambda title, body: calls.append(title) or False)
    monkeypatch.setattr(notify, "send_email", lambda title, body, s: calls.append(body) or True)
    report = compute_drift(reference(), shifted(training_frame().iloc[3000:3500]))
    assert jobs.alert(settings, report)
    assert "drift" in calls[0] and "total_day_minutes" in calls[1]
