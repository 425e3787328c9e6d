"""AppTest fixtures: the UI runs in-process against a fake API patched at ``ui.client.get_client``.

The fake answers with the shapes of ``docs/design.md``; ``fail`` makes any method raise the
:class:`ui.client.ApiError` a real client would (e.g. the API being down).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from ui import client as ui_client
from ui.client import ApiClient, ApiError

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"
FAKE_URL = "http://fake-api:8000"

METRICS_V1 = {"f1": 0.81, "precision": 0.86, "recall": 0.77, "roc_auc": 0.91, "pr_auc": 0.84,
              "accuracy": 0.95, "brier": 0.041, "threshold": 0.42}  # fmt: skip
METRICS_V2 = {**METRICS_V1, "f1": 0.83, "roc_auc": 0.92, "brier": 0.039}
PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2a3d5a90000000049454e44ae426082"
)


class FakeApi(ApiClient):  # pylint: disable=too-many-public-methods  # mirrors ApiClient
    """An in-memory API: records calls, answers per the contract, fails on demand."""

    def __init__(self) -> None:
        super().__init__(FAKE_URL)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.fail: dict[str, ApiError] = {}
        self.probability = 0.7312
        self.retrain_states: list[dict[str, Any]] = []
        self.predictions_items = [
            {"id": f"pred-{i:04d}", "created_at": f"2025-01-0{1 + i % 3}T1{i % 10}:00:00Z",
             "request_id": f"req-{i}", "model_version": "1" if i % 2 else "2",
             "probability": 0.1 + 0.08 * i, "label": "yes" if i % 3 == 0 else "no",
             "threshold": 0.42, "latency_ms": 1.5, "features": "{}",
             "actual": "yes" if i == 0 else None, "feedback_at": None}
            for i in range(10)
        ]  # fmt: skip

    def _call(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if name in self.fail:
            raise self.fail[name]

    def called(self, name: str) -> list[tuple[Any, ...]]:
        """The arguments of every call of one method."""
        return [args for n, args in self.calls if n == name]

    def ready(self) -> dict[str, Any]:
        self._call("ready")
        return {"status": "ready", "reason": None, "model_version": "2"}

    def health(self) -> dict[str, Any]:
        self._call("health")
        return {"status": "ok"}

    def model(self) -> dict[str, Any]:
        self._call("model")
        return {"name": "churn-model", "version": "2", "alias": "champion", "family": "hgb",
                "metrics": METRICS_V2, "trained_at": "2025-01-02T10:00:00Z",
                "data_sha256": "ab" * 32, "threshold": 0.42, "compiled": "numpy",
                "degraded": False, "reason": None}  # fmt: skip

    def model_versions(self) -> list[dict[str, Any]]:
        self._call("model_versions")
        return [
            {"version": "3", "aliases": ["challenger"], "metrics": {**METRICS_V2, "f1": 0.79},
             "created_at": "2025-01-03T10:00:00Z", "run_id": "run3",
             "gate": {"promoted": False, "reason": "F1 0.790 below champion 0.830"}},
            {"version": "2", "aliases": ["champion"], "metrics": METRICS_V2,
             "created_at": "2025-01-02T10:00:00Z", "run_id": "run2",
             "gate": {"promoted": True, "reason": "F1 0.830 beats 0.810"}},
            {"version": "1", "aliases": [], "metrics": METRICS_V1,
             "created_at": "2025-01-01T10:00:00Z", "run_id": "run1", "gate": {}},
        ]  # fmt: skip

    def model_curve(self, version: str | int) -> list[dict[str, Any]]:
        self._call("model_curve", version)
        return [{"step": s, "train_loss": 0.5 / (s + 1), "valid_loss": 0.55 / (s + 1) + 0.01}
                for s in range(0, 50, 10)]  # fmt: skip

    def model_plots(self, version: str | int) -> list[dict[str, Any]]:
        self._call("model_plots", version)
        return [{"name": "roc.png", "title": "ROC curve"}, {"name": "cm.png", "title": "Confusion"}]

    def model_plot(self, version: str | int, name: str) -> bytes:
        self._call("model_plot", version, name)
        return PNG_1PX

    def promote(self, version: str | int, api_key: str) -> dict[str, Any]:
        self._call("promote", version, api_key)
        if api_key != "good-key":
            raise ApiError(self.url("/model/promote"), 401, "not authorised — check the API key")
        return {"version": str(version), "alias": "champion"}

    def rollback(self, api_key: str) -> dict[str, Any]:
        self._call("rollback", api_key)
        return {"version": "1", "alias": "champion"}

    def predict(self, customer: Any) -> dict[str, Any]:
        self._call("predict", dict(customer))
        return {"prediction_id": "pred-new", "churn_probability": self.probability,
                "label": "yes", "churn": True, "threshold": 0.42, "model_version": "2",
                "latency_ms": 0.8}  # fmt: skip

    def explain(self, customer: Any) -> dict[str, Any]:
        self._call("explain", dict(customer))
        return {"prediction_id": "pred-x", "churn_probability": self.probability,
                "label": "yes", "threshold": 0.42, "model_version": "2",
                "drivers": [{"feature": "number_customer_service_calls", "value": 4,
                             "contribution": 0.21},
                            {"feature": "international_plan", "value": "yes", "contribution": 0.15},
                            {"feature": "total_eve_minutes", "value": 61.9,
                             "contribution": -0.04}]}  # fmt: skip

    def predict_batch(self, records: Any) -> dict[str, Any]:
        rows = list(records)
        self._call("predict_batch", len(rows))
        return {"model_version": "2",
                "results": [{"row": i, "prediction_id": f"b-{i}",
                             "churn_probability": 0.9 if r["international_plan"] == "yes" else 0.1,
                             "label": "yes" if r["international_plan"] == "yes" else "no"}
                            for i, r in enumerate(rows)]}  # fmt: skip

    def predictions(self, **filters: Any) -> dict[str, Any]:
        self._call("predictions", filters)
        items = [i for i in self.predictions_items
                 if filters.get("label") in (None, i["label"])
                 and filters.get("model_version") in (None, i["model_version"])]  # fmt: skip
        offset, limit = int(filters.get("offset", 0)), int(filters.get("limit", 100))
        return {"items": items[offset : offset + limit], "total": len(items)}

    def feedback(self, prediction_id: str, actual: str) -> dict[str, Any]:
        self._call("feedback", prediction_id, actual)
        return {"prediction_id": prediction_id, "actual": actual}

    def live_metrics(self) -> dict[str, Any]:
        self._call("live_metrics")
        return {"count": 12, "accuracy": 0.9167, "precision": 0.8, "recall": 1.0, "f1": 0.8889}

    def monitoring_summary(self, hours: int = 24) -> dict[str, Any]:
        self._call("monitoring_summary", hours)
        return {"window_hours": hours, "count": 42, "churn_rate": 0.1429,
                "latency_ms": {"p50": 1.23, "p95": 4.56},
                "by_hour": [{"hour": f"2025-01-01T{h:02d}:00:00Z", "count": 10 + h,
                             "churn_rate": 0.1, "latency_p50_ms": 1.2, "latency_p95_ms": 4.0}
                            for h in range(3)]}  # fmt: skip

    def monitoring_drift(self) -> dict[str, Any]:
        self._call("monitoring_drift")
        return {"computed_at": "2025-01-03T00:00:00Z", "reference_rows": 4000, "threshold": 0.2,
                "current_rows": 500,
                "features": [{"feature": "total_day_minutes", "psi": 0.31, "ks_pvalue": 0.001,
                              "drifted": True},
                             {"feature": "state", "psi": 0.02, "ks_pvalue": None,
                              "drifted": False}]}  # fmt: skip

    def monitoring_host(self) -> dict[str, Any]:
        self._call("monitoring_host")
        return {"at": "2025-01-03T00:00:00Z", "host": "box", "cpu_percent": 37.5,
                "memory_percent": 61.0, "disk_percent": 44.25}  # fmt: skip

    def start_retrain(
        self,
        api_key: str,
        csv: bytes | None = None,
        filename: str = "x",
        drop_invalid_rows: bool = False,
    ) -> str:
        self._call(
            "start_retrain", api_key, csv is not None, filename, *([True] * drop_invalid_rows)
        )
        return "job-123"

    def retrain_status(self, job_id: str) -> dict[str, Any]:
        self._call("retrain_status", job_id)
        if len(self.retrain_states) > 1:
            return self.retrain_states.pop(0)
        return self.retrain_states[0]


@pytest.fixture()
def fake_api(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    """A fresh fake API patched in at ``ui.client.get_client``."""
    api = FakeApi()
    monkeypatch.setattr(ui_client, "get_client", lambda: api)
    return api


@pytest.fixture()
def down_api(monkeypatch: pytest.MonkeyPatch) -> ApiClient:
    """A real client pointed at a port where nothing listens (the API is down)."""
    import socket  # pylint: disable=import-outside-toplevel

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = ApiClient(f"http://127.0.0.1:{port}", timeout=(0.5, 1.0))
    monkeypatch.setattr(ui_client, "get_client", lambda: api)
    return api


@pytest.fixture()
def open_page(settings: Any) -> Iterator[Callable[[str], AppTest]]:
    """Open one page of the real app (``"predict"``, ``"batch"``, ...) and run it once."""
    del settings  # only for its environment: every store under tmp_path, no real var/

    def _open(page: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=30)
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
