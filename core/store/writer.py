"""The prediction writer: handlers queue rows, one background thread inserts them (group commit).

Handlers enqueue a dict (well under a microsecond) and ``await writer.stored(ticket)`` before they
answer: the writer thread is woken once per event-loop iteration (not once per request), inserts
everything queued since its last write in one transaction, then releases every request of that
batch at once (a *group commit*: under load one commit serves many requests; waking the thread per
request made batches of ~3 rows and cost more CPU in thread switches than the inserts themselves).
An answered prediction is therefore already durable (committed, or kept in the spool on disk), so a
killed process (SIGKILL, an OOM kill) loses no answered prediction. Rows are never dropped:

* a batch that fails because the database is not there right now (SQLite locked; PostgreSQL
  restarting, or a connection it dropped — psycopg's ``OperationalError``/``InterfaceError``) is
  written to the writer's spool (NDJSON files under ``var/spool/predictions``) at once, so the
  prediction path does not wait for the database; the spool is replayed into the database, with
  back-off, while the writer runs and by the next writer that starts on that folder. A writer
  without a spool keeps retrying in memory instead;
* ``close()`` drains the buffer before the process exits;
* a row the database refuses for good (a bad value) is kept in ``rejected/`` of the spool, the
  rest of its batch is written; a row refused because its id is already stored (a batch whose
  commit was acknowledged too late, sent again) is not a loss and is only counted.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from core.store.tables import PREDICTION

if TYPE_CHECKING:
    from core.monitoring.spool import Spool

log = logging.getLogger(__name__)

#: Timestamp columns of a spooled row (JSON text in the spool, datetimes again on replay).
TIMESTAMPS = ("created_at", "feedback_at", "shipped_at")


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is not there *right now* (retrying may succeed).

    SQLAlchemy wraps the driver's errors: ``OperationalError`` (SQLite locked; PostgreSQL refusing
    connections while it starts or stops, a connection it terminated) and ``InterfaceError``
    (psycopg on a connection already closed), or any error on a connection SQLAlchemy recognised
    as dropped (``connection_invalidated``).
    """
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


@dataclass
class WriterCounts:
    """Rows of a :class:`PredictionWriter` since it started.

    Attributes:
        submitted: rows queued by the handlers.
        settled: rows dealt with (written, already stored, or spooled).
        written: rows this writer inserted (replayed ones included).
        spooled: rows kept in the spool (not written yet, or refused: ``rejected/``).
        duplicates: rows the database already held when they were sent again (not a loss).
    """

    submitted: int = 0
    settled: int = 0
    written: int = 0
    spooled: int = 0
    duplicates: int = 0


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


