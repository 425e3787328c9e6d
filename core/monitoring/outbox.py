"""The prediction outbox: ship the API's ``prediction`` rows to Elasticsearch, from another process.

The API stores every answered prediction in its ``prediction`` table and ships nothing itself
(building and sending events inside the API workers halved their throughput: they share the
workers' CPU and GIL). That table is the durable spool: :class:`PredictionShipper`
(``churnops monitoring ship``) selects the rows whose ``shipped_at`` is NULL, oldest first
(a partial index holds exactly those), sends them with ``create`` and ``_id`` = prediction id, and
stamps ``shipped_at``. So:

* nothing is lost: a row stays unshipped until Elasticsearch has it; when Elasticsearch is down the
  shipper backs off, probes it, and resumes where it stopped;
* nothing is stored twice: a row sent again (a crash between the bulk call and the stamp) is a
  409 in Elasticsearch, counted as already there;
* nothing loops forever: a document Elasticsearch will never accept (a mapping error) or a row that
  cannot be turned into one is kept in the rejected spool (``var/spool/rejected/``) and stamped;
  items Elasticsearch asks to retry (429, 5xx) stay unshipped.

The shipper runs at a low CPU priority (``--nice``): under full load it lags and catches up after,
so monitoring never slows a prediction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import SQLAlchemyError

from core.monitoring.es import ES_ERRORS, BulkResult, bulk, from_settings, ping
from core.monitoring.events import to_document
from core.monitoring.indices import Indices
from core.monitoring.spool import Record, Spool
from core.settings import Settings
from core.store import PREDICTION, as_utc, open_engine

log = logging.getLogger(__name__)

#: What a row needs to become a document (``actual``/``feedback_at`` are not part of the event).
COLUMNS = (
    PREDICTION.c.id,
    PREDICTION.c.created_at,
    PREDICTION.c.request_id,
    PREDICTION.c.model_version,
    PREDICTION.c.probability,
    PREDICTION.c.label,
    PREDICTION.c.threshold,
    PREDICTION.c.latency_ms,
    PREDICTION.c.features,
)


@dataclass(frozen=True)
class ShipperConfig:
    """Tuning of the shipper.

    Attributes:
        batch: rows per pass (one ``_bulk`` request, one UPDATE).
        interval: seconds to sleep when every row is shipped.
        probe_min: first back-off after a failure (seconds); doubles up to ``probe_max``.
        probe_max: longest back-off.
        timeout: Elasticsearch request timeout (seconds).
    """

    batch: int = 2_000
    interval: float = 1.0
    probe_min: float = 0.5
    probe_max: float = 10.0
    timeout: float = 10.0


@dataclass
class ShipperStats:
    """Counters of a :class:`PredictionShipper` (rows, not requests).

    Attributes:
        delivered: rows stored in Elasticsearch by this shipper.
        existing: rows Elasticsearch already had (sent again after a crash): stamped, not stored.
        rejected: rows kept in the rejected spool (mapping errors, unreadable rows).
        retried: items Elasticsearch asked to send again (left unshipped).
        batches: passes that found rows.
        failures: passes that failed (Elasticsearch or the database unavailable).
        lag_seconds: age of the oldest unshipped row at the last pass (0 when none was left).
    """

    delivered: int = 0
    existing: int = 0
    rejected: int = 0
    retried: int = 0
    batches: int = 0
    failures: int = 0
    lag_seconds: float = 0.0


@dataclass(frozen=True)
class Pass:
    """Outcome of one :meth:`PredictionShipper.ship_once`: rows selected, stamped, left to retry."""

    selected: int = 0
    stamped: int = 0
    retry: int = 0


class PredictionShipper:
    """Ships unshipped ``prediction`` rows to Elasticsearch; see the module docstring.

    Args:
        engine: the predictions database (the API's ``DATABASE_URL``).
        client: Elasticsearch client.
        rejects_dir: folder of the rejected spool.
        indices: index names (``<prefix>-predictions`` receives the documents).
        config: batch size, interval and back-off.
    """

    def __init__(
        self,
        engine: Engine,
        client: Elasticsearch,
        rejects_dir: Path,
        indices: Indices | None = None,
        config: ShipperConfig | None = None,
    ) -> None:
        self.engine = engine
        self.client = client
        self.indices = indices or Indices()
        self.config = config or ShipperConfig()
        self.rejects = Spool(rejects_dir)
        self.stats = ShipperStats()

    @classmethod
    def from_settings(
        cls, settings: Settings, indices: Indices | None = None, config: ShipperConfig | None = None
    ) -> PredictionShipper:
        """A shipper of ``settings.db_url`` to ``settings.es_url`` (rejects under ``var/spool``).

        Raises:
            ValueError: when ``ES_URL`` is unset.
        """
        config = config or ShipperConfig()
        client = from_settings(settings, timeout=config.timeout)
        rejects = settings.var_dir / "spool" / "rejected"
        return cls(open_engine(settings.db_url), client, rejects, indices, config)

    # --- one pass ----------------------------------------------------------------------------
    def _pending(self) -> list[dict[str, Any]]:
        query = (
            select(*COLUMNS)
            .where(PREDICTION.c.shipped_at.is_(None))
            .order_by(PREDICTION.c.created_at)
            .limit(self.config.batch)
        )
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def _stamp(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(PREDICTION)
                .where(PREDICTION.c.id.in_(ids))
                .values(shipped_at=datetime.now(UTC))
            )

    def ship_once(self) -> Pass:
        """Ship up to ``batch`` of the oldest unshipped rows and stamp what is settled.

        Raises:
            ApiError, TransportError: Elasticsearch did not take the request (nothing stamped).
            SQLAlchemyError: the database failed (rows stay unshipped, or are sent again: 409).
        """
        rows = self._pending()
        if not rows:
            self.stats.lag_seconds = 0.0
            return Pass()
        oldest = as_utc(rows[0]["created_at"])
        self.stats.lag_seconds = max((datetime.now(UTC) - oldest).total_seconds(), 0.0)
        actions: list[dict[str, Any]] = []
        rejects: list[Record] = []
        for row in rows:
            try:
                doc_id, source = to_document("prediction", row)
            except (TypeError, ValueError) as exc:  # e.g. features that are not JSON
                rejects.append({"index": self.indices.predictions, "row": row, "error": str(exc)})
                continue
            actions.append(
                {
                    "_op_type": "create",
                    "_index": self.indices.predictions,
                    "_id": doc_id,
                    "_source": source,
                }
            )
        result = bulk(self.client, actions) if actions else BulkResult()
        rejects += [
            {
                "index": self.indices.predictions,
                "id": actions[pos]["_id"],
                "source": actions[pos]["_source"],
                "error": reason,
            }
            for pos, reason in result.rejected
        ]
        if rejects:
            log.error(
                "shipper: %d predictions rejected, e.g. %s", len(rejects), rejects[0]["error"]
            )
            self.rejects.write(rejects)  # kept before they are stamped
        retry = {actions[pos]["_id"] for pos in result.retry}
        settled = [row["id"] for row in rows if row["id"] not in retry]
        self._stamp(settled)
        self.stats.batches += 1
        self.stats.delivered += result.created
        self.stats.existing += result.existing
        self.stats.rejected += len(rejects)
        self.stats.retried += len(retry)
        return Pass(len(rows), len(settled), len(retry))

    def drain(self) -> Pass:
        """Ship until a pass finds fewer than ``batch`` rows; the totals of every pass.

        Raises:
            ApiError, TransportError, SQLAlchemyError: as :meth:`ship_once`.
        """
        selected = stamped = retry = 0
        while True:
            one = self.ship_once()
            selected, stamped = selected + one.selected, stamped + one.stamped
            retry += one.retry
            if one.selected < self.config.batch or one.retry:
                return Pass(selected, stamped, retry)

    # --- the loop ----------------------------------------------------------------------------
    def run(self, stop: threading.Event, heartbeat: Path | None = None) -> None:
        """Ship until ``stop`` is set: drain, sleep ``interval``; back off while a service fails.

        Args:
            stop: set it (e.g. from a SIGTERM handler) to return after the current pass.
            heartbeat: a file touched on every turn of the loop (read by the container probe).
        """
        backoff = self.config.probe_min
        down = False
        while not stop.is_set():
            if heartbeat is not None:
                heartbeat.touch()
            if down and not ping(self.client):
                stop.wait(backoff)
                backoff = min(backoff * 2, self.config.probe_max)
                continue
            if down:
                log.info("shipper: Elasticsearch is back; resuming")
                down = False
            try:
                one = self.ship_once()
            except ES_ERRORS as exc:
                self.stats.failures += 1
                log.warning("shipper: Elasticsearch unavailable (%s); backing off", str(exc)[:200])
                down = True
                stop.wait(backoff)
                backoff = min(backoff * 2, self.config.probe_max)
                continue
            except SQLAlchemyError as exc:  # locked, restarting, or not migrated by the API yet
                self.stats.failures += 1
                reason = getattr(exc, "orig", None) or exc  # the driver's message, not the SQL
                log.warning("shipper: database unavailable (%s); retrying", str(reason)[:200])
                stop.wait(backoff)
                backoff = min(backoff * 2, self.config.probe_max)
                continue
            if one.retry:  # Elasticsearch is overloaded: let it breathe before resending
                stop.wait(backoff)
                backoff = min(backoff * 2, self.config.probe_max)
            elif one.selected < self.config.batch:
                backoff = self.config.probe_min
                stop.wait(self.config.interval)
            else:
                backoff = self.config.probe_min

    def close(self) -> None:
        """Close the Elasticsearch client."""
        self.client.close()
