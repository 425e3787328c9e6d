"""A small, typed Elasticsearch HTTP client on ``requests``.

Why not the ``elasticsearch`` package: its 9.x client sends ``compatible-with=9`` media types, which
an 8.x server refuses, and the server we can test against here (the Maven Central integ-test zip) is
8.19. Plain ``application/json`` works against 8.x and 9.x alike, and the few APIs churnops needs
(templates, ``_bulk``, ``_search``, ``_count``) are stable across both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from core.settings import Settings

JSON = dict[str, Any]


class EsError(RuntimeError):
    """An Elasticsearch request failed (``status`` is ``None`` when the server was unreachable)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        """Whether sending the same request later may succeed (down, overloaded, timeout)."""
        return self.status is None or self.status in (408, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class BulkResult:
    """Outcome of one ``_bulk`` call, per item.

    Attributes:
        created: items indexed now.
        existing: items whose ``_id`` already existed (``create``: 409; ``index``: updated).
        retry: positions of items to send again (429/5xx per item).
        rejected: ``(position, reason)`` of items ES will never accept (mapping errors...).
    """

    created: int = 0
    existing: int = 0
    retry: tuple[int, ...] = ()
    rejected: tuple[tuple[int, str], ...] = field(default_factory=tuple)

    @property
    def delivered(self) -> int:
        """Items now stored in Elasticsearch (new or already there)."""
        return self.created + self.existing


class EsClient:
    """Minimal JSON client: one pooled :class:`requests.Session`, basic auth, timeouts."""

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        if username and password:
            self._session.auth = (username, password)
        self._session.headers.update({"Accept": "application/json"})

    @classmethod
    def from_settings(cls, settings: Settings, timeout: float = 10.0) -> "EsClient":
        """A client for ``settings.es_url`` with its credentials.

        Raises:
            ValueError: when ``ES_URL`` is unset.
        """
        if not settings.es_url:
            raise ValueError("ES_URL is not set")
        password = settings.es_password.get_secret_value() if settings.es_password else None
        return cls(settings.es_url, settings.es_username, password, timeout)

    def close(self) -> None:
        """Release pooled connections."""
        self._session.close()

    def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        ndjson: str | bytes | None = None,
        timeout: float | None = None,
    ) -> JSON:
        """Send one request and return the decoded JSON answer.

        Raises:
            EsError: on a connection error, a timeout or an HTTP status >= 400.
        """
        headers = {
            "Content-Type": "application/x-ndjson" if ndjson is not None else "application/json"
        }
        data: str | bytes | None = ndjson if ndjson is not None else None
        if body is not None:
            data = json.dumps(body)
        try:
            answer = self._session.request(
                method,
                f"{self.url}/{path.lstrip('/')}",
                data=data,
                params=params,
                headers=headers,
                timeout=timeout or self.timeout,
            )
        except requests.RequestException as exc:
            raise EsError(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc
        if answer.status_code >= 400:
            raise EsError(
                f"{method} {path}: {answer.status_code} {answer.text[:500]}", answer.status_code
            )
        if not answer.content:
            return {}
        decoded: Any = answer.json()
        return decoded if isinstance(decoded, dict) else {"items": decoded}

    def ping(self, timeout: float = 2.0) -> bool:
        """Whether the cluster answers and is at least yellow."""
        try:
            health = self.request("GET", "/_cluster/health", timeout=timeout)
        except EsError:
            return False
        return health.get("status") in ("green", "yellow")

    def wait_ready(self, timeout: float = 120.0, interval: float = 1.0) -> None:
        """Block until :meth:`ping` succeeds.

        Raises:
            EsError: when the cluster is not ready within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while not self.ping():
            if time.monotonic() > deadline:
                raise EsError(f"{self.url} not ready after {timeout:.0f} s")
            time.sleep(interval)

    def bulk(self, actions: Iterable[tuple[JSON, JSON]], refresh: bool = False) -> BulkResult:
        """Send ``(action, source)`` pairs in one ``_bulk`` call and classify every item.

        Raises:
            EsError: when the whole request failed (then nothing is known to be stored).
        """
        lines: list[str] = []
        for action, source in actions:
            lines.append(json.dumps(action, separators=(",", ":")))
            lines.append(json.dumps(source, separators=(",", ":"), default=str))
        if not lines:
            return BulkResult()
        answer = self.request(
            "POST",
            "/_bulk",
            ndjson="\n".join(lines) + "\n",
            params={"refresh": "true"} if refresh else None,
            timeout=max(self.timeout, 30.0),
        )
        return classify_bulk(answer)

    def count(self, index: str, query: Mapping[str, Any] | None = None) -> int:
        """Number of documents in ``index`` (0 when it does not exist)."""
        try:
            body = {"query": query} if query else None
            answer = self.request("POST", f"/{index}/_count", body=body)
        except EsError as exc:
            if exc.status == 404:
                return 0
            raise
        return int(answer.get("count", 0))

    def search(self, index: str, body: Mapping[str, Any]) -> JSON:
        """Run a search and return the raw answer."""
        return self.request("POST", f"/{index}/_search", body=body)

    def refresh(self, index: str) -> None:
        """Make every document written so far searchable."""
        self.request("POST", f"/{index}/_refresh", params={"ignore_unavailable": "true"})


def classify_bulk(answer: JSON) -> BulkResult:
    """Split a ``_bulk`` answer into created, already existing, retryable and rejected items."""
    created = existing = 0
    retry: list[int] = []
    rejected: list[tuple[int, str]] = []
    for position, item in enumerate(answer.get("items", [])):
        result = next(iter(item.values()))
        status = int(result.get("status", 500))
        if status < 300 and result.get("result") in ("updated", "noop"):
            existing += 1
        elif status < 300:
            created += 1
        elif status == 409:
            existing += 1
        elif status in (429, 500, 502, 503, 504):
            retry.append(position)
        else:
            error = result.get("error", {})
            reason = error.get("reason", str(error)) if isinstance(error, dict) else str(error)
            rejected.append((position, f"{status}: {reason}"))
    return BulkResult(created, existing, tuple(retry), tuple(rejected))
