"""The continuous MLflow → Elasticsearch export (``export-mlflow --follow``), against the real test
Elasticsearch and a real SQLite-backed MLflow store: new and changed runs arrive without a manual
export, unchanged runs are not sent again, a failed pass is sent again by the next one."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from core.monitoring.es import ES_ERRORS, connect
from core.monitoring.indices import Indices, setup
from core.monitoring.mlflow_export import MlflowFollower
from core.settings import Settings
from tests.conftest import ROOT
from tests.core.monitoring.helpers import count
from tests.core.monitoring.outbox_helpers import run_loop_until_sigterm, wait_for
from tests.core.monitoring.test_outbox import nowhere

pytestmark = [pytest.mark.es, pytest.mark.integration]


def log_run(settings: Settings, f1: float, curve: int = 0) -> str:
    """A finished run with ``f1`` and a ``curve``-step loss curve; returns its id."""
    from core import registry  # pylint: disable=import-outside-toplevel  # mlflow is heavy

    client = registry.configure(settings)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    run = client.create_run(experiment.experiment_id, run_name=f"hgb-{f1}")
    for step in range(curve):
        client.log_metric(run.info.run_id, "valid_loss", 1.0 / (step + 1), step=step)
    client.log_metric(run.info.run_id, "f1", f1)
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def promote(settings: Settings, run_id: str) -> None:
    """Register a version of ``run_id`` and make it the champion."""
    from core import registry  # pylint: disable=import-outside-toplevel

    client: Any = registry.configure(settings)
    if client.search_registered_models(f"name='{settings.model_name}'") == []:
        client.create_registered_model(settings.model_name)
    version = client.create_model_version(settings.model_name, "file:///tmp/x", run_id)
    client.set_registered_model_alias(settings.model_name, "champion", version.version)


def settled_count(es: Elasticsearch, index: str) -> int:
    """``count`` that reads an index being created (primary not yet started) as empty."""
    try:
        return count(es, index)
    except ES_ERRORS:
        return 0


def aliases_of(es: Elasticsearch, indices: Indices, run_id: str) -> set[str]:
    """The model aliases the run's documents carry."""
    es.indices.refresh(index=indices.model_metrics)
    hits = es.search(index=indices.model_metrics, query={"term": {"run.id": run_id}}, size=100)
    return {a for hit in hits["hits"]["hits"] for a in hit["_source"]["model"]["aliases"]}


def test_each_pass_exports_only_new_and_changed_runs(
    es: Elasticsearch, es_url: str, indices: Indices, settings: Settings
) -> None:
    setup(es, prefix=indices.prefix)
    settings = settings.model_copy(update={"es_url": es_url})
    first = log_run(settings, 0.80, curve=3)
    follower = MlflowFollower(settings, indices)
    try:
        one = follower.sync()
        assert (one.runs, one.created) == (1, 4)  # f1 + 3 curve points
        assert follower.sync().runs == 0  # nothing changed: nothing sent
        second = log_run(settings, 0.85)
        two = follower.sync()
        assert (two.runs, two.created) == (1, 1)
        promote(settings, second)  # an alias moved: that run is sent again, documents overwritten
        three = follower.sync()
        assert (three.runs, three.created, three.updated) == (1, 0, 1)
    finally:
        follower.close()
    assert count(es, indices.model_metrics) == 5
    assert aliases_of(es, indices, second) == {"champion"} and not aliases_of(es, indices, first)


def test_a_failed_pass_is_sent_again_by_the_next(
    es: Elasticsearch, es_url: str, indices: Indices, settings: Settings
) -> None:
    setup(es, prefix=indices.prefix)
    log_run(settings, 0.80)
    down = MlflowFollower(settings.model_copy(update={"es_url": nowhere()}), indices)
    with pytest.raises(Exception):  # noqa: B017  # the client's connection error
        down.sync()
    down.es.close()
    down.es = connect(es_url)  # Elasticsearch is back
    try:
        assert down.sync().created == 1
    finally:
        down.close()
    assert count(es, indices.model_metrics) == 1


def test_follow_exports_a_run_logged_while_it_runs(
    es: Elasticsearch, es_url: str, indices: Indices, settings: Settings
) -> None:
    setup(es, prefix=indices.prefix)
    settings = settings.model_copy(update={"es_url": es_url})
    follower = MlflowFollower(settings, indices)
    stop = threading.Event()
    loop = threading.Thread(target=follower.follow, args=(stop, 0.1))
    loop.start()
    try:
        log_run(settings, 0.9, curve=2)
        assert wait_for(lambda: settled_count(es, indices.model_metrics) == 3, 60, poll=0.2)
    finally:
        stop.set()
        loop.join(30)
        follower.close()
    assert not loop.is_alive()


def test_cli_follow_survives_elasticsearch_down_and_stops_on_sigterm(
    settings: Settings, tmp_path: Path
) -> None:
    """The stack's exporter command: it keeps turning (heartbeat) while Elasticsearch is down."""
    log_run(settings, 0.8)
    heartbeat = tmp_path / "alive"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VAR_DIR": str(settings.var_dir),
        "ES_URL": nowhere(),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
    }
    code, out, err = run_loop_until_sigterm(["export-mlflow", "--follow", "0.1"], env, heartbeat)
    assert code == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1]) == {"export": "stopped"}
    assert "pass failed" in err
