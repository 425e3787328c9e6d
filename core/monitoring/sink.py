"""The non-blocking event sender: bounded queue, background bulk thread, on-disk spool.

Used by the low-volume producers (host agent, drift and quality jobs); prediction events are
shipped from the API's table by :mod:`core.monitoring.outbox` instead, in a process of their own.
``submit`` only puts references on a queue (about a microsecond per event): the producer is never
slowed or failed by Elasticsearch. One daemon thread batches events into ``_bulk`` calls. When
Elasticsearch is unreachable (or the queue is full), events go to the spool under ``var/spool/``;
the thread probes the cluster with a growing back-off and, once it answers, resends the spool. Every
event carries a deterministic ``_id`` sent with ``create``, so a resend never duplicates a document
(409 = already delivered). Items Elasticsearch will never accept (mapping errors) are kept in
``var/spool/events/rejected/`` for inspection instead of being silently dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from elasticsearch import Elasticsearch

from core.monitoring.es import ES_ERRORS, bulk, from_settings, ping, retryable
from core.monitoring.events import to_document
from core.monitoring.indices import Indices
from core.monitoring.spool import Record, Spool
from core.settings import Settings

log = logging.getLogger(__name__)


class EventSink(Protocol):
    """Where services send monitoring events (the contract in ``docs/design.md``)."""

    def submit(self, kind: str, docs: Sequence[Mapping[str, Any]]) -> None:
        """Queue documents of one kind; never blocks, never raises on a monitoring failure."""

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is stored; ``False`` on timeout."""

    def close(self, timeout: float = 10.0) -> None:
        """Send or spool what is queued and stop."""


