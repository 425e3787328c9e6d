"""Elasticsearch access: the official client (``elasticsearch`` 8.x), configured from the settings.

The 8.x client talks to the pinned 8.19 stack and to 9.x servers (which accept its
``compatible-with=8`` media type); the 9.x client refuses 8.x servers. This module only builds the
client (basic auth, request timeout, retries) and adds what churnops needs on top of it: a health
probe, a wait for the cluster, and a bulk call (:func:`elasticsearch.helpers.streaming_bulk`) whose
every item is classified, so that the event sender keeps what was not stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from elasticsearch import ApiError, Elasticsearch, TransportError
from elasticsearch.helpers import streaming_bulk

from core.settings import Settings

JSON = dict[str, Any]

ES_ERRORS = (ApiError, TransportError)
"""What a failed call raises: an error answer (``ApiError``) or no answer (``TransportError``)."""

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})

# The transport logs every request at INFO and every failed try of its one node at WARNING; the
# callers report outcomes themselves (the sender once per outage), so keep only real errors.
logging.getLogger("elastic_transport").setLevel(logging.ERROR)


def connect(
    url: str,
    username: str | None = None,
    password: str | None = None,
    *,
    timeout: float = 10.0,
    max_retries: int = 2,
) -> Elasticsearch:
    """A client of ``url``: basic auth when both credentials are given, timeouts retried."""
    return Elasticsearch(
        url,
        basic_auth=(username, password) if username and password else None,
        request_timeout=timeout,
        max_retries=max_retries,
        retry_on_timeout=True,
    )


def from_settings(settings: Settings, timeout: float = 10.0, max_retries: int = 2) -> Elasticsearch:
    """A client of ``settings.es_url`` with its credentials.

    Raises:
        ValueError: when ``ES_URL`` is unset.
    """
    if not settings.es_url:
        raise ValueError("ES_URL is not set")
    password = settings.es_password.get_secret_value() if settings.es_password else None
    return connect(
        settings.es_url,
        settings.es_username,
        password,
        timeout=timeout,
        max_retries=max_retries,
    )


def retryable(exc: Exception) -> bool:
    """Whether sending the same request later may succeed (down, overloaded, timeout)."""
    if isinstance(exc, ApiError):
        return exc.meta.status in RETRYABLE_STATUS
    return isinstance(exc, TransportError)


def ping(client: Elasticsearch, timeout: float = 2.0) -> bool:
    """Whether the cluster answers (one try) and is at least yellow."""
    try:
        health = client.options(request_timeout=timeout, max_retries=0).cluster.health()
    except ES_ERRORS:
        return False
    return health.get("status") in ("green", "yellow")


def wait_ready(client: Elasticsearch, timeout: float = 120.0, interval: float = 1.0) -> None:
    """Block until :func:`ping` succeeds.

    Raises:
        elasticsearch.TransportError: when the cluster is not ready within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not ping(client):
        if time.monotonic() > deadline:
            raise TransportError(f"Elasticsearch not ready after {timeout:g} s")
        time.sleep(interval)


@dataclass(frozen=True)
class BulkResult:
    """Outcome of a bulk call, per item.

    Attributes:
        created: items indexed now.
        existing: items whose ``_id`` already existed (``create``: 409; ``index``: updated).
        retry: positions of items to send again (429/5xx per item).
        rejected: ``(position, reason)`` of items ES will never accept (mapping errors...).
    """

    created: int = 0
    existing: int = 0
    retry: tuple[int, ...] = ()
    rejected: tuple[tuple[int, str], ...] = ()

    @property
    def delivered(self) -> int:
        """Items now stored in Elasticsearch (new or already there)."""
        return self.created + self.existing

    @property
    def sent(self) -> int:
        """Every item of the call."""
        return self.delivered + len(self.retry) + len(self.rejected)


def bulk(
    client: Elasticsearch,
    actions: Iterable[JSON],
    chunk_size: int | None = None,
) -> BulkResult:
    """Send bulk actions and classify every item (see :func:`classify_bulk`).

    Args:
        actions: in the helpers' format, e.g.
            ``{"_op_type": "create", "_index": ..., "_id": ..., "_source": {...}}``.
        chunk_size: items per ``_bulk`` request; ``None`` sends everything in one request.

    Raises:
        ApiError, TransportError: when a whole request failed (its items are then unknown).
    """
    if chunk_size is None:
        actions = list(actions)
        chunk_size = max(len(actions), 1)
    items = (
        item
        for _, item in streaming_bulk(
            client,
            actions,
            chunk_size=chunk_size,
            raise_on_error=False,
        )
    )
    return classify_bulk(items)


def classify_bulk(items: Iterable[Mapping[str, Any]]) -> BulkResult:
    """Split bulk answer items (``{op_type: {...}}``, in request order) by outcome."""
    created = existing = 0
    retry: list[int] = []
    rejected: list[tuple[int, str]] = []
    for position, item in enumerate(items):
        result = next(iter(item.values()))
        status = int(result.get("status", 500))
        if status < 300 and result.get("result") in ("updated", "noop"):
            existing += 1
        elif status < 300:
            created += 1
        elif status == 409:
            existing += 1
        elif status in RETRYABLE_STATUS:
            retry.append(position)
        else:
            error = result.get("error", {})
            reason = error.get("reason", str(error)) if isinstance(error, dict) else str(error)
            rejected.append((position, f"{status}: {reason}"))
    return BulkResult(created, existing, tuple(retry), tuple(rejected))