class PredictionWriter:  # pylint: disable=too-many-instance-attributes  # one thread's state
    """Insert prediction rows in batches from one background thread; lose none.

    ``submit`` appends to a list under an uncontended lock and returns a ticket (the row's place
    in the submission order); ``await stored(ticket)`` wakes the thread and returns once the row
    is settled. The thread swaps the list out, inserts it in one transaction and releases the
    waiters of that batch together (one ``call_soon_threadsafe`` per event loop and batch). Rows
    settle in submission order, so "settled" is one counter. Batches that fail while the
    database is unavailable go to the spool at once and are replayed later (see the module
    docstring); ``close`` writes what is left.

    Args:
        engine: the predictions database.
        interval: the longest the thread sleeps when nobody waits (rows submitted without
            ``stored``, e.g. by tests and scripts, are written within this many seconds).
        spool_dir: where rows that could not be written are kept (and replayed from on start and
            while running); ``None`` keeps nothing: a failing batch is then retried in memory
            until it lands (its requests wait), and what ``close`` cannot write is lost (logged).
    """

    def __init__(
        self, engine: Engine, *, interval: float = 0.02, spool_dir: Path | None = None
    ) -> None:
        self._engine = engine
        self._interval = interval
        self._spool_dir = spool_dir
        self._spool: Spool | None = None
        self._lock = threading.Lock()
        self._buffer: list[dict[str, Any] | BatchRows] = []
        self._counts = WriterCounts()
        self._done = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._give_up = threading.Event()
        #: requests waiting for their row: (ticket, tie-breaker, their loop, their future)
        self._waiters: list[tuple[int, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._replay_at: float | None = None  # when to replay the spool next (monotonic s)
        self._replay_delay = 0.05
        self._outage = False  # the last write failed (one warning per outage, not per batch)
        self._wake_due = False  # a wake-up is scheduled in an event loop (cleared at each wake)
        self._thread = threading.Thread(target=self._run, name="prediction-writer", daemon=True)

    @property
    def written(self) -> int:
        """Rows this writer inserted since start (replayed ones included)."""
        return self._counts.written

    @property
    def spooled(self) -> int:
        """Rows this writer kept in its spool (could not be written, or refused)."""
        return self._counts.spooled

    @property
    def duplicates(self) -> int:
        """Rows the database already held when this writer sent them again (not a loss)."""
        return self._counts.duplicates

    def start(self) -> None:
        """Start the background thread (idempotent); it first replays the spool."""
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()

    def submit(self, row: dict[str, Any]) -> int:
        """Queue one row (a dict of :class:`StoredPrediction` columns; ``features`` may be a dict).

        Returns:
            The row's ticket, for :meth:`stored`.
        """
        with self._lock:
            self._buffer.append(row)
            self._counts.submitted += 1
            return self._counts.submitted

    def submit_batch(self, batch: BatchRows) -> int:
        """Queue a scored batch; its rows are built in the writer thread.

        Returns:
            The ticket of its last row, for :meth:`stored`.
        """
        with self._lock:
            self._buffer.append(batch)
            self._counts.submitted += len(batch)
            return self._counts.submitted

    async def stored(self, ticket: int) -> None:
        """Return once the rows up to ``ticket`` are settled: committed, or kept in the spool.

        Wakes the writer thread at the end of this event-loop iteration (group commit: every row
        queued by the requests of this iteration, and meanwhile, goes in the same transaction).
        Returns at once when the thread is not running (a writer never started or already
        closed cannot store anything more: the caller answers anyway, never hangs).
        """
        if self._counts.settled >= ticket or not self._thread.is_alive():
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._done:
            if self._counts.settled >= ticket:
                return
            heapq.heappush(self._waiters, (ticket, next(self._order), loop, future))
        if not self._wake_due:
            self._wake_due = True
            loop.call_soon(self._wake_writer)
        await future

    def _wake_writer(self) -> None:
        """Wake the writer thread for the rows of the requests of one event-loop iteration."""
        self._wake_due = False
        self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is settled (in the database, or spooled); False
        on timeout."""
        target = self._counts.submitted
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._done:
            while self._counts.settled < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return self._counts.settled >= target
                self._done.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write everything still queued, then stop the thread.

        Rows that cannot be written within ``timeout`` seconds (the database is down) are
        spooled (or, without a spool, logged as lost). A writer never started drains the same
        way (its thread runs once).
        """
        self._stop.set()
        self._wake.set()
        if self._thread.ident is None:
            self._thread.start()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error(
                "the predictions database did not answer within %.0f s: keeping the %d rows "
                "left in the spool",
                timeout,
                self._counts.submitted - self._counts.settled,
            )
            self._give_up.set()
            self._thread.join(30.0)

    # --- the writer thread -------------------------------------------------------------------
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
        with self._engine.begin() as conn:  # Core executemany: no ORM unit of work per row
            conn.execute(insert(PREDICTION), rows)

    def _insert_retrying(self, rows: list[dict[str, Any]]) -> bool:
        """Insert; on a transient error, give up at once when there is a spool to keep the rows
        in, else retry with back-off until the database answers.

        Returns:
            True once inserted; False when the rows are not written (to be spooled; or ``close``
            gave up waiting).

        Raises:
            SQLAlchemyError: the database refused the rows (not a transient error).
        """
        delay = 0.05
        while not self._give_up.is_set():
            try:
                self._insert(rows)
                if self._outage:
                    self._outage = False
                    log.info("the predictions database answers again")
                return True
            except SQLAlchemyError as exc:
                if not transient(exc):
                    raise
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
                if self._spool_dir is not None:
                    (log.debug if self._outage else log.warning)(
                        "writing %d predictions failed (%s); spooled until the database answers",
                        len(rows),
                        reason[0] if reason else type(exc).__name__,
                    )
                    self._outage = True
                    return False
                log.warning(
                    "writing %d predictions failed (%s); retrying in %.2f s",
                    len(rows),
                    reason[0] if reason else type(exc).__name__,
                    delay,
                )
                self._give_up.wait(delay)
                delay = min(delay * 2, 2.0)
        return False

    def _store(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert ``rows``: as one batch, or row by row when the batch is refused.

        Counts what was written, already stored and rejected (kept in ``rejected/``).

        Returns:
            The rows not written because ``close`` gave up waiting for the database.
        """
        for row in rows:
            if not isinstance(row["features"], str):
                row["features"] = json.dumps(row["features"])
        try:
            if self._insert_retrying(rows):
                self._count(written=len(rows))
                return []
            return rows
        except SQLAlchemyError:  # e.g. an id already stored: write the others row by row
            log.warning("a batch of %d predictions was refused; writing row by row", len(rows))
        left: list[dict[str, Any]] = []
        for row in rows:
            try:
                if self._insert_retrying([row]):
                    self._count(written=1)
                else:
                    left.append(row)
            except SQLAlchemyError as exc:
                if self._stored(row["id"]):
                    self._count(duplicates=1)
                else:
                    log.error("prediction %s refused by the database: %s", row["id"], exc)
                    self._count(spooled=self._keep([row], rejected=True))
        return left

    def _write(self, rows: list[dict[str, Any]]) -> None:
        left = self._store(rows)
        if left and self._replay_at is None:
            self._replay_at = time.monotonic() + self._replay_delay
        self._count(spooled=self._keep(left), settled=len(rows))

    def _count(
        self, *, written: int = 0, spooled: int = 0, duplicates: int = 0, settled: int = 0
    ) -> None:
        released: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        with self._done:
            self._counts.written += written
            self._counts.spooled += spooled
            self._counts.duplicates += duplicates
            self._counts.settled += settled
            self._done.notify_all()
            while self._waiters and self._waiters[0][0] <= self._counts.settled:
                _, _, loop, future = heapq.heappop(self._waiters)
                released.setdefault(loop, []).append(future)
        for loop, futures in released.items():
            try:
                loop.call_soon_threadsafe(_release, futures)
            except RuntimeError:  # that loop is closed: nobody waits on it any more
                continue

    def _release_all(self) -> None:
        """Release every waiter (the thread is ending: nothing more will be stored)."""
        with self._done:
            waiters, self._waiters = self._waiters, []
        for _, _, loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_release, [future])
            except RuntimeError:
                continue

    def _stored(self, prediction_id: str) -> bool:
        try:
            with self._engine.connect() as conn:
                query = select(PREDICTION.c.id).where(PREDICTION.c.id == prediction_id)
                return conn.execute(query).first() is not None
        except SQLAlchemyError:
            return False

    def _open_spool(self, rejected: bool = False) -> Spool | None:
        if self._spool_dir is None:
            return None
        # Imported when needed: the same NDJSON segment folder as the monitoring sender's spool.
        from core.monitoring.spool import Spool  # pylint: disable=import-outside-toplevel

        if rejected:
            return Spool(self._spool_dir / "rejected")
        if self._spool is None:
            self._spool = Spool(self._spool_dir)
        return self._spool

    def _keep(self, rows: list[dict[str, Any]], rejected: bool = False) -> int:
        """Put ``rows`` in the spool (``rejected/``: never replayed); how many were kept."""
        if not rows:
            return 0
        spool = self._open_spool(rejected)
        if spool is None:
            log.error("%d predictions could not be written and there is no spool: lost", len(rows))
            return 0
        try:
            spool.write(rows)
        except OSError:  # a full or read-only disk: the rows are lost, the writer goes on
            log.exception("%d predictions could not be written nor spooled: lost", len(rows))
            return 0
        return len(rows)

    def replay(self) -> int:
        """Write the spooled rows into the database (each segment claimed by one process, so
        several workers sharing the folder never write it twice); how many were written."""
        spool = self._open_spool()
        if spool is None:
            return 0
        before = self._counts.written
        while not self._give_up.is_set() and (claimed := spool.claim()) is not None:
            path, records = claimed
            left = self._store([_from_spool(record) for record in records])
            self._keep(left)  # still not written: back in the spool as a new segment
            spool.done(path)
            if left:
                break
        if self._counts.written > before:
            log.info(
                "replayed %d spooled predictions into the database", self._counts.written - before
            )
        return self._counts.written - before

    def _drain(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                return
            self._write(batch)

    def _replay_when_due(self) -> None:
        """Replay the spool when a failed batch put rows in it and the back-off has passed; the
        back-off doubles (up to 2 s) while the database stays away."""
        if self._replay_at is None or time.monotonic() < self._replay_at:
            return
        spool = self._open_spool()
        self.replay()
        if spool is not None and spool.pending_records():
            self._replay_delay = min(self._replay_delay * 2, 2.0)
            self._replay_at = time.monotonic() + self._replay_delay
        else:
            self._replay_delay, self._replay_at = 0.05, None

    def _run(self) -> None:
        try:
            self.replay()
            while not self._stop.is_set():
                self._wake.wait(self._interval)
                self._wake.clear()
                # a loop closed with its wake-up still pending must not leave the flag set
                self._wake_due = False
                self._drain()
                self._replay_when_due()
            self._drain()
            self._replay_at = 0.0  # a last try for rows spooled while running
            self._replay_when_due()
        finally:
            self._release_all()


def _release(futures: list[asyncio.Future[None]]) -> None:
    """Resolve the futures of requests whose rows are settled (in their event loop's thread)."""
    for future in futures:
        if not future.done():  # a request cancelled meanwhile (its client went away)
            future.set_result(None)


def _from_spool(record: dict[str, Any]) -> dict[str, Any]:
    """A spooled row (JSON) as a row to insert: its timestamps are datetimes again."""
    row = dict(record)
    for name in TIMESTAMPS:
        if isinstance(row.get(name), str):
            row[name] = datetime.fromisoformat(row[name])
    return row
