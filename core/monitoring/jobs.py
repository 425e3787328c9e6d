"""The orchestration behind ``churnops monitoring drift``: load, compare, store, alert.

Pure computation lives in :mod:`core.monitoring.drift`; this module does the I/O: the window of
recent predictions (the API's ``prediction`` table) or a CSV, the champion's ``reference.json``
(through :mod:`core.registry`), the result (Elasticsearch or SQLite), the notification and the
optional retrain request to the API. With each run it records the live quality of the same moment
(:func:`core.monitoring.quality.live_quality`: realized from feedback, estimated by CBPE).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from core.monitoring.drift import ALPHA, DriftReport, compute_drift, drift_documents, feature_row
from core.monitoring.events import model_fields, utc_iso
from core.monitoring.indices import Indices
from core.monitoring.quality import LiveQuality, live_quality
from core.monitoring.read import recent_predictions
from core.monitoring.sink import get_event_sink
from core.monitoring.store import MonitoringStore
from core.reference import Reference, load_reference
from core.schema import FEATURE_NAMES
from core.tables import read_path
from core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """The current data a drift run compares with the reference."""

    frame: pd.DataFrame
    source: str
    start: datetime | None = None
    end: datetime | None = None
    model_version: str | None = None


def window_from_db(settings: Settings, hours: float = 24.0, limit: int = 5000) -> Window:
    """The raw features of the most recent predictions (at most ``limit`` within ``hours``)."""
    rows = recent_predictions(settings, hours, limit=limit, with_features=True)
    if rows.empty:
        return Window(pd.DataFrame(columns=list(FEATURE_NAMES)), "db")
    features = pd.DataFrame([json.loads(text) for text in rows["features"]])
    stamps = pd.to_datetime(rows["created_at"], utc=True)
    versions = rows["model_version"].dropna()
    return Window(
        features,
        "db",
        stamps.min().to_pydatetime(),
        stamps.max().to_pydatetime(),
        str(versions.iloc[0]) if not versions.empty else None,
    )


def window_from_csv(path: Path) -> Window:
    """The features of a table file (any format and spelling :mod:`core.tables` reads), typed;
    a bad cell is missing (``NaN``), a missing column absent.

    Raises:
        core.tables.TableError: when the file is not a readable table.
    """
    frame = read_path(path).report.frame
    return Window(frame[[c for c in FEATURE_NAMES if c in frame.columns]], f"csv:{path.name}")


def champion_reference(settings: Settings) -> tuple[Reference, str]:
    """The champion's ``reference.json`` and version, through :mod:`core.registry`.

    Raises:
        FileNotFoundError: when the champion has no reference (trained before drift monitoring).
    """
    from core import registry  # pylint: disable=import-outside-toplevel  # mlflow is heavy

    loaded = registry.load_champion(settings)
    path = loaded.metadata.get("reference_path")
    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"champion v{loaded.version} has no reference.json")
    return load_reference(Path(path)), loaded.version


def store_results(
    settings: Settings,
    report: DriftReport,
    quality: LiveQuality | None,
    indices: Indices | None = None,
) -> str:
    """Write a drift report and the live quality of the same moment (:func:`quality_document`)
    to Elasticsearch, or to the predictions database (``settings.db_url``) when ``ES_URL`` is
    unset (its ``monitoring_quality`` table keeps the realized point figures).

    Returns:
        ``"es"``, or the database's back end: ``"sqlite"`` or ``"postgresql"``.
    """
    if settings.es_url:
        sink = get_event_sink(settings, indices)
        sink.submit("drift", drift_documents(report))
        if quality is not None:
            sink.submit("quality", [quality_document(report, quality)])
        if not sink.flush(timeout=30.0):
            log.warning("drift: Elasticsearch unavailable; results wait in the spool")
        sink.close()
        return "es"
    store = MonitoringStore(settings.db_url)
    store.add_drift(
        [
            {
                "run_id": report.run_id,
                "computed_at": report.computed_at,
                **feature_row(report, f),
                "reference_rows": report.reference_rows,
                "current_rows": report.current_rows,
                "model_version": report.model_version,
                "source": report.source,
            }
            for f in report.features
        ]
    )
    if quality is not None:
        store.add_quality(_quality_row(quality))
    return store.engine.dialect.name


def quality_document(report: DriftReport, quality: LiveQuality) -> dict[str, Any]:
    """The ``churnops-quality`` document of a drift run: ``quality`` is the
    :class:`~core.monitoring.quality.LiveQuality` exactly as ``GET /metrics/live`` answers it
    (window, realized, estimated), ``drift.run_id`` the run it was taken with."""
    versions = quality.window.model_versions
    return {
        "_id": f"{report.run_id}-quality",
        "@timestamp": utc_iso(quality.window.end),
        "drift": {"run_id": report.run_id},
        "quality": quality.model_dump(mode="json"),
        "model": model_fields(versions[0] if versions else None),
    }


def _quality_row(quality: LiveQuality) -> dict[str, Any]:
    """The embedded store's row: the realized point figures (``count`` = labelled rows)."""
    realized = quality.realized
    versions = quality.window.model_versions
    return {
        "at": quality.window.end,
        "count": realized.n if realized else 0,
        **{
            name: getattr(realized, name).value if realized else None
            for name in ("accuracy", "precision", "recall", "f1")
        },
        "model_version": versions[0] if versions else None,
    }


