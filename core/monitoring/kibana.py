"""Kibana as code: data views and dashboards generated from panel specs, imported over HTTP.

The committed ``deploy/kibana/*.ndjson`` files are :func:`render` output (a test keeps them in
sync): one file per dashboard, each carrying the data views it uses, so every reference resolves
within its own file. Each panel is a Lens chart whose columns come from a :class:`Panel` (the tests
turn the same spec into the aggregation the panel runs and execute it against seeded data).
:func:`import_saved_objects` waits for Kibana to be available, imports with ``overwrite=true``
and fails on any error listed in the response body.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from core.monitoring.indices import DEPLOY_DIR, ELASTIC_VERSION

DATA_VIEWS: dict[str, str] = {
    "model-metrics": "churnops-model-metrics*",
    "predictions": "churnops-predictions*",
    "drift": "churnops-drift*",
    "host": "churnops-host*",
    "quality": "churnops-quality*",
    "logs": "churnops-logs*",
}
RECORDS = "___records___"


@dataclass(frozen=True)
class Metric:
    """One y-axis series: an aggregation of a field, optionally filtered by KQL."""

    op: str  # count | average | max | min | sum | percentile | unique_count
    field: str = RECORDS
    label: str = ""
    percentile: int | None = None
    kql: str | None = None


@dataclass(frozen=True)
class Panel:
    """A Lens XY chart: x axis (date histogram, terms or numeric histogram), series, breakdown."""

    key: str
    title: str
    view: str
    metrics: tuple[Metric, ...]
    x: str = "@timestamp"
    x_kind: str = "date"  # date | terms | histogram
    breakdown: str | None = None
    kql: str = ""
    series: str = "line"  # line | bar_stacked | bar
    width: int = 24


@dataclass(frozen=True)
class Dashboard:
    """A dashboard: title, description and panels (laid out two per row)."""

    key: str
    title: str
    description: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)

    @property
    def object_id(self) -> str:
        """The saved object's id in Kibana."""
        return f"churnops-{self.key}"

    def url(self, kibana_url: str) -> str:
        """The dashboard's address in the Kibana at ``kibana_url``."""
        return f"{kibana_url.rstrip('/')}/app/dashboards#/view/{self.object_id}"


FINAL = "metric.kind:final and metric.name:(f1 or roc_auc or precision or recall)"

