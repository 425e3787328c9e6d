"""In-process publish/subscribe for ``WS /ws/events``, fed from any thread.

Each worker process has one :class:`EventHub`. Retrain progress is read from the database by every
worker (so a client sees a job run by another worker); model swaps are published by the worker that
swapped, which every worker does on its own when the model generation moves.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


class EventHub:
    """Fan events out to subscribers' bounded queues; slow subscribers lose the oldest events."""

    def __init__(self, max_queue: int = 256) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._max_queue = max_queue
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the event loop so other threads can publish."""
        self._loop = loop

    @property
    def subscribers(self) -> int:
        """Number of connected subscribers."""
        return len(self._subscribers)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A new queue receiving every event published from now on."""
        found: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self._max_queue)
        self._subscribers.add(found)
        return found

    def unsubscribe(self, found: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop delivering to ``found``."""
        self._subscribers.discard(found)

    def _deliver(self, event: dict[str, Any]) -> None:
        for target in list(self._subscribers):
            if target.full():
                target.get_nowait()
            target.put_nowait(event)

    def publish(self, event: dict[str, Any]) -> None:
        """Publish from the event loop thread or from any other thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._deliver(event)
        else:
            loop.call_soon_threadsafe(self._deliver, event)
