"""The batched prediction writer: handlers queue rows, one background thread inserts them.

Handlers enqueue a dict (well under a microsecond) and one background thread inserts them in
batches, off the request's critical path. Rows are never dropped: the buffer is unbounded, every
batch is retried until it lands, and ``close()`` drains it before the process exits.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, insert
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from core.store.tables import PREDICTION

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchRows:
    """A scored batch, turned into prediction rows by the writer thread (not by the request).

    ``actuals`` (``yes``/``no``/None per row) records known outcomes as feedback with the rows
    themselves (``feedback_at`` set where an outcome is given): a labelled file sent as bulk
    feedback.
    """

    common: dict[str, Any]
    ids: Sequence[str]
    probabilities: np.ndarray
    labels: np.ndarray
    features: pd.DataFrame
    actuals: Sequence[str | None] | None = None
    feedback_at: datetime | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self) -> list[dict[str, Any]]:
        """The prediction rows (features as JSON text)."""
        features = self.features.to_json(orient="records", lines=True, double_precision=15)
        texts = features.splitlines()
        actuals = self.actuals if self.actuals is not None else [None] * len(self.ids)
        return [
            {
                **self.common,
                "id": pid,
                "probability": probability,
                "label": label,
                "features": texts[i],
                "actual": actual,
                "feedback_at": None if actual is None else self.feedback_at,
            }
            for i, (pid, probability, label, actual) in enumerate(
                zip(self.ids, self.probabilities.tolist(), self.labels.tolist(), actuals)
            )
        ]


class PredictionWriter:
    """Insert prediction rows in batches from one background thread; lose none.

    ``submit`` appends to a list under an uncontended lock (no syscall, no thread wake-up per
    request); the thread swaps the list out every ``interval`` seconds (or at once on ``flush``)
    and inserts it in one transaction. A short interval keeps each insert (which holds the GIL
    while it builds the rows) small, so it never stalls the event loop for long. Failed batches
    are retried until they land; ``close`` writes what is left.

    Args:
        engine: the predictions database.
        interval: seconds between writes.
    """

    def __init__(self, engine: Engine, *, interval: float = 0.02) -> None:
        self._engine = engine
        self._interval = interval
        self._lock = threading.Lock()
        self._buffer: list[dict[str, Any] | BatchRows] = []
        self._submitted = 0
        self._written = 0
        self._done = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-writer", daemon=True)

    @property
    def written(self) -> int:
        """Rows written since start."""
        return self._written

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def submit(self, row: dict[str, Any]) -> None:
        """Queue one row (a dict of :class:`Prediction` columns; ``features`` may be a dict)."""
        with self._lock:
            self._buffer.append(row)
            self._submitted += 1

    def submit_batch(self, batch: BatchRows) -> None:
        """Queue a scored batch; its rows are built in the writer thread."""
        with self._lock:
            self._buffer.append(batch)
            self._submitted += len(batch)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is in the database; False on timeout."""
        target = self._submitted
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._done:
            while self._written < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return self._written >= target
                self._done.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write everything still queued, then stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("prediction writer did not finish within %.0f s", timeout)
        else:
            self._drain()

    def _take(self) -> list[dict[str, Any]]:
        with self._lock:
            taken, self._buffer = self._buffer, []
        rows: list[dict[str, Any]] = []
        for item in taken:
            if isinstance(item, BatchRows):
                rows.extend(item.rows())
            else:
                rows.append(item)
        return rows

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if not isinstance(row["features"], str):
                row["features"] = json.dumps(row["features"])
        with self._engine.begin() as conn:  # Core executemany: no ORM unit of work per row
            conn.execute(insert(PREDICTION), rows)

    def _insert_retrying(self, rows: list[dict[str, Any]]) -> None:
        """Insert; retry while the database is unavailable/locked (transient), never drop."""
        delay = 0.05
        while True:
            try:
                self._insert(rows)
                return
            except OperationalError:
                log.exception("writing %d predictions failed; retrying", len(rows))
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            self._insert_retrying(rows)
        except SQLAlchemyError:  # e.g. a duplicate id: write the rest row by row
            log.exception("batch of %d predictions refused; writing row by row", len(rows))
            for row in rows:
                try:
                    self._insert_retrying([row])
                except SQLAlchemyError:
                    log.exception("prediction %s refused by the database", row.get("id"))
        with self._done:
            self._written += len(rows)
            self._done.notify_all()

    def _drain(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            self._write(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            self._drain()
        self._drain()