class NullSink:
    """The sink used when ``ES_URL`` is unset (monitoring then goes to the SQLite store)."""

    def submit(self, kind: str, docs: Sequence[Mapping[str, Any]]) -> None:
        """Discard the documents."""
        del kind, docs

    def flush(self, timeout: float = 10.0) -> bool:
        """Nothing to wait for."""
        del timeout
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Nothing to stop."""
        del timeout


@dataclass
class SinkStats:
    """Counters of a :class:`BulkEventSink` (events, not requests)."""

    submitted: int = 0
    delivered: int = 0
    already_there: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0
    bulk_requests: int = 0


@dataclass(frozen=True)
class SinkConfig:
    """Tuning of the sender; the defaults suit the API (a few hundred events per second)."""

    queue_size: int = 100_000
    batch_size: int = 2_000
    linger: float = 0.2
    probe_min: float = 0.5
    probe_max: float = 10.0
    timeout: float = 10.0


@dataclass
class _Health:
    """Whether Elasticsearch is considered down, and when to probe it next."""

    down: bool = False
    next_probe: float = 0.0
    backoff: float = 0.5


class BulkEventSink:
    """Ships events to Elasticsearch from a background thread; see the module docstring."""

    def __init__(
        self,
        client: Elasticsearch,
        spool_dir: Path,
        indices: Indices | None = None,
        config: SinkConfig | None = None,
    ) -> None:
        self.client = client
        self.indices = indices or Indices()
        self.config = config or SinkConfig()
        self.spool = Spool(spool_dir)
        self.rejects = Spool(spool_dir / "rejected")
        self.stats = SinkStats()
        self._queue: queue.Queue[tuple[str, Mapping[str, Any]]] = queue.Queue(
            self.config.queue_size
        )
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._busy = 0
        self._health = _Health(backoff=self.config.probe_min)
        self._thread = threading.Thread(target=self._run, name="es-event-sink", daemon=True)
        self._thread.start()

    # --- producer side -------------------------------------------------------------------------
    def submit(self, kind: str, docs: Sequence[Mapping[str, Any]]) -> None:
        """Queue documents; when the queue is full they go straight to the spool."""
        overflow: list[tuple[str, Mapping[str, Any]]] = []
        for doc in docs:
            try:
                self._queue.put_nowait((kind, doc))
            except queue.Full:
                overflow.append((kind, doc))
        with self._lock:
            self.stats.submitted += len(docs)
        if overflow:
            try:
                self._spool_records(self._records(overflow))
            except Exception:  # pylint: disable=broad-exception-caught  # never fail a request
                log.exception("monitoring: could not spool %d events", len(overflow))

    # --- consumer side -------------------------------------------------------------------------
    def _records(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Record]:
        records: list[Record] = []
        for kind, doc in items:
            try:
                doc_id, source = to_document(kind, doc)
            except (TypeError, ValueError) as exc:
                log.warning("monitoring: dropping malformed %s event: %s", kind, exc)
                self.rejects.write([{"kind": kind, "error": str(exc), "doc": dict(doc)}])
                with self._lock:
                    self.stats.rejected += 1
                continue
            records.append({"index": self.indices.for_kind(kind), "id": doc_id, "source": source})
        return records

    def _spool_records(self, records: list[Record]) -> None:
        self.spool.write(records)
        with self._lock:
            self.stats.spooled += len(records)

    def _mark_down(self, why: str) -> None:
        if not self._health.down:
            log.warning("monitoring: Elasticsearch unavailable (%s); spooling events", why)
        self._health.down = True
        self._health.next_probe = time.monotonic() + self._health.backoff
        self._health.backoff = min(self._health.backoff * 2, self.config.probe_max)

    def _send(self, records: list[Record]) -> list[Record]:
        """Bulk-send ``records``; return those to keep for later (all of them when ES is down)."""
        if not records:
            return []
        if self._health.down:
            return records
        actions = [
            {"_op_type": "create", "_index": r["index"], "_id": r["id"], "_source": r["source"]}
            for r in records
        ]
        try:
            result = bulk(self.client, actions)
        except ES_ERRORS as exc:
            if not retryable(exc):
                log.error("monitoring: bulk refused: %s", exc)
            self._mark_down(str(exc)[:200])
            return records
        self._health.backoff = self.config.probe_min
        with self._lock:
            self.stats.bulk_requests += 1
            self.stats.delivered += result.created
            self.stats.already_there += result.existing
            self.stats.rejected += len(result.rejected)
        if result.rejected:
            log.error("monitoring: %d events rejected, e.g. %s", *_first(result.rejected))
            self.rejects.write(
                [{**records[pos], "error": reason} for pos, reason in result.rejected]
            )
        if result.retry:
            self._mark_down(f"{len(result.retry)} items to retry")
        return [records[pos] for pos in result.retry]

    def _drain(self) -> list[tuple[str, Mapping[str, Any]]]:
        items: list[tuple[str, Mapping[str, Any]]] = []
        try:
            items.append(self._queue.get(timeout=self.config.linger))
        except queue.Empty:
            return items
        deadline = time.monotonic() + self.config.linger
        while len(items) < self.config.batch_size:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    break
                try:
                    items.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
        return items

    def _replay_one(self) -> bool:
        """Resend the oldest spooled segment; ``True`` when one was delivered."""
        if self._health.down:
            if time.monotonic() < self._health.next_probe:
                return False
            if not ping(self.client):
                self._mark_down("probe failed")
                return False
            self._health.down = False
            log.info("monitoring: Elasticsearch is back; resending the spool")
        claimed = self.spool.claim()
        if claimed is None:
            return False
        path, records = claimed
        keep = self._send(records)
        if keep and len(keep) == len(records):
            self.spool.release(path)
            return False
        if keep:
            self.spool.write(keep)
        self.spool.done(path)
        with self._lock:
            self.stats.replayed += len(records) - len(keep)
        return True

    def _step(self) -> None:
        items = self._drain()
        with self._lock:
            self._busy = len(items)
        try:
            if items:
                records = self._records(items)
                keep = self._send(records)
                if keep:
                    self._spool_records(keep)
            self._replay_one()
        finally:
            for _ in items:
                self._queue.task_done()
            with self._lock:
                self._busy = 0

    def _run(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                self._step()
            except Exception:  # pylint: disable=broad-exception-caught  # keep the thread alive
                log.exception("monitoring: event sender error")
                time.sleep(self.config.probe_min)

    # --- control -------------------------------------------------------------------------------
    def pending(self) -> int:
        """Events not yet stored: queued, in flight or spooled."""
        with self._lock:
            busy = self._busy
        return self._queue.qsize() + busy + self.spool.pending_records()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until queue and spool are empty (everything stored); ``False`` on timeout."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > deadline or not self._thread.is_alive():
                return False
            time.sleep(0.05)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (spooling it if ES is down) and stop the thread."""
        self._stop.set()
        self._thread.join(timeout)
        leftovers: list[tuple[str, Mapping[str, Any]]] = []
        while True:
            try:
                leftovers.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if leftovers:
            self._spool_records(self._records(leftovers))
        self.client.close()


def _first(items: Sequence[tuple[int, str]]) -> tuple[int, str]:
    return len(items), items[0][1]


def default_spool_dir(settings: Settings) -> Path:
    """Where unsent events wait: ``var/spool/events``."""
    return settings.var_dir / "spool" / "events"


def get_event_sink(
    settings: Settings, indices: Indices | None = None, config: SinkConfig | None = None
) -> EventSink:
    """A :class:`BulkEventSink` to ``ES_URL``, or a :class:`NullSink` when it is unset."""
    if not settings.es_url:
        return NullSink()
    client = from_settings(settings, timeout=(config or SinkConfig()).timeout)
    return BulkEventSink(client, default_spool_dir(settings), indices, config)