def alert(settings: Settings, report: DriftReport) -> bool:
    """Notify (desktop + email, through :mod:`core.notify`) that features drifted."""
    from core import notify  # pylint: disable=import-outside-toplevel  # plyer is optional

    drifted = [f for f in report.features if f.drifted]
    title = f"churnops: data drift on {len(drifted)} feature(s)"
    lines = [
        f"{f.feature}: {f.test} test, adjusted p = {f.p_value_adjusted:.2g}, PSI {f.psi:.3f}"
        for f in drifted
    ]
    body = (
        "\n".join(lines) + f"\nFamily-wise false-alarm rate {report.alpha:g} over "
        f"{sum(f.test is not None for f in report.features)} features tested; "
        f"{report.current_rows} rows ({report.source}), model v{report.model_version or '?'}"
    )
    shown = notify.notify_desktop(title, body)
    mailed = notify.send_email(title, body, settings)
    return shown or mailed


def request_retrain(settings: Settings, timeout: float = 10.0) -> str | None:
    """Ask the API to retrain (``POST /retrain`` with the admin key); return the job id."""
    try:
        answer = requests.post(
            f"{settings.api_url.rstrip('/')}/retrain",
            headers={"X-API-Key": settings.require_api_key()},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        log.error("drift: retrain request failed: %s", exc)
        return None
    if answer.status_code != 202:
        log.error("drift: retrain refused: %s %s", answer.status_code, answer.text[:200])
        return None
    job_id: str = answer.json().get("job_id", "")
    return job_id


@dataclass(frozen=True)
class DriftOptions:
    """How a drift run selects data and reacts.

    Attributes:
        hours: window of recent predictions.
        limit: most recent predictions used.
        alpha: family-wise false-alarm rate of the verdict (:mod:`core.monitoring.drift`).
        notify: send a notification when the verdict is ``drift``.
        retrain: ask the API to retrain when the verdict is ``drift``.
    """

    hours: float = 24.0
    limit: int = 5000
    alpha: float = ALPHA
    notify: bool = True
    retrain: bool = False


@dataclass(frozen=True)
class DriftOutcome:
    """What a drift run did."""

    report: DriftReport
    stored_in: str
    notified: bool
    retrain_job: str | None


def run_drift(
    settings: Settings,
    options: DriftOptions | None = None,
    *,
    csv: Path | None = None,
    reference: Reference | None = None,
    model_version: str | None = None,
    indices: Indices | None = None,
) -> DriftOutcome:
    """Compare recent predictions (or ``csv``) with the champion's reference; store and alert.

    Only a ``drift`` verdict notifies or asks for a retrain; a window too small for a verdict
    (``not_enough_rows``) is stored as such and does neither.

    Raises:
        ValueError: when the window is empty.
    """
    options = options or DriftOptions()
    window = window_from_csv(csv) if csv else window_from_db(settings, options.hours, options.limit)
    if window.frame.empty:
        raise ValueError("no data to compare: no recent predictions (or an empty CSV)")
    if reference is None:
        reference, model_version = champion_reference(settings)
    report = compute_drift(reference, window.frame, options.alpha).model_copy(
        update={
            "source": window.source,
            "window_start": window.start,
            "window_end": window.end,
            "model_version": model_version or window.model_version,
        }
    )
    quality = live_quality(settings)
    stored = store_results(
        settings, report, quality if quality.window.predictions else None, indices
    )
    notified = alert(settings, report) if options.notify and report.drifted else False
    job = request_retrain(settings) if options.retrain and report.drifted else None
    return DriftOutcome(report, stored, notified, job)
