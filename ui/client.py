"""The only HTTP code of the UI: a small typed client of the churnops API (``docs/design.md``).

Every failure — API down, timeout, HTTP error, an answer that is not JSON — is raised as one
:class:`ApiError` carrying the URL that was tried, the HTTP status (``None`` when there was no
answer) and a human-readable message, so pages show it with a retry button, never a traceback.

Pages get the client from :func:`get_client`; tests patch that function (``ui.client.get_client``).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import requests

from core.settings import get_settings

#: (connect, read) timeouts in seconds; connect is short so a down API is reported at once.
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 15.0)
HEALTH_TIMEOUT: tuple[float, float] = (1.0, 2.0)
BATCH_TIMEOUT: tuple[float, float] = (3.05, 120.0)


class ApiError(Exception):
    """A call to the API failed.

    Attributes:
        url: the full URL that was tried.
        status: the HTTP status code, or ``None`` when the API did not answer at all.
        message: what went wrong, fit for a user.
        details: the structured ``detail`` list of a 4xx answer (e.g. per-row batch issues).
    """

    def __init__(
        self,
        url: str,
        status: int | None,
        message: str,
        details: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(f"{message} ({url}, HTTP {status if status is not None else '-'})")
        self.url = url
        self.status = status
        self.message = message
        self.details: list[dict[str, Any]] = [dict(d) for d in details]

    @property
    def unreachable(self) -> bool:
        """True when the API did not answer (down, refused, timed out)."""
        return self.status is None

    @property
    def refused(self) -> bool:
        """True when the API wants another key: none or an unknown one (401), or a key of a
        role that may not do this (403)."""
        return self.status in (401, 403)


def _detail_message(payload: Any) -> tuple[str, list[dict[str, Any]]]:
    """Turn a FastAPI error body into one line of text plus the structured details."""
    detail = payload.get("detail") if isinstance(payload, dict) else payload
    if isinstance(detail, str):
        return detail, []
    if isinstance(detail, list):
        items = [d for d in detail if isinstance(d, dict)]
        parts = []
        for item in items[:5]:
            where = item.get("column") or ".".join(str(p) for p in item.get("loc", ())[1:])
            row = f"row {item['row']} " if item.get("row") is not None else ""
            reason = item.get("reason") or item.get("msg") or "invalid"
            parts.append(f"{row}{where}: {reason}".strip())
        more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
        return ("; ".join(parts) or "invalid request") + more, items
    if isinstance(payload, dict) and isinstance(payload.get("reason"), str):
        return payload["reason"], []  # GET /ready's 503: {"status": "not_ready", "reason": ...}
    return "unexpected answer", []


class ApiClient:  # pylint: disable=too-many-public-methods  # one method per API endpoint
    """A thin client of the churnops API: one method per endpoint the UI uses.

    The client holds no key of its own: :meth:`with_key` gives a client that sends the user's
    key (``X-API-Key``) with every request.

    Args:
        base_url: root URL of the API, e.g. ``http://127.0.0.1:8000``.
        timeout: default (connect, read) timeout in seconds.
    """

    def __init__(self, base_url: str, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.api_key: str | None = None
        self._local = threading.local()  # one requests.Session per Streamlit script thread

    def with_key(self, api_key: str | None) -> ApiClient:
        """This client sending ``api_key`` as ``X-API-Key`` (``None``/empty: no key); the
        connections are shared, the key is not (each user's session gets its own copy)."""
        keyed = copy.copy(self)
        keyed.api_key = api_key or None
        return keyed

    @property
    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = "churnops-ui"
            self._local.session = session
        return session

    def url(self, path: str) -> str:
        """The absolute URL of an API path."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        timeout: tuple[float, float] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request (with the client's key); return a 2xx response, raise
        :class:`ApiError` otherwise."""
        url = self.url(path)
        headers = dict(kwargs.pop("headers", None) or {})
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        try:
            response = self.send(
                method, url, headers=headers, timeout=timeout or self.timeout, **kwargs
            )
        except requests.Timeout as exc:
            raise ApiError(url, None, "the API did not answer in time (timeout)") from exc
        except requests.ConnectionError as exc:
            raise ApiError(url, None, "cannot reach the API (is it running?)") from exc
        except requests.RequestException as exc:
            raise ApiError(url, None, f"request failed: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            try:
                message, details = _detail_message(response.json())
            except ValueError:
                message, details = (response.text.strip()[:200] or response.reason or "error"), []
            if response.status_code == 401:
                message = f"not authorised — check the API key ({message})"
            elif response.status_code == 403:
                message = f"this key may not do this ({message})"
            raise ApiError(url, response.status_code, message, details)
        return response

    def send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """The transport: one HTTP request, whatever its status (tests replace it)."""
        return self._session.request(method, url, **kwargs)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(response.url, response.status_code, "the answer is not JSON") from exc

    def _dict(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        payload = self._json(method, path, **kwargs)
        if not isinstance(payload, dict):
            raise ApiError(self.url(path), 200, "unexpected answer (expected a JSON object)")
        return payload

    def _list(self, method: str, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        payload = self._json(method, path, **kwargs)
        if not isinstance(payload, list):
            raise ApiError(self.url(path), 200, "unexpected answer (expected a JSON list)")
        return [item for item in payload if isinstance(item, dict)]

    # --- service ---------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``GET /health`` with a short timeout."""
        return self._dict("GET", "/health", timeout=HEALTH_TIMEOUT)

    def ready(self) -> dict[str, Any]:
        """``GET /ready``; a 503 ``not_ready`` answer is returned, not raised."""
        try:
            return self._dict("GET", "/ready", timeout=HEALTH_TIMEOUT)
        except ApiError as err:
            if err.status == 503:
                return {"status": "not_ready", "reason": err.message, "model_version": None}
            raise

    # --- model -----------------------------------------------------------------------------------
    def model(self) -> dict[str, Any]:
        """``GET /model``: the served champion."""
        return self._dict("GET", "/model")

    def model_versions(self) -> list[dict[str, Any]]:
        """``GET /model/versions``."""
        return self._list("GET", "/model/versions")

    def model_curve(self, version: str | int) -> list[dict[str, Any]]:
        """``GET /model/versions/{version}/curve``: the training curve points."""
        payload = self._dict("GET", f"/model/versions/{version}/curve")
        points = payload.get("points", [])
        return [p for p in points if isinstance(p, dict)] if isinstance(points, list) else []

    def model_plots(self, version: str | int) -> list[dict[str, Any]]:
        """``GET /model/versions/{version}/plots``: names and titles of the run's figures."""
        return self._list("GET", f"/model/versions/{version}/plots")

    def model_plot(self, version: str | int, name: str) -> bytes:
        """``GET /model/versions/{version}/plots/{name}``: one PNG."""
        return self.request("GET", f"/model/versions/{version}/plots/{name}").content

    def promote(self, version: str | int) -> dict[str, Any]:
        """``POST /model/promote`` (admin)."""
        return self._dict("POST", "/model/promote", json={"version": version})

    def rollback(self) -> dict[str, Any]:
        """``POST /model/rollback`` (admin)."""
        return self._dict("POST", "/model/rollback")

    # --- prediction ------------------------------------------------------------------------------
    def predict(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /predict``: score one customer."""
        return self._dict("POST", "/predict", json=dict(customer))

    def explain(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /predict/explain``: the prediction with its drivers."""
        return self._dict("POST", "/predict/explain", json=dict(customer))

    def predict_batch(self, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """``POST /predict/batch`` with a JSON list: ``{"model_version", "results": [...]}``."""
        return self._dict(
            "POST", "/predict/batch", json=[dict(r) for r in records], timeout=BATCH_TIMEOUT
        )

    def predictions(self, **filters: Any) -> dict[str, Any]:
        """``GET /predictions`` with ``limit``, ``offset``, ``since``, ``until``, ``label``,
        ``model_version`` (``None`` filters are left out)."""
        params = {k: v for k, v in filters.items() if v not in (None, "")}
        return self._dict("GET", "/predictions", params=params)

    def feedback(self, prediction_id: str, actual: str) -> dict[str, Any]:
        """``POST /feedback``: the true outcome of a prediction."""
        return self._dict(
            "POST", "/feedback", json={"prediction_id": prediction_id, "actual": actual}
        )

    # --- monitoring ------------------------------------------------------------------------------
    def live_metrics(self) -> dict[str, Any]:
        """``GET /metrics/live``: the window, the realized quality from feedback and the CBPE
        estimate, each with n and intervals."""
        return self._dict("GET", "/metrics/live")

    def monitoring_summary(self, hours: int = 24) -> dict[str, Any]:
        """``GET /monitoring/summary``: volume, churn rate and latency per hour."""
        return self._dict("GET", "/monitoring/summary", params={"hours": hours})

    def monitoring_drift(self) -> dict[str, Any]:
        """``GET /monitoring/drift``: drift per feature."""
        return self._dict("GET", "/monitoring/drift")

    def compute_drift(self) -> dict[str, Any]:
        """``POST /monitoring/drift`` (admin): run the drift job now; the stored report."""
        return self._dict("POST", "/monitoring/drift", timeout=BATCH_TIMEOUT)

    def monitoring_host(self) -> dict[str, Any]:
        """``GET /monitoring/host``: the host now (the agent's sample, or one the API takes)."""
        return self._dict("GET", "/monitoring/host")

    # --- retrain ---------------------------------------------------------------------------------
    def start_retrain(
        self,
        csv: bytes | None = None,
        filename: str = "data.csv",
        drop_invalid_rows: bool = False,
    ) -> str:
        """``POST /retrain`` (admin), optionally with a training table (CSV/TSV, workbook) and
        ``drop_invalid_rows``; returns the job id."""
        files = {"file": (filename, csv, "application/octet-stream")} if csv is not None else None
        params = {"drop_invalid_rows": "true"} if drop_invalid_rows else None
        payload = self._dict("POST", "/retrain", files=files, params=params)
        job_id = payload.get("job_id")
        if not job_id:
            raise ApiError(self.url("/retrain"), 202, "the API did not return a job id")
        return str(job_id)

    def retrain_status(self, job_id: str) -> dict[str, Any]:
        """``GET /retrain/{job_id}``: status, progress and the gate decision."""
        return self._dict("GET", f"/retrain/{job_id}")


@lru_cache(maxsize=4)
def _client_for(base_url: str) -> ApiClient:
    return ApiClient(base_url)


def get_client() -> ApiClient:
    """The client for ``API_URL`` (from settings); the one seam tests patch."""
    return _client_for(get_settings().api_url)
