"""The outbox shipper against the real Elasticsearch: speed, restarts, idempotence, rejects, e2e."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from fastapi.testclient import TestClient
from sqlalchemy import update

from core.store import PredictionWriter, open_engine
from api.main import create_app
from core.monitoring.es import connect
from core.monitoring.indices import Indices, setup
from core.monitoring.outbox import PredictionShipper, ShipperConfig
from core.store import PREDICTION
from core.pipelines import TrainedModel, fit_and_evaluate
from core.registry import LoadedModel
from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL
from core.settings import Settings
from tests.factories import dataset, small_config
from tests.elastic import LocalElasticsearch
from tests.core.monitoring.helpers import count
from tests.core.monitoring.outbox_helpers import (
    prediction_rows,
    running,
    store,
    unshipped,
    wait_for,
)

pytestmark = [pytest.mark.es, pytest.mark.integration]


def shipper_of(
    engine: Any, es_url: str, indices: Indices, tmp_path: Path, **config: Any
) -> PredictionShipper:
    """A shipper of ``engine`` to the test cluster, its rejects under ``tmp_path``."""
    client = connect(es_url, timeout=config.get("timeout", 10.0))
    return PredictionShipper(
        engine, client, tmp_path / "rejected", indices, ShipperConfig(**config)
    )


def test_10k_rows_shipped_each_once(
    store_url: str, es: Elasticsearch, es_url: str, indices: Indices, tmp_path: Path
) -> None:
    """Every stored row lands in Elasticsearch once and is stamped (speed: ``make bench``)."""
    setup(es, prefix=indices.prefix)
    engine = open_engine(store_url)
    store(engine, prediction_rows(10_000))
    shipper = shipper_of(engine, es_url, indices, tmp_path)
    done = shipper.drain()
    shipper.close()
    es.indices.refresh(index=indices.predictions)
    assert count(es, indices.predictions) == 10_000
    assert (done.selected, done.stamped, done.retry) == (10_000, 10_000, 0)
    assert shipper.stats.delivered == 10_000 and shipper.stats.rejected == 0
    assert unshipped(engine) == 0


def test_nothing_lost_or_doubled_across_an_elasticsearch_restart(
    store_url: str,
    elasticsearch: LocalElasticsearch,
    es: Elasticsearch,
    indices: Indices,
    tmp_path: Path,
) -> None:
    """The API keeps writing while ES is down; the rows wait in the table; all land exactly once."""
    if elasticsearch.external:
        pytest.skip("cannot restart an external ES_TEST_URL cluster")
    setup(es, prefix=indices.prefix)
    engine = open_engine(store_url)
    writer = PredictionWriter(engine, interval=0.01)
    writer.start()
    shipper = shipper_of(
        engine,
        elasticsearch.url,
        indices,
        tmp_path,
        batch=500,
        interval=0.05,
        probe_min=0.2,
        probe_max=1.0,
        timeout=5.0,
    )
    with running(shipper) as thread:
        for i in range(60):
            if i == 20:
                elasticsearch.stop()  # mid-stream; the writer goes on
            for row in prediction_rows(100):
                writer.submit(row)
            time.sleep(0.01)
        assert writer.flush(timeout=30)
        waiting = unshipped(engine)
        assert waiting >= 4_000  # written while ES was down: kept in the table, not stamped
        assert wait_for(lambda: shipper.stats.failures > 0, 10)
        elasticsearch.start()
        assert wait_for(lambda: unshipped(engine) == 0, 90), f"left: {unshipped(engine)}"
        assert thread.is_alive()
    writer.close()
    shipper.close()
    es.indices.refresh(index=indices.predictions)
    stored = count(es, indices.predictions)
    stats = shipper.stats
    print(
        f"FIGURE outbox restart ({engine.dialect.name}): written 6000, stored {stored}, "
        f"waiting while down {waiting}, failed passes {stats.failures}, "
        f"already there {stats.existing}"
    )
    assert stored == 6_000
    assert stats.delivered + stats.existing == 6_000 and stats.rejected == 0


def test_a_rerun_ships_nothing_new_and_later_rows_are_shipped(
    store_url: str, es: Elasticsearch, es_url: str, indices: Indices, tmp_path: Path
) -> None:
    setup(es, prefix=indices.prefix)
    engine = open_engine(store_url)
    ids = store(engine, prediction_rows(300))
    assert shipper_of(engine, es_url, indices, tmp_path).drain().stamped == 300
    again = shipper_of(engine, es_url, indices, tmp_path)
    assert again.drain().selected == 0
    # a crash between the bulk call and the stamp: those rows are sent again and recognised
    with engine.begin() as conn:
        conn.execute(
            update(PREDICTION).where(PREDICTION.c.id.in_(ids[:100])).values(shipped_at=None)
        )
    assert again.drain().stamped == 100
    assert (again.stats.delivered, again.stats.existing) == (0, 100)
    store(engine, prediction_rows(50))  # predictions answered later
    assert again.drain().stamped == 50
    assert again.stats.delivered == 50
    es.indices.refresh(index=indices.predictions)
    assert count(es, indices.predictions) == 350
    assert unshipped(engine) == 0


def test_rejected_rows_are_kept_and_do_not_block_the_rest(
    store_url: str, es: Elasticsearch, es_url: str, indices: Indices, tmp_path: Path
) -> None:
    """An unmappable value and an unreadable row go to the rejected spool; the rest ships."""
    setup(es, prefix=indices.prefix)
    engine = open_engine(store_url)
    good = store(engine, prediction_rows(100))
    (unmappable,) = store(
        engine, prediction_rows(1, {**EXAMPLE_CHURNER, "account_length": "not a number"})
    )
    (unreadable,) = store(engine, prediction_rows(1, "{not json"))
    store(engine, prediction_rows(20))
    shipper = shipper_of(engine, es_url, indices, tmp_path, batch=50)
    shipper.drain()
    assert (shipper.stats.delivered, shipper.stats.rejected, shipper.stats.retried) == (120, 2, 0)
    assert unshipped(engine) == 0
    es.indices.refresh(index=indices.predictions)
    assert count(es, indices.predictions) == 122 - 2
    assert count(es, indices.predictions, {"ids": {"values": good}}) == 100
    kept = [
        json.loads(line)
        for path in shipper.rejects.segments()
        for line in path.read_text("utf-8").splitlines()
    ]
    by_id = {record.get("id") or record["row"]["id"]: record for record in kept}
    assert set(by_id) == {unmappable, unreadable}
    assert by_id[unmappable]["error"].startswith("400")
    assert by_id[unmappable]["source"]["features"]["account_length"] == "not a number"
    assert by_id[unreadable]["row"]["features"] == "{not json"
    assert shipper.drain().selected == 0  # stamped: never retried forever


@pytest.fixture(scope="module")
def small_model() -> TrainedModel:
    """A small HGB (20 iterations) trained on the real data."""
    return fit_and_evaluate(dataset(), small_config(), data_sha256="tests")


def test_api_predictions_reach_elasticsearch_through_the_shipper(
    es: Elasticsearch,
    es_url: str,
    indices: Indices,
    settings: Settings,
    small_model: TrainedModel,
) -> None:
    """The real app answers with ES_URL set and stores; the shipper makes the rows documents."""
    setup(es, prefix=indices.prefix)
    with_es = settings.model_copy(update={"es_url": es_url})
    loaded = LoadedModel(small_model.bundle, "7", {"source": "test"})
    answers: list[dict[str, Any]] = []
    with TestClient(create_app(with_es, loader=lambda _: loaded, watch_interval=0.05)) as client:
        for customer in (EXAMPLE_CHURNER, EXAMPLE_LOYAL, EXAMPLE_CHURNER):
            answer = client.post("/predict", json=customer)
            assert answer.status_code == 200
            answers.append({**answer.json(), "features": customer})
        batch = client.post("/predict/batch", json=[EXAMPLE_LOYAL] * 4).json()["results"]
        answers += [{**row, "features": EXAMPLE_LOYAL} for row in batch]
    engine = open_engine(with_es.db_url)
    assert unshipped(engine) == 7  # the API stored them and shipped nothing itself
    shipper = PredictionShipper.from_settings(with_es, indices)
    assert shipper.drain().stamped == 7
    shipper.close()
    es.indices.refresh(index=indices.predictions)
    hits = es.search(index=indices.predictions, size=20)["hits"]["hits"]
    documents = {hit["_id"]: hit["_source"] for hit in hits}
    assert set(documents) == {answer["prediction_id"] for answer in answers}
    for answer in answers:
        doc = documents[answer["prediction_id"]]
        assert doc["prediction"]["id"] == answer["prediction_id"]
        assert doc["prediction"]["probability"] == pytest.approx(answer["churn_probability"])
        assert doc["prediction"]["label"] == answer["label"]
        assert doc["prediction"]["churn"] == (1 if answer["label"] == "yes" else 0)
        assert doc["model"] == {"version": "7", "version_number": 7}
        assert doc["features"] == answer["features"]
        assert doc["event"]["dataset"] == "churnops.predictions"
        assert doc["@timestamp"].endswith("Z")
    assert {documents[a["prediction_id"]]["prediction"]["label"] for a in answers} == {"yes", "no"}
