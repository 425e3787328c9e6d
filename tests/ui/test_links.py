"""ui.links: addresses built from settings, absent when the tool is not configured."""

from __future__ import annotations

from core.settings import Settings
from ui.links import api_docs, kibana_dashboards, mlflow_run, mlflow_version


def test_api_docs_prefer_the_public_address() -> None:
    """In the stack API_URL is a service name the browser cannot resolve: the docs link uses
    API_PUBLIC_URL when it is set, API_URL otherwise."""
    internal = Settings(_env_file=None, api_url="http://api:8000")
    assert api_docs(internal) == "http://api:8000/docs"
    public = Settings(_env_file=None, api_url="http://api:8000", api_public_url="http://h:8000/")
    assert api_docs(public) == "http://h:8000/docs"


def test_no_link_without_its_tools_address() -> None:
    """An empty MLFLOW_PUBLIC_URL (the stack's default: MLflow is internal) or KIBANA_URL builds
    no link."""
    settings = Settings(_env_file=None, mlflow_public_url="", kibana_url="  ")
    assert mlflow_run(settings, "abc") is None and mlflow_version(settings, "3") is None
    assert not kibana_dashboards(settings)
