"""Links from the UI to the tools that hold more: MLflow (a run, a model version), Kibana (each
dashboard) and the API's own docs, built from settings; a link whose tool is not configured is
not built (``None``), so the pages hide it.

Addresses follow each tool's own routes: MLflow's web app ``#/runs/<run id>`` and
``#/models/<name>/versions/<version>``; Kibana's ``/app/dashboards#/view/<id>`` with the ids of
:data:`core.monitoring.kibana.DASHBOARDS` (the dashboards imported as code).
"""

from __future__ import annotations

from urllib.parse import quote

from core.monitoring.kibana import DASHBOARDS
from core.settings import Settings


def _base(url: str | None) -> str | None:
    return url.strip().rstrip("/") or None if url else None


def mlflow_run(settings: Settings, run_id: str | None) -> str | None:
    """The MLflow page of a run (``None``: no ``MLFLOW_PUBLIC_URL`` or no run)."""
    base = _base(settings.mlflow_public_url)
    return f"{base}/#/runs/{quote(run_id, safe='')}" if base and run_id else None


def mlflow_version(settings: Settings, version: str | None) -> str | None:
    """The MLflow page of a registered model version (``None``: not configured or no version)."""
    base = _base(settings.mlflow_public_url)
    if not base or not version:
        return None
    return f"{base}/#/models/{quote(settings.model_name, safe='')}/versions/{quote(version)}"


def kibana_dashboards(settings: Settings) -> dict[str, str]:
    """Title -> address of every churnops dashboard (empty: no ``KIBANA_URL``)."""
    base = _base(settings.kibana_url)
    return {d.title: d.url(base) for d in DASHBOARDS} if base else {}


def kibana_dashboard(settings: Settings, key: str) -> str | None:
    """The address of one dashboard by key (``predictions``, ``drift``...; ``None``: no Kibana)."""
    base = _base(settings.kibana_url)
    found = next((d for d in DASHBOARDS if d.key == key), None)
    if found is None:
        raise KeyError(f"no dashboard {key!r}")
    return found.url(base) if base else None


def api_docs(settings: Settings) -> str:
    """The API's interactive docs (Swagger UI, served by the API itself), at ``API_PUBLIC_URL``
    when set (in the stack ``API_URL`` is a service name only the UI's container resolves)."""
    return f"{_base(settings.api_public_url) or settings.api_url.rstrip('/')}/docs"
