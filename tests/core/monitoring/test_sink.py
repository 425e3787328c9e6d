"""The event sender, spool and document mapping without Elasticsearch (it is down here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from core.monitoring.es import ES_ERRORS, classify_bulk, connect, ping, retryable
from core.monitoring.events import prediction_document, to_document, utc_iso
from core.monitoring.indices import Indices
from core.monitoring.sink import BulkEventSink, NullSink, SinkConfig, get_event_sink
from core.monitoring.spool import Spool
from core.settings import Settings
from tests.net import free_port
from tests.core.monitoring.helpers import prediction_rows


def test_spool_claim_release_done(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert spool.write([]) is None and spool.claim() is None
    spool.write([{"a": 1}, {"a": 2}])
    spool.write([{"a": 3}])
    assert spool.pending_records() == 3
    claimed = spool.claim()
    assert claimed is not None and claimed[1] == [{"a": 1}, {"a": 2}]
    assert spool.pending_records() == 1
    spool.release(claimed[0])
    assert spool.pending_records() == 3
    again = spool.claim()
    assert again is not None
    spool.done(again[0])
    assert spool.pending_records() == 1


def test_stale_claims_are_released(tmp_path: Path) -> None:
    Spool(tmp_path).write([{"a": 1}])
    segment = next(tmp_path.glob("*.ndjson"))
    segment.rename(segment.with_name(segment.name + ".claimed-999999999"))
    assert Spool(tmp_path).pending_records() == 1


def test_prediction_rows_become_ecs_documents() -> None:
    row = prediction_rows(1, 1)[0]
    doc_id, doc = prediction_document(row)
    assert doc_id == row["id"]
    assert doc["prediction"]["churn"] == 1 and doc["model"] == {"version": "1", "version_number": 1}
    assert doc["features"]["state"] == "NJ" and doc["@timestamp"].endswith("Z")
    api_shape = {**row, "prediction_id": "p1", "@timestamp": "2026-01-01T00:00:00+00:00"}
    del api_shape["id"]
    doc_id, doc = to_document("prediction", api_shape)
    assert doc_id == "p1" and doc["@timestamp"] == "2026-01-01T00:00:00Z"
    assert doc["event"]["dataset"] == "churnops.predictions" and doc["host"]["name"]
    with pytest.raises(ValueError):
        to_document("nope", {})
    doc_id, doc = to_document("host", {"_id": "h1", "@timestamp": 0})
    assert doc_id == "h1" and doc["@timestamp"] == "1970-01-01T00:00:00Z"
    with pytest.raises(TypeError):
        utc_iso(object())


def test_classify_bulk_answer() -> None:
    items: list[dict[str, Any]] = [
        {"create": {"status": 201, "result": "created"}},
        {"create": {"status": 409}},
        {"index": {"status": 200, "result": "updated"}},
        {"create": {"status": 429}},
        {"create": {"status": 400, "error": {"reason": "mapper_parsing_exception"}}},
    ]
    result = classify_bulk(items)
    assert (result.created, result.existing, result.retry) == (1, 2, (3,))
    assert result.rejected == ((4, "400: mapper_parsing_exception"),) and result.delivered == 3


def test_unreachable_elasticsearch_never_blocks_and_loses_nothing(tmp_path: Path) -> None:
    client = connect(f"http://127.0.0.1:{free_port()}", timeout=0.5)
    assert not ping(client, timeout=0.2)
    with pytest.raises(ES_ERRORS) as caught:
        client.info()
    assert retryable(caught.value)
    config = SinkConfig(queue_size=100, batch_size=50, linger=0.01, probe_min=0.05, probe_max=0.1)
    sink = BulkEventSink(client, tmp_path / "spool", Indices("unit"), config)
    rows = prediction_rows(hours=5, per_hour=100)
    for row in rows:
        sink.submit("prediction", [row])
    sink.submit("bogus", [{"x": 1}])
    assert sink.flush(timeout=0.5) is False
    sink.close(timeout=5)
    assert sink.spool.pending_records() == 500
    assert sink.stats.rejected == 1 and sink.stats.submitted == 501
    assert sink.rejects.pending_records() == 1


def test_get_event_sink_depends_on_es_url(settings: Settings) -> None:
    sink = get_event_sink(settings)
    assert isinstance(sink, NullSink)
    sink.submit("prediction", [{}])
    assert sink.flush() is True
    sink.close()
    with_es = settings.model_copy(update={"es_url": f"http://127.0.0.1:{free_port()}"})
    real = get_event_sink(with_es)
    assert isinstance(real, BulkEventSink)
    assert real.spool.folder == settings.var_dir / "spool" / "events"
    real.close(timeout=2)
    assert os.path.isdir(real.spool.folder)
