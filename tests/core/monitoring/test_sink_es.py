"""The bulk sender against the real Elasticsearch: throughput, and nothing lost across a restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from elasticsearch import Elasticsearch

from core.monitoring.es import connect
from core.monitoring.indices import Indices, setup
from core.monitoring.sink import BulkEventSink, SinkConfig
from tests.elastic import LocalElasticsearch
from tests.core.monitoring.helpers import count
from tests.core.monitoring.outbox_helpers import prediction_rows

pytestmark = [pytest.mark.es, pytest.mark.integration]


def test_10k_events_all_delivered(
    es: Elasticsearch, es_url: str, indices: Indices, tmp_path: Path
) -> None:
    """10,000 events submitted one by one all land (speed: ``make bench``)."""
    setup(es, prefix=indices.prefix)
    sink = BulkEventSink(connect(es_url), tmp_path / "spool", indices)
    for row in prediction_rows(10_000):
        sink.submit("prediction", [row])
    assert sink.flush(timeout=120)
    sink.close()
    es.indices.refresh(index=indices.predictions)
    assert count(es, indices.predictions) == 10_000
    # A bulk request that timed out on a busy machine but was indexed is sent again: its events
    # count as already there (created once, by _id), not as delivered twice.
    stats = sink.stats
    assert stats.delivered + stats.already_there == 10_000 and stats.rejected == 0, stats


def test_nothing_lost_across_an_elasticsearch_restart(
    elasticsearch: LocalElasticsearch, es: Elasticsearch, indices: Indices, tmp_path: Path
) -> None:
    if elasticsearch.external:
        pytest.skip("cannot restart an external ES_TEST_URL cluster")
    setup(es, prefix=indices.prefix)
    rows = prediction_rows(6_000)
    config = SinkConfig(batch_size=500, probe_min=0.2, probe_max=1.0, timeout=5.0)
    sink = BulkEventSink(
        connect(elasticsearch.url, timeout=5.0), tmp_path / "spool", indices, config
    )
    stopper = threading.Thread(target=elasticsearch.stop)
    for i, row in enumerate(rows):
        if i == 2_000:
            stopper.start()  # ES goes away mid-stream
        if i == 4_000:
            stopper.join()
            assert sink.flush(timeout=1.0) is False  # ES is down: events wait in the spool
            assert sink.spool.pending_records() > 0
        sink.submit("prediction", [row])
        if i % 100 == 0:
            time.sleep(0.01)
    elasticsearch.start()
    assert sink.flush(timeout=90), f"pending: {sink.pending()}"
    sink.close()
    es.indices.refresh(index=indices.predictions)
    stored = count(es, indices.predictions)
    assert stored == 6_000
    assert sink.stats.spooled > 0