DASHBOARDS: tuple[Dashboard, ...] = (
    Dashboard(
        "model-metrics",
        "churnops · Model metrics",
        "Evolution of F1, ROC-AUC, precision and recall per model version; training curves.",
        (
            Panel("quality-over-time", "F1, ROC-AUC, precision, recall over time", "model-metrics",
                  (Metric("max", "metric.value", "value"),), breakdown="metric.name", kql=FINAL),
            Panel("quality-by-version", "Metrics per model version", "model-metrics",
                  (Metric("max", "metric.value", "value"),), x="model.version", x_kind="terms",
                  breakdown="metric.name", kql=FINAL, series="bar"),
            Panel("training-curves", "Training curves (loss per step)", "model-metrics",
                  (Metric("average", "metric.value", "value"),), x="metric.step",
                  x_kind="histogram", breakdown="metric.name", kql="metric.kind:curve"),
            Panel("live-quality", "Live F1: estimated (CBPE) and realized (feedback)", "quality",
                  (Metric("average", "quality.estimated.f1.value", "estimated F1"),
                   Metric("average", "quality.realized.f1.value", "realized F1"))),
        ),
    ),
    Dashboard(
        "predictions",
        "churnops · Predictions",
        "Volume, churn rate and latency of served predictions, by model version.",
        (
            Panel("volume", "Predictions per interval by model version", "predictions",
                  (Metric("count", label="predictions"),), breakdown="model.version",
                  series="bar_stacked"),
            Panel("churn-rate", "Churn rate (share of 'yes')", "predictions",
                  (Metric("average", "prediction.churn", "churn rate"),)),
            Panel("latency", "Latency p50 / p95 (ms)", "predictions",
                  (Metric("percentile", "prediction.latency_ms", "p50", 50),
                   Metric("percentile", "prediction.latency_ms", "p95", 95))),
            Panel("by-version", "Predictions and churn rate by model version", "predictions",
                  (Metric("count", label="predictions"),
                   Metric("average", "prediction.churn", "churn rate")),
                  x="model.version", x_kind="terms", series="bar"),
        ),
    ),
    Dashboard(
        "drift",
        "churnops · Drift",
        "Drift tests per feature (Holm-adjusted p-values; a feature drifts at p <= alpha), drifted"
        " features per run, and PSI / KS as descriptive figures.",
        (
            Panel("drifted", "Drifted features per run (adjusted p-value <= alpha)", "drift",
                  (Metric("max", "drift.drifted_features", "drifted features"),),
                  kql="drift.is_overall:true", series="bar"),
            Panel("p-adjusted", "Adjusted p-value per feature (lower = stronger evidence)",
                  "drift", (Metric("min", "drift.p_value_adjusted", "adjusted p"),),
                  breakdown="drift.feature", kql="drift.is_overall:false"),
            Panel("psi", "PSI per feature (descriptive)", "drift",
                  (Metric("max", "drift.psi", "PSI"),),
                  breakdown="drift.feature", kql="drift.is_overall:false"),
            Panel("overall", "Overall PSI (mean and max, descriptive)", "drift",
                  (Metric("max", "drift.psi", "mean PSI"),
                   Metric("max", "drift.max_psi", "max PSI")),
                  kql="drift.is_overall:true"),
            Panel("ks", "KS statistic per numeric feature", "drift",
                  (Metric("max", "drift.ks_statistic", "KS"),), breakdown="drift.feature",
                  kql="drift.feature_kind:numeric"),
        ),
    ),
    Dashboard(
        "host",
        "churnops · Host",
        "CPU (total and per core), RAM, swap, disk usage and I/O, network, containers.",
        (
            Panel("cpu", "CPU %", "host", (Metric("average", "system.cpu.pct", "CPU %"),),
                  breakdown="host.name", kql="metricset.name:host"),
            Panel("cores", "CPU % per core", "host", (Metric("average", "system.core.pct", "%"),),
                  breakdown="system.core.id", kql="metricset.name:core"),
            Panel("memory", "RAM and swap %", "host",
                  (Metric("average", "system.memory.pct", "RAM %"),
                   Metric("average", "system.swap.pct", "swap %")), kql="metricset.name:host"),
            Panel("disk", "Disk usage %", "host", (Metric("max", "system.disk.pct", "disk %"),),
                  breakdown="host.name", kql="metricset.name:host"),
            Panel("diskio", "Disk I/O (bytes/s)", "host",
                  (Metric("average", "system.diskio.read_bps", "read"),
                   Metric("average", "system.diskio.write_bps", "write")),
                  kql="metricset.name:host"),
            Panel("network", "Network (bytes/s)", "host",
                  (Metric("average", "system.network.in_bps", "in"),
                   Metric("average", "system.network.out_bps", "out")),
                  kql="metricset.name:host"),
            Panel("processes", "Processes", "host",
                  (Metric("max", "system.process.count", "processes"),), kql="metricset.name:host"),
            Panel("container-cpu", "Container CPU %", "host",
                  (Metric("average", "container.cpu.pct", "CPU %"),), breakdown="container.name",
                  kql="metricset.name:container"),
            Panel("container-memory", "Container memory (bytes)", "host",
                  (Metric("average", "container.memory.usage", "memory"),),
                  breakdown="container.name", kql="metricset.name:container"),
        ),
    ),
)  # fmt: skip


# --- rendering ------------------------------------------------------------------------------------
def data_view_id(view: str) -> str:
    """Stable id of a data view."""
    return f"churnops-{view}"


def data_view_object(view: str) -> dict[str, Any]:
    """The saved object of one data view (time field ``@timestamp``)."""
    return {
        "id": data_view_id(view),
        "type": "index-pattern",
        "attributes": {
            "title": DATA_VIEWS[view],
            "name": f"churnops {view}",
            "timeFieldName": "@timestamp",
        },
        "references": [],
        "coreMigrationVersion": "8.8.0",
        "typeMigrationVersion": "8.0.0",
    }


