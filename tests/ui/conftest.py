"""AppTest fixtures: the UI runs in-process against a fake API patched at ``ui.client.get_client``.

The fake is the real :class:`ui.client.ApiClient` with its transport replaced: every answer it
gives is checked against the response model of the real API route the client calls (built from
``api.main.create_app``), so the fake cannot drift from the API, and every request is held to the
API's own role table (:data:`api.auth.ROUTE_ROLES`, decided by :func:`api.auth.decide`): without
the right key the page gets the 401/403 the real API would send. ``fail`` makes any method raise
the :class:`ui.client.ApiError` a real client would (e.g. the API being down). The same pages run
against the real API, in Chromium, in tests/e2e.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import jsonschema
import numpy as np
import pandas as pd
import pytest
import requests
from pydantic import SecretStr
from streamlit.components.v2 import manifest_scanner
from streamlit.testing.v1 import AppTest

from api.auth import Role, decide, open_roles, route_role
from api.main import create_app
from core.labelled import SampleRule, labelled_report
from core.settings import Settings
from tests.net import free_port
from ui import client as ui_client
from ui.client import ApiClient, ApiError

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"
FAKE_URL = "http://fake-api:8000"
#: The fake API's key of each role (no predict key: scoring is open, as by default).
FAKE_KEYS = {Role.READER: "reader-key", Role.WRITER: "writer-key", Role.ADMIN: "good-key"}
#: The key a page test logs in with unless it says otherwise: the role each page needs.
PAGE_KEYS: dict[str, str | None] = {
    "predict": None,
    "batch": None,
    "history": FAKE_KEYS[Role.WRITER],
    "monitoring": FAKE_KEYS[Role.READER],
    "model": FAKE_KEYS[Role.READER],
    "retrain": FAKE_KEYS[Role.ADMIN],
}

METRICS_V1 = {"f1": 0.81, "precision": 0.86, "recall": 0.77, "roc_auc": 0.91, "pr_auc": 0.84,
              "accuracy": 0.95, "brier": 0.041, "threshold": 0.42}  # fmt: skip
METRICS_V2 = {**METRICS_V1, "f1": 0.83, "roc_auc": 0.92, "brier": 0.039}
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2a3d5a90000000049454e44ae426082"
)


@lru_cache(maxsize=1)
def api_openapi() -> dict[str, Any]:
    """The real API's OpenAPI document (the app is built, not started: no store, no model)."""
    app = create_app(Settings(_env_file=None, env="test", api_key=SecretStr("test-key")))
    return app.openapi()


