"""Checks of the Kibana objects that only the tests need: the aggregation each panel runs (executed
against a real Elasticsearch with seeded data) and the offline validation of the ndjson files
against the index templates."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from core.monitoring.indices import Templates, field_paths
from core.monitoring.kibana import DASHBOARDS, RECORDS, Metric, Panel

_ES_OPS = {
    "average": "avg",
    "max": "max",
    "min": "min",
    "sum": "sum",
    "unique_count": "cardinality",
}


# --- the aggregation each panel runs ------------------------------------------------------------
_KQL_TERM = re.compile(r"([\w.@]+):\(([^)]*)\)|([\w.@]+):([\w.\-]+)")


def kql_to_query(kql: str) -> dict[str, Any]:
    """The Elasticsearch query of the simple KQL used here (``a:b and c:(x or y)``)."""
    filters: list[dict[str, Any]] = []
    for match in _KQL_TERM.finditer(kql or ""):
        if match.group(1):
            values = [v.strip() for v in match.group(2).split(" or ")]
            filters.append({"terms": {match.group(1): values}})
        else:
            filters.append({"term": {match.group(3): match.group(4)}})
    return {"bool": {"filter": filters}}


def kql_fields(kql: str) -> list[str]:
    """The field names a KQL string uses."""
    return [m.group(1) or m.group(3) for m in _KQL_TERM.finditer(kql or "")]


def _metric_agg(metric: Metric) -> dict[str, Any] | None:
    if metric.op == "count":
        return None
    if metric.op == "percentile":
        return {"percentiles": {"field": metric.field, "percents": [metric.percentile]}}
    return {_ES_OPS[metric.op]: {"field": metric.field}}


def panel_query(panel: Panel, interval: str = "1h") -> dict[str, Any]:
    """The search a panel runs: its KQL, x buckets, optional breakdown, one agg per series."""
    metrics: dict[str, Any] = {}
    for i, metric in enumerate(panel.metrics):
        agg = _metric_agg(metric)
        if metric.kql:
            metrics[f"m{i}"] = {
                "filter": kql_to_query(metric.kql),
                **({"aggs": {"v": agg}} if agg else {}),
            }
        elif agg:
            metrics[f"m{i}"] = agg
    if panel.x_kind == "date":
        x: dict[str, Any] = {"date_histogram": {"field": panel.x, "fixed_interval": interval}}
    elif panel.x_kind == "histogram":
        x = {"histogram": {"field": panel.x, "interval": 1}}
    else:
        x = {"terms": {"field": panel.x, "size": 20, "order": {"_key": "asc"}}}
    x["aggs"] = metrics
    buckets: dict[str, Any] = {"x": x}
    if panel.breakdown:
        buckets = {"breakdown": {"terms": {"field": panel.breakdown, "size": 20}, "aggs": buckets}}
    return {"size": 0, "query": kql_to_query(panel.kql), "aggs": buckets}


def find_panel(dashboard: str, key: str) -> Panel:
    """A panel by dashboard key and panel key."""
    for board in DASHBOARDS:
        if board.key == dashboard:
            for panel in board.panels:
                if panel.key == key:
                    return panel
    raise KeyError(f"{dashboard}/{key}")


# --- offline validation ---------------------------------------------------------------------------
def parse_ndjson(text: str) -> list[dict[str, Any]]:
    """The saved objects of an ndjson file (raises ``ValueError`` on a bad line)."""
    objects = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                objects.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {number}: {exc}") from exc
    return objects


def _view_fields(templates: Templates, pattern: str) -> set[str]:
    name = pattern.rstrip("*")
    if name not in templates.indices:
        return set()
    return set(field_paths(templates.mapping_properties(name)))


def lens_fields(obj: dict[str, Any]) -> list[str]:
    """Every field a Lens object uses: column source fields and KQL (panel and column filters)."""
    state = obj["attributes"]["state"]
    used = kql_fields(state["query"]["query"])
    for layer in state["datasourceStates"]["formBased"]["layers"].values():
        for column in layer["columns"].values():
            if column.get("sourceField") not in (None, RECORDS):
                used.append(column["sourceField"])
            used += kql_fields(column.get("filter", {}).get("query", ""))
    return used


def validate_objects(objects: Sequence[dict[str, Any]], templates: Templates) -> list[str]:
    """Problems of one ndjson file: dangling references, unknown fields, duplicate ids."""
    problems: list[str] = []
    by_id = {(o["type"], o["id"]): o for o in objects}
    if len(by_id) != len(objects):
        problems.append("duplicate (type, id)")
    for obj in objects:
        for ref in obj.get("references", []):
            if (ref["type"], ref["id"]) not in by_id:
                problems.append(f"{obj['id']}: reference {ref['type']}/{ref['id']} not in the file")
        if obj["type"] == "dashboard":
            names = {r["name"] for r in obj["references"]}
            for panel in json.loads(obj["attributes"]["panelsJSON"]):
                if f"{panel['panelIndex']}:{panel['panelRefName']}" not in names:
                    problems.append(f"{obj['id']}: panel {panel['panelIndex']} has no reference")
        if obj["type"] != "lens":
            continue
        view = next((r for r in obj["references"] if r["type"] == "index-pattern"), None)
        if view is None or ("index-pattern", view["id"]) not in by_id:
            continue
        pattern = by_id[("index-pattern", view["id"])]["attributes"]["title"]
        known = _view_fields(templates, pattern)
        if not known:
            problems.append(f"{obj['id']}: no index template for data view {pattern}")
            continue
        used = lens_fields(obj)
        problems += [
            f"{obj['id']}: field {f} not in {pattern} templates" for f in used if f not in known
        ]
    return problems