def _x_column(panel: Panel) -> dict[str, Any]:
    if panel.x_kind == "date":
        return {
            "label": panel.x,
            "dataType": "date",
            "operationType": "date_histogram",
            "sourceField": panel.x,
            "isBucketed": True,
            "scale": "interval",
            "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
        }
    if panel.x_kind == "histogram":
        return {
            "label": panel.x,
            "dataType": "number",
            "operationType": "range",
            "sourceField": panel.x,
            "isBucketed": True,
            "scale": "interval",
            "params": {
                "type": "histogram",
                "maxBars": "auto",
                "ranges": [],
                "includeEmptyRows": True,
            },
        }
    return _terms_column(panel.x)


def _terms_column(name: str) -> dict[str, Any]:
    return {
        "label": f"Top values of {name}",
        "dataType": "string",
        "operationType": "terms",
        "sourceField": name,
        "isBucketed": True,
        "scale": "ordinal",
        "params": {
            "size": 20,
            "orderBy": {"type": "alphabetical", "fallback": False},
            "orderDirection": "asc",
            "otherBucket": False,
            "missingBucket": False,
        },
    }


def _metric_column(metric: Metric) -> dict[str, Any]:
    column: dict[str, Any] = {
        "label": metric.label or f"{metric.op} of {metric.field}",
        "customLabel": bool(metric.label),
        "dataType": "number",
        "operationType": metric.op,
        "sourceField": metric.field,
        "isBucketed": False,
        "scale": "ratio",
        "params": {"emptyAsNull": True},
    }
    if metric.op == "percentile":
        column["params"] = {"percentile": metric.percentile}
    if metric.kql:
        column["filter"] = {"language": "kuery", "query": metric.kql}
    return column


def lens_object(dashboard: Dashboard, panel: Panel) -> dict[str, Any]:
    """The Lens saved object of one panel."""
    layer = "layer1"
    columns: dict[str, Any] = {"x": _x_column(panel)}
    order = ["x"]
    if panel.breakdown:
        columns["breakdown"] = _terms_column(panel.breakdown)
        order.insert(0, "breakdown")
    for i, metric in enumerate(panel.metrics):
        columns[f"m{i}"] = _metric_column(metric)
        order.append(f"m{i}")
    layer_state: dict[str, Any] = {
        "layerId": layer,
        "layerType": "data",
        "seriesType": panel.series,
        "xAccessor": "x",
        "accessors": [f"m{i}" for i in range(len(panel.metrics))],
    }
    if panel.breakdown:
        layer_state["splitAccessor"] = "breakdown"
    return {
        "id": f"churnops-{dashboard.key}-{panel.key}",
        "type": "lens",
        "attributes": {
            "title": panel.title,
            "description": "",
            "visualizationType": "lnsXY",
            "state": {
                "datasourceStates": {
                    "formBased": {
                        "layers": {
                            layer: {
                                "columns": columns,
                                "columnOrder": order,
                                "incompleteColumns": {},
                            }
                        }
                    }
                },
                "visualization": {
                    "legend": {"isVisible": True, "position": "right"},
                    "valueLabels": "hide",
                    "preferredSeriesType": panel.series,
                    "layers": [layer_state],
                },
                "query": {"query": panel.kql, "language": "kuery"},
                "filters": [],
            },
        },
        "references": [
            {
                "type": "index-pattern",
                "id": data_view_id(panel.view),
                "name": f"indexpattern-datasource-layer-{layer}",
            }
        ],
        "coreMigrationVersion": "8.8.0",
        "typeMigrationVersion": "8.9.0",
    }