def operation_for(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The documented operation that serves ``method path``: its path template and its spec (an
    AssertionError if the API has none)."""
    bare = path.split("?", 1)[0]
    for template, operations in api_openapi()["paths"].items():
        pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, bare) and method.lower() in operations:
            return template, operations[method.lower()]
    raise AssertionError(f"the API has no route {method} {bare}")


def _closed(schema: Any) -> Any:
    """A JSON schema where objects with declared properties accept no other key."""
    if isinstance(schema, dict):
        closed = {k: _closed(v) for k, v in schema.items()}
        if "properties" in closed and "additionalProperties" not in closed:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


def success_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of the operation's success answer (None: it does not answer JSON)."""
    for status in ("200", "201", "202"):
        content = (operation["responses"].get(status) or {}).get("content") or {}
        if "application/json" in content:
            return dict(content["application/json"]["schema"])
        if content:
            return None
    raise AssertionError(f"{operation.get('operationId')} documents no success answer")


def check_answer(template: str, operation: dict[str, Any], answer: Any) -> None:
    """Assert that ``answer`` is what the documented response model allows (types, required
    fields, no unknown key): the fake may not answer what the real API never would."""
    schema = success_schema(operation)
    if schema is None:
        assert isinstance(answer, bytes), f"{template} does not answer JSON"
        return
    assert not isinstance(answer, bytes), f"{template} answers JSON, not bytes"
    document = {**_closed(schema), "components": _closed(api_openapi()["components"])}
    try:
        jsonschema.validate(answer, document)
    except jsonschema.ValidationError as exc:
        raise AssertionError(f"fake answer of {template} breaks the API schema: {exc}") from exc


class FakeApi(ApiClient):  # pylint: disable=too-many-public-methods  # mirrors ApiClient
    """A fake API server behind the real client: records calls, fails on demand, and answers
    only what the real API's response models allow (checked on every answer, see
    :func:`check_answer`): a test double checked against the interface it stands for."""

    def __init__(self) -> None:
        super().__init__(FAKE_URL)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: dict[str, ApiError] = {}
        self.keys: dict[Role, str] = dict(FAKE_KEYS)
        self.keys_seen: list[str | None] = []
        self.probability = 0.7312
        self.retrain_states: list[dict[str, Any]] = []
        self.host_source = "agent"
        # GET /monitoring/drift as core.monitoring.read shapes it (one drifted feature)
        self.drift: dict[str, Any] = {
            "run_id": "run-1", "computed_at": "2025-01-03T00:00:00Z", "reference_rows": 3200,
            "current_rows": 500, "threshold": 0.05, "min_rows": 50, "verdict": "drift",
            "model_version": "2", "drifted": True,
            "features": [
                {"feature": "state", "kind": "categorical", "rows": 500,
                 "test": "chi2_monte_carlo", "statistic": 48.1, "p_value": 0.58,
                 "p_value_adjusted": 1.0, "distance": 0.19, "psi": 0.36, "ks_statistic": None,
                 "ks_pvalue": None, "drifted": False},
                {"feature": "total_day_minutes", "kind": "numeric", "rows": 500, "test": "ks",
                 "statistic": 0.41, "p_value": 1e-12, "p_value_adjusted": 1.9e-11,
                 "distance": 0.83, "psi": 0.31, "ks_statistic": 0.41, "ks_pvalue": 1e-12,
                 "drifted": True},
            ],
        }  # fmt: skip
        # GET /metrics/live as core.monitoring.quality shapes it: 12 of 42 predictions labelled
        self.live: dict[str, Any] = {
            "window": {"hours": 168.0, "start": "2024-12-27T00:00:00Z",
                       "end": "2025-01-03T00:00:00Z", "predictions": 42, "labelled": 12,
                       "estimated_on": 42, "limited": False, "model_versions": ["2"]},
            "realized": {"n": 12, "churners": 4, "confidence": 0.95,
                         "accuracy": {"value": 0.9167, "low": 0.6461, "high": 0.9851},
                         "precision": {"value": 0.8, "low": 0.3755, "high": 0.9638},
                         "recall": {"value": 1.0, "low": 0.5101, "high": 1.0},
                         "f1": {"value": 0.8889, "low": 0.5714, "high": 1.0}},
            "estimated": {"n": 42, "threshold": 0.42, "predicted_churners": 6,
                          "expected_churners": 5.9, "confidence": 0.95,
                          "precision": {"value": 0.86, "low": 0.5, "high": 1.0},
                          "recall": {"value": 0.88, "low": 0.6, "high": 1.0},
                          "f1": {"value": 0.8712, "low": 0.6667, "high": 1.0},
                          "accuracy": {"value": 0.9619, "low": 0.9048, "high": 1.0}},
        }  # fmt: skip
        self._pending: Any = None
        self.predictions_items = [
            {"id": f"pred-{i:04d}", "created_at": f"2025-01-0{1 + i % 3}T1{i % 10}:00:00Z",
             "request_id": f"req-{i}", "model_version": "1" if i % 2 else "2",
             "probability": 0.1 + 0.08 * i, "label": "yes" if i % 3 == 0 else "no",
             "threshold": 0.42, "latency_ms": 1.5,
             "features": {"state": "KS", "number_customer_service_calls": i},
             "actual": "yes" if i == 0 else None, "feedback_at": None}
            for i in range(10)
        ]  # fmt: skip

    def with_key(self, api_key: str | None) -> FakeApi:
        """The fake itself, sending ``api_key`` (one user per test: patched methods and the
        recorded calls stay in one place)."""
        self.api_key = api_key or None
        return self

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if name in self.fail:
            raise self.fail[name]

    def _serve(self, name: str, answer: Any, *args: Any, **kwargs: Any) -> Any:
        """Run the real client method ``name``; its HTTP request is answered with ``answer``,
        which must match the response model of the route it calls (see :meth:`request`)."""
        self._pending = answer
        return getattr(ApiClient, name)(self, *args, **kwargs)

    def send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """The transport: refuse the request as the real API's role table would (401/403, a
        documented answer of the route), else answer it with the pending answer, after checking
        that against the real API's response model for ``method path``."""
        path = url.removeprefix(self.base_url)
        key = (kwargs.get("headers") or {}).get("X-API-Key")
        self.keys_seen.append(key)
        answer = self._pending
        template, operation = operation_for(method, path)
        response = requests.Response()
        response.url = url
        refusal = decide(route_role([method], template), key, self.keys, open_roles(self.keys))
        if refusal is not None:
            assert str(refusal.status) in operation["responses"], f"{template} documents no 401"
            response.status_code = refusal.status
            body = {"detail": refusal.detail, "request_id": "fake-api-request"}
            response._content = json.dumps(body).encode()  # pylint: disable=protected-access
            response.headers["content-type"] = "application/json"
            return response
        check_answer(template, operation, answer)
        response.status_code = 200
        if isinstance(answer, bytes):
            response._content = answer  # pylint: disable=protected-access  # a built response
            return response
        response._content = json.dumps(answer).encode()  # pylint: disable=protected-access
        response.headers["content-type"] = "application/json"
        return response

    def called(self, name: str) -> list[tuple[Any, ...]]:
        """The arguments of every call of one method."""
        return [args for n, args in self.calls if n == name]

    def ready(self) -> dict[str, Any]:
        self._call("ready")
        return self._serve("ready", {"status": "ready", "reason": None, "model_version": "2"})

    def health(self) -> dict[str, Any]:
        self._call("health")
        return self._serve("health", {"status": "ok"})

    def model(self) -> dict[str, Any]:
        self._call("model")
        answer = {"name": "churn-model", "version": "2", "alias": "champion", "family": "hgb",
                  "metrics": METRICS_V2, "trained_at": "2025-01-02T10:00:00Z",
                  "data_sha256": "ab" * 32, "threshold": 0.42, "compiled": "numpy",
                  "degraded": False, "reason": None}  # fmt: skip
        return self._serve("model", answer)

    def model_versions(self) -> list[dict[str, Any]]:
        self._call("model_versions")
        answer = [
            {"version": "3", "aliases": ["challenger"], "metrics": {**METRICS_V2, "f1": 0.79},
             "created_at": "2025-01-03T10:00:00Z", "run_id": "run3",
             "gate": {"decision": "rejected",
                      "reason": "f1 0.7900 does not beat champion v2 0.8300 by 0.002"}},
            {"version": "2", "aliases": ["champion"], "metrics": METRICS_V2,
             "created_at": "2025-01-02T10:00:00Z", "run_id": "run2",
             "gate": {"decision": "promoted", "reason": "f1 0.8300 beats champion v1 0.8100"}},
            {"version": "1", "aliases": [], "metrics": METRICS_V1,
             "created_at": "2025-01-01T10:00:00Z", "run_id": "run1", "gate": {}},
        ]  # fmt: skip
        return self._serve("model_versions", answer)

    def model_curve(self, version: str | int) -> list[dict[str, Any]]:
        self._call("model_curve", version)
        points = [{"step": s, "train_loss": 0.5 / (s + 1), "valid_loss": 0.55 / (s + 1) + 0.01}
                  for s in range(0, 50, 10)]  # fmt: skip
        return self._serve("model_curve", {"version": str(version), "points": points}, version)

    def model_plots(self, version: str | int) -> list[dict[str, Any]]:
        self._call("model_plots", version)
        plots = [{"name": "roc_curve", "title": "ROC curve"},
                 {"name": "confusion_matrix", "title": "Confusion"}]  # fmt: skip
        return self._serve("model_plots", plots, version)

    def model_plot(self, version: str | int, name: str) -> bytes:
        self._call("model_plot", version, name)
        return self._serve("model_plot", PNG_1PX, version, name)

    def promote(self, version: str | int) -> dict[str, Any]:
        self._call("promote", version, self.api_key)
        answer = {"status": "ok", "action": "promote", "version": str(version), "generation": 3}
        return self._serve("promote", answer, version)

    def rollback(self) -> dict[str, Any]:
        self._call("rollback", self.api_key)
        answer = {"status": "ok", "action": "rollback", "version": "1", "generation": 4}
        return self._serve("rollback", answer)

    def predict(self, customer: Any) -> dict[str, Any]:
        self._call("predict", dict(customer))
        answer = {"prediction_id": "pred-new", "churn_probability": self.probability,
                  "label": "yes", "churn": True, "threshold": 0.42, "model_version": "2",
                  "latency_ms": 0.8}  # fmt: skip
        return self._serve("predict", answer, customer)

    def explain(self, customer: Any) -> dict[str, Any]:
        self._call("explain", dict(customer))
        answer = {"churn_probability": self.probability, "label": "yes", "churn": True,
                  "threshold": 0.42, "model_version": "2",
                  "drivers": [{"feature": "number_customer_service_calls", "value": 4,
                               "contribution": 0.21},
                              {"feature": "international_plan", "value": "yes",
                               "contribution": 0.15},
                              {"feature": "total_eve_minutes", "value": 61.9,
                               "contribution": -0.04}]}  # fmt: skip
        return self._serve("explain", answer, customer)

    def predict_batch(self, records: Any) -> dict[str, Any]:
        """Rows with the international plan score 0.9, the others 0.1; rows with a ``churn``
        field get the report of :func:`core.labelled.labelled_report`, as the API computes it
        (no fingerprints: the fake model trained on nothing)."""
        rows = list(records)
        self._call("predict_batch", len(rows))
        probabilities = [0.9 if r["international_plan"] == "yes" else 0.1 for r in rows]
        labelled = None
        if any("churn" in r for r in rows):
            frame = pd.DataFrame([{"churn": r.get("churn")} for r in rows])
            found = labelled_report(frame, np.array(probabilities), 0.42, None, SampleRule())
            labelled = None if found is None else json.loads(found.model_dump_json())
        answer = {"model_version": "2", "threshold": 0.42, "read_as": "read as a JSON array",
                  "warnings": [], "labelled": labelled,
                  "results": [{"row": i, "prediction_id": f"b-{i}", "churn_probability": p,
                               "label": "yes" if p >= 0.42 else "no"}
                              for i, p in enumerate(probabilities)]}  # fmt: skip
        return self._serve("predict_batch", answer, rows)

    def predictions(self, **filters: Any) -> dict[str, Any]:
        self._call("predictions", filters)
        items = [i for i in self.predictions_items
                 if filters.get("label") in (None, i["label"])
                 and filters.get("model_version") in (None, i["model_version"])]  # fmt: skip
        offset, limit = int(filters.get("offset", 0)), int(filters.get("limit", 100))
        answer = {"items": items[offset : offset + limit], "total": len(items)}
        return self._serve("predictions", answer, **filters)

    def feedback(self, prediction_id: str, actual: str) -> dict[str, Any]:
        self._call("feedback", prediction_id, actual)
        record = next(i for i in self.predictions_items if i["id"] == prediction_id)
        record.update(actual=actual, feedback_at="2025-01-04T00:00:00Z")
        return self._serve("feedback", dict(record), prediction_id, actual)

    def live_metrics(self) -> dict[str, Any]:
        self._call("live_metrics")
        return self._serve("live_metrics", self.live)

    def monitoring_summary(self, hours: int = 24) -> dict[str, Any]:
        self._call("monitoring_summary", hours)
        answer = {"window_hours": hours, "count": 42, "churn_rate": 0.1429,
                  "latency_ms": {"p50": 1.23, "p95": 4.56},
                  "latency_by_kind": {"single": {"requests": 30, "p50": 0.81, "p95": 2.5},
                                      "batch": {"requests": 2, "p50": 0.05, "p95": 0.07}},
                  "by_hour": [{"hour": f"2025-01-01T{h:02d}:00:00Z", "count": 10 + h,
                               "churn_rate": 0.1, "latency_p50_ms": 1.2, "latency_p95_ms": 4.0}
                              for h in range(3)]}  # fmt: skip
        return self._serve("monitoring_summary", answer, hours)

    def monitoring_drift(self) -> dict[str, Any]:
        self._call("monitoring_drift")
        return self._serve("monitoring_drift", self.drift)

    def compute_drift(self) -> dict[str, Any]:
        self._call("compute_drift", self.api_key)
        stored = {**self.drift, "run_id": "run-2", "computed_at": "2025-01-04T00:00:00Z"}
        answer: dict[str, Any] = self._serve("compute_drift", stored)
        self.drift = stored  # a refused call stores nothing
        return answer

    def monitoring_host(self) -> dict[str, Any]:
        self._call("monitoring_host")
        answer = {"at": "2025-01-03T00:00:00Z", "host": "box", "cpu_percent": 37.5,
                  "memory_percent": 61.0, "disk_percent": 44.25,
                  "source": self.host_source}  # fmt: skip
        return self._serve("monitoring_host", answer)

    def start_retrain(
        self,
        csv: bytes | None = None,
        filename: str = "x",
        drop_invalid_rows: bool = False,
    ) -> str:
        self._call(
            "start_retrain", self.api_key, csv is not None, filename, *([True] * drop_invalid_rows)
        )
        return self._serve("start_retrain", {"job_id": "job-123"}, csv, filename, drop_invalid_rows)

    def retrain_status(self, job_id: str) -> dict[str, Any]:
        self._call("retrain_status", job_id)
        answer = (
            self.retrain_states.pop(0) if len(self.retrain_states) > 1 else (self.retrain_states[0])
        )
        return self._serve("retrain_status", answer, job_id)


@pytest.fixture(scope="session", autouse=True)
def _components_scanned_once() -> Iterator[None]:
    """Each new ``AppTest`` scans the metadata of every installed distribution for Streamlit
    components: about a second per test here. The installed packages do not change during a
    session, so the real scan runs once (on first use) and every later ``AppTest`` gets its
    answer."""
    scan = functools.cache(manifest_scanner.scan_component_manifests)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(manifest_scanner, "scan_component_manifests", scan)
        yield


@pytest.fixture()
def fake_api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    """A fresh fake API patched in at ``ui.client.get_client``."""
    api = FakeApi()
    monkeypatch.setattr(ui_client, "get_client", lambda: api)
    return api


@pytest.fixture()
def down_api(monkeypatch: pytest.MonkeyPatch) -> ApiClient:
    """A real client pointed at a port where nothing listens (the API is down)."""
    api = ApiClient(f"http://127.0.0.1:{free_port()}", timeout=(0.5, 1.0))
    monkeypatch.setattr(ui_client, "get_client", lambda: api)
    return api


@pytest.fixture()
def open_page(settings: Any) -> Iterator[Callable[..., AppTest]]:
    """Open one page of the real app (``"predict"``, ``"batch"``, ...) and run it once."""
    del settings  # only for its environment: every store under tmp_path, no real var/

    def _open(page: str, key: str | None | Literal["page"] = "page") -> AppTest:
        """``key``: what the user typed in the sidebar's API key field (default: the key of
        the role the page needs, :data:`PAGE_KEYS`)."""
        at = AppTest.from_file(str(APP), default_timeout=30)
        typed = PAGE_KEYS[page] if key == "page" else key
        if typed:
            at.session_state["api_key"] = typed
        at.run()
        if page != "predict":
            at.switch_page(f"views/{page}.py")
            at.run()
        return at

    yield _open


def assert_clean(at: AppTest) -> None:
    """No exception element and no catch-all 'Unexpected error' message."""
    assert not at.exception, [e.value for e in at.exception]
    assert not [e for e in at.error if "Unexpected error" in e.value], [e.value for e in at.error]


def link_buttons(at: AppTest) -> dict[str, str]:
    """Label -> target of every link button the page shows."""
    return {b.proto.label: b.proto.url for b in at.get("link_button")}


def metric(at: AppTest, name: str) -> str:
    """The value of the page's metric labelled ``name`` (StopIteration when the page has none)."""
    return next(m.value for m in at.metric if m.label == name)


def texts(at: AppTest) -> str:
    """All markdown, caption, metric and alert text of the page, for substring assertions."""
    parts: list[str] = []
    for kind in (
        "title",
        "subheader",
        "markdown",
        "caption",
        "error",
        "warning",
        "info",
        "success",
    ):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label}: {m.value}" for m in at.metric]
    return "\n".join(parts)