def dashboard_object(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard saved object (panels by reference, two per row)."""
    panels = []
    references = []
    y = 0
    x = 0
    for i, panel in enumerate(dashboard.panels):
        index = f"p{i + 1}"
        panels.append(
            {
                "version": ELASTIC_VERSION,
                "type": "lens",
                "gridData": {"x": x, "y": y, "w": panel.width, "h": 14, "i": index},
                "panelIndex": index,
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{index}",
            }
        )
        references.append(
            {
                "name": f"{index}:panel_{index}",
                "type": "lens",
                "id": f"churnops-{dashboard.key}-{panel.key}",
            }
        )
        x += panel.width
        if x >= 48:
            x, y = 0, y + 14
    return {
        "id": dashboard.object_id,
        "type": "dashboard",
        "attributes": {
            "title": dashboard.title,
            "description": dashboard.description,
            "panelsJSON": json.dumps(panels, separators=(",", ":")),
            "optionsJSON": json.dumps(
                {"useMargins": True, "syncColors": True, "hidePanelTitles": False}
            ),
            "timeRestore": True,
            "timeFrom": "now-7d",
            "timeTo": "now",
            "refreshInterval": {"pause": False, "value": 60000},
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": json.dumps(
                    {"query": {"query": "", "language": "kuery"}, "filter": []}
                )
            },
        },
        "references": references,
        "coreMigrationVersion": "8.8.0",
        "typeMigrationVersion": "8.9.0",
    }


def render(dashboard: Dashboard) -> str:
    """The ndjson of one dashboard: its data views, its Lens panels, then the dashboard."""
    views = sorted({p.view for p in dashboard.panels})
    objects = [data_view_object(v) for v in views]
    objects += [lens_object(dashboard, p) for p in dashboard.panels]
    objects.append(dashboard_object(dashboard))
    return "".join(json.dumps(o, sort_keys=True, separators=(",", ":")) + "\n" for o in objects)


def render_all() -> dict[str, str]:
    """``{file name: ndjson}`` of every committed file (dashboards + a data-views-only file)."""
    files = {f"{d.key}.ndjson": render(d) for d in DASHBOARDS}
    files["data-views.ndjson"] = "".join(
        json.dumps(data_view_object(v), sort_keys=True, separators=(",", ":")) + "\n"
        for v in DATA_VIEWS
    )
    return files


def write_all(folder: Path = DEPLOY_DIR / "kibana") -> list[Path]:
    """Write :func:`render_all` to ``deploy/kibana/``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    return written


# --- import ---------------------------------------------------------------------------------------
class KibanaError(RuntimeError):
    """Kibana was not available in time or refused the import."""


def wait_available(
    url: str, auth: tuple[str, str] | None = None, timeout: float = 300.0, interval: float = 3.0
) -> None:
    """Wait until ``/api/status`` reports the overall level ``available``.

    Raises:
        KibanaError: when it does not within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = requests.get(f"{url.rstrip('/')}/api/status", auth=auth, timeout=5)
            if answer.ok:
                level = answer.json().get("status", {}).get("overall", {}).get("level")
                if level == "available":
                    return
                last = f"overall level {level}"
            else:
                last = f"HTTP {answer.status_code}"
        except (requests.RequestException, ValueError) as exc:
            last = str(exc)
        time.sleep(interval)
    raise KibanaError(f"Kibana at {url} not available after {timeout:.0f} s ({last})")


def import_saved_objects(
    url: str,
    files: Sequence[Path],
    auth: tuple[str, str] | None = None,
    timeout: float = 300.0,
    *,
    poll_interval: float = 3.0,
) -> int:
    """Import ndjson files with ``overwrite=true``; return the number of objects imported.

    Args:
        url: Kibana's base URL.
        files: the ndjson files, imported in order.
        auth: user and password, if Kibana needs them.
        timeout: seconds to wait for Kibana to be available.
        poll_interval: seconds between two checks of its status while waiting.

    Raises:
        KibanaError: when Kibana is unavailable or the answer lists errors / ``success: false``.
    """
    wait_available(url, auth, timeout, poll_interval)
    total = 0
    for path in files:
        with path.open("rb") as handle:
            answer = requests.post(
                f"{url.rstrip('/')}/api/saved_objects/_import",
                params={"overwrite": "true"},
                headers={"kbn-xsrf": "churnops"},
                files={"file": (path.name, handle, "application/ndjson")},
                auth=auth,
                timeout=60,
            )
        try:
            body = answer.json()
        except ValueError as exc:
            raise KibanaError(f"{path.name}: HTTP {answer.status_code}, not JSON") from exc
        if not answer.ok or not body.get("success") or body.get("errors"):
            raise KibanaError(f"{path.name}: import failed: {json.dumps(body)[:2000]}")
        total += int(body.get("successCount", 0))
    return total
