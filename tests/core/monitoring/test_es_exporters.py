"""Against the real Elasticsearch: templates, exporters (idempotent), panel aggregations, reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.monitoring import jobs
from core.monitoring.drift import compute_drift
from elasticsearch import Elasticsearch

from core.monitoring.es import ES_ERRORS, connect
from core.monitoring.host import collect_host, run_agent
from core.monitoring.indices import Indices, load_templates, setup
from tests.core.monitoring.kibana_checks import find_panel, panel_query
from core.monitoring.mlflow_export import MetricPoint as Point
from core.monitoring.mlflow_export import RunHistory, VersionRef, export_histories
from core.monitoring.quality import live_quality
from core.monitoring.read import (
    latest_drift,
    latest_host,
    prediction_summary,
    summary_from_db,
    summary_from_es,
)
from core.monitoring.sink import BulkEventSink
from core.settings import Settings
from tests.core.monitoring.helpers import (
    count,
    prediction_rows,
    reference,
    seed_predictions,
    shifted,
    training_frame,
)

pytestmark = [pytest.mark.es, pytest.mark.integration]


def runs() -> list[RunHistory]:
    """Two runs: final metrics (f1, roc_auc, precision, recall) and a 5-step loss curve each."""
    out = []
    for n, (f1, aliases) in enumerate(((0.80, ["challenger"]), (0.85, ["champion"])), start=1):
        t = 1_760_000_000_000 + n * 3_600_000
        points = [
            Point(name, value, 0, t)
            for name, value in (
                ("f1", f1),
                ("roc_auc", f1 + 0.1),
                ("precision", 0.9),
                ("recall", f1 - 0.1),
            )
        ]
        points += [Point("valid_loss", 1.0 / (s + 1), s, t + s) for s in range(5)]
        out.append(
            RunHistory(
                f"run{n}",
                "run",
                "1",
                "churnops",
                "FINISHED",
                t,
                t + 100,
                None,
                {"family": "hgb"},
                {"model_family": "hgb"},
                points,
                [VersionRef(str(n), aliases)],
            )
        )
    return out  # fmt: skip


def test_templates_apply_with_data_streams_and_retention(
    es: Elasticsearch, indices: Indices
) -> None:
    installed = setup(es, prefix=indices.prefix)
    templates = load_templates(prefix=indices.prefix)
    assert len(installed) == len(templates.components) + len(templates.indices)
    answer = es.indices.get_index_template(name=f"{indices.prefix}-*")
    by_name = {t["name"]: t["index_template"] for t in answer["index_templates"]}
    assert by_name[indices.predictions]["template"]["lifecycle"]["data_retention"] == "90d"
    assert (
        "data_stream" in by_name[indices.host]
        and "data_stream" not in by_name[indices.model_metrics]
    )
    simulated = es.indices.simulate_index_template(name=indices.predictions)
    props = simulated["template"]["mappings"]["properties"]
    assert props["features"]["properties"]["state"]["type"] == "keyword"
    assert props["prediction"]["properties"]["latency_ms"]["type"] == "double"
    assert simulated["template"]["settings"]["index"]["number_of_replicas"] == "0"
    assert setup(es, prefix=indices.prefix) == installed  # re-applying is an update


def test_export_mlflow_is_idempotent(es: Elasticsearch, indices: Indices) -> None:
    setup(es, prefix=indices.prefix)
    first = export_histories(es, runs(), "churn-model", indices)
    assert (first.runs, first.points, first.created, first.rejected) == (2, 18, 18, 0)
    again = export_histories(es, runs(), "churn-model", indices)
    assert (again.created, again.updated) == (0, 18)
    assert count(es, indices.model_metrics) == 18
    curve = count(es, indices.model_metrics, {"term": {"metric.kind": "curve"}})
    assert curve == 10
    panel = find_panel("model-metrics", "quality-by-version")
    answer = es.search(index=indices.model_metrics, body=panel_query(panel))
    f1 = {
        version["key"]: version["m0"]["value"]
        for metric in answer["aggregations"]["breakdown"]["buckets"]
        if metric["key"] == "f1"
        for version in metric["x"]["buckets"]
    }
    assert f1 == {"1": pytest.approx(0.80), "2": pytest.approx(0.85)}
    curves = es.search(
        index=indices.model_metrics,
        body=panel_query(find_panel("model-metrics", "training-curves")),
    )
    steps = curves["aggregations"]["breakdown"]["buckets"][0]["x"]["buckets"]
    assert [b["m0"]["value"] for b in steps] == pytest.approx([1.0, 0.5, 1 / 3, 0.25, 0.2])


def test_prediction_panels_and_summary_match_the_database(
    es: Elasticsearch, es_url: str, indices: Indices, settings: Settings, tmp_path: Path
) -> None:
    setup(es, prefix=indices.prefix)
    rows = prediction_rows(hours=3, per_hour=20)
    seed_predictions(settings.db_url, rows)
    sink = BulkEventSink(connect(es_url), tmp_path / "spool", indices)
    sink.submit(
        "prediction", [{**r, "created_at": r["created_at"].replace(tzinfo=UTC)} for r in rows]
    )
    assert sink.flush(timeout=30)
    sink.submit("prediction", rows[:10])  # a resend: same ids, nothing added
    assert sink.flush(timeout=30)
    sink.close()
    es.indices.refresh(index=indices.predictions)
    assert count(es, indices.predictions) == 60 and sink.stats.already_there == 10
    from_es = summary_from_es(es, indices, 24)
    from_db = summary_from_db(settings, 24)
    assert from_es["count"] == from_db["count"] == 60
    assert from_es["churn_rate"] == pytest.approx(from_db["churn_rate"]) == pytest.approx(0.2)
    assert [b["count"] for b in from_es["by_hour"]] == [b["count"] for b in from_db["by_hour"]]
    assert from_es["latency_ms"]["p50"] == pytest.approx(from_db["latency_ms"]["p50"], abs=0.5)
    es_settings = settings.model_copy(update={"es_url": es_url})
    assert prediction_summary(es_settings, 24, "es", indices)["source"] == "es"
    volume = es.search(
        index=indices.predictions, body=panel_query(find_panel("predictions", "volume"))
    )
    per_version = {b["key"]: sum(x["doc_count"] for x in b["x"]["buckets"])
                   for b in volume["aggregations"]["breakdown"]["buckets"]}  # fmt: skip
    assert per_version == {"1": 30, "2": 30}
    churn = es.search(
        index=indices.predictions, body=panel_query(find_panel("predictions", "churn-rate"))
    )
    assert all(b["m0"]["value"] == pytest.approx(0.2)
               for b in churn["aggregations"]["x"]["buckets"] if b["doc_count"])  # fmt: skip
    latency = es.search(
        index=indices.predictions, body=panel_query(find_panel("predictions", "latency"))
    )
    bucket = next(b for b in latency["aggregations"]["x"]["buckets"] if b["doc_count"])
    assert bucket["m1"]["values"]["95.0"] >= bucket["m0"]["values"]["50.0"] > 0
    by_version = es.search(
        index=indices.predictions, body=panel_query(find_panel("predictions", "by-version"))
    )
    rates = {b["key"]: b["m1"]["value"] for b in by_version["aggregations"]["x"]["buckets"]}
    expected = {
        v: sum(r["label"] == "yes" for r in rows if r["model_version"] == v) / 30
        for v in ("1", "2")
    }
    assert rates == pytest.approx(expected)


def test_drift_exporter_panels_and_read(
    es: Elasticsearch, es_url: str, indices: Indices, settings: Settings
) -> None:
    setup(es, prefix=indices.prefix)
    es_settings = settings.model_copy(update={"es_url": es_url})
    report = compute_drift(reference(), shifted(training_frame().iloc[3000:3600]))
    report = report.model_copy(
        update={"model_version": "2", "computed_at": datetime.now(UTC) - timedelta(minutes=5)}
    )
    assert jobs.store_results(es_settings, report, None, indices) == "es"
    assert jobs.store_results(es_settings, report, None, indices) == "es"  # re-run: same _ids
    es.indices.refresh(index=indices.drift)
    assert count(es, indices.drift) == 20
    found = latest_drift(es_settings, indices)
    assert found is not None and found["run_id"] == report.run_id and len(found["features"]) == 19
    assert {f["feature"] for f in found["features"] if f["drifted"]} == set(report.drifted_features)
    assert found["verdict"] == "drift" and found["threshold"] == report.alpha
    assert found["min_rows"] == report.min_rows
    stored = {f["feature"]: f for f in found["features"]}
    for item in report.features:
        assert stored[item.feature]["test"] == item.test
        assert stored[item.feature]["p_value_adjusted"] == pytest.approx(item.p_value_adjusted)
    adjusted = es.search(index=indices.drift, body=panel_query(find_panel("drift", "p-adjusted")))
    by_feature = {b["key"]: min(x["m0"]["value"] for x in b["x"]["buckets"] if x["doc_count"])
                  for b in adjusted["aggregations"]["breakdown"]["buckets"]}  # fmt: skip
    assert by_feature == pytest.approx({f.feature: f.p_value_adjusted for f in report.features})
    drifted = es.search(index=indices.drift, body=panel_query(find_panel("drift", "drifted")))
    top = next(b for b in drifted["aggregations"]["x"]["buckets"] if b["doc_count"])
    assert top["m0"]["value"] == len(report.drifted_features)
    psi = es.search(index=indices.drift, body=panel_query(find_panel("drift", "psi")))
    by_feature = {b["key"]: max(x["m0"]["value"] or 0 for x in b["x"]["buckets"])
                  for b in psi["aggregations"]["breakdown"]["buckets"]}  # fmt: skip
    assert len(by_feature) == 19
    for item in report.features:
        assert by_feature[item.feature] == pytest.approx(item.psi)
    overall = es.search(index=indices.drift, body=panel_query(find_panel("drift", "overall")))
    top = next(b for b in overall["aggregations"]["x"]["buckets"] if b["doc_count"])
    assert top["m1"]["value"] == pytest.approx(report.max_psi)
    assert top["m0"]["value"] == pytest.approx(report.mean_psi)
    ks = es.search(index=indices.drift, body=panel_query(find_panel("drift", "ks")))
    assert len(ks["aggregations"]["breakdown"]["buckets"]) == 15


def test_drift_run_sends_the_live_quality_to_elasticsearch(
    es: Elasticsearch, es_url: str, indices: Indices, settings: Settings
) -> None:
    """A drift run stores, beside its drift documents, the live quality of the same moment: the
    document's ``quality`` is what ``GET /metrics/live`` answers for that window (realized with n
    and intervals, CBPE estimate with n), and the Kibana panel reads both F1 figures from it."""
    setup(es, prefix=indices.prefix)
    es_settings = settings.model_copy(update={"es_url": es_url})
    rows = prediction_rows(hours=3, per_hour=20)
    rows[1]["actual"] = "yes"  # one churner the model missed: figures below 1
    seed_predictions(settings.db_url, rows)
    options = jobs.DriftOptions(notify=False)
    outcome = jobs.run_drift(es_settings, options, reference=reference(), indices=indices)
    es.indices.refresh(index=indices.quality)
    hits = es.search(index=indices.quality, query={"match_all": {}})["hits"]["hits"]
    assert len(hits) == 1 and hits[0]["_id"] == f"{outcome.report.run_id}-quality"
    doc = hits[0]["_source"]
    assert doc["drift"]["run_id"] == outcome.report.run_id
    end = datetime.fromisoformat(doc["quality"]["window"]["end"])
    same = live_quality(settings, until=end)
    assert doc["quality"] == same.model_dump(mode="json")
    window, realized = same.window, same.realized
    assert window.hours == 168 and window.predictions == 60 and window.labelled == 30
    assert realized is not None and realized.n == 30 and realized.churners == 4
    assert same.estimated is not None and same.estimated.n == 60
    assert realized.f1.value is not None and realized.f1.value < 1.0
    panel = es.search(
        index=indices.quality, body=panel_query(find_panel("model-metrics", "live-quality"))
    )
    bucket = next(b for b in panel["aggregations"]["x"]["buckets"] if b["doc_count"])
    assert bucket["m0"]["value"] == pytest.approx(same.estimated.f1.value)
    assert bucket["m1"]["value"] == pytest.approx(realized.f1.value)


def test_host_agent_to_elasticsearch_and_panels(
    es: Elasticsearch, es_url: str, indices: Indices, settings: Settings
) -> None:
    setup(es, prefix=indices.prefix)
    es_settings = settings.model_copy(update={"es_url": es_url})
    sink = BulkEventSink(connect(es_url), settings.var_dir / "spool", indices)
    assert run_agent(lambda docs: sink.submit("host", docs), interval=0.05, iterations=3) == 3
    assert sink.flush(timeout=30)
    sink.close()
    es.indices.refresh(index=indices.host)
    cores = collect_host()[0][0]["system"]["cpu"]["cores"]
    assert count(es, indices.host) == 3 * (1 + cores)
    found = latest_host(es_settings, indices)
    assert found is not None and 0 <= found["memory_percent"] <= 100
    answer = es.search(index=indices.host, body=panel_query(find_panel("host", "cores")))
    assert len(answer["aggregations"]["breakdown"]["buckets"]) == cores
    memory = es.search(index=indices.host, body=panel_query(find_panel("host", "memory")))
    assert any(b["m0"]["value"] for b in memory["aggregations"]["x"]["buckets"])


def test_reads_on_missing_indices(
    es: Elasticsearch, es_url: str, indices: Indices, settings: Settings
) -> None:
    es_settings = settings.model_copy(update={"es_url": es_url})
    assert latest_drift(es_settings, indices) is None
    assert latest_host(es_settings, indices) is None
    assert summary_from_es(es, indices)["count"] == 0
    assert count(es, indices.predictions) == 0
    with pytest.raises(ES_ERRORS):
        es.search(index=indices.predictions, body={"query": {"no_such_query": {}}})


def test_rejected_documents_are_kept(
    es: Elasticsearch, es_url: str, indices: Indices, tmp_path: Path
) -> None:
    setup(es, prefix=indices.prefix)
    sink = BulkEventSink(connect(es_url), tmp_path / "spool", indices)
    bad: dict[str, Any] = {"_id": "bad", "system": {"cpu": {"pct": "not a number"}}}
    sink.submit("host", [bad])
    assert sink.flush(timeout=10)
    sink.close()
    assert sink.stats.rejected == 1 and sink.rejects.pending_records() == 1


def test_export_from_a_real_mlflow_store(
    es: Elasticsearch, es_url: str, indices: Indices, settings: Settings
) -> None:
    """run_histories reads a real SQLite-backed MLflow store (through core.registry's client)."""
    from core import registry
    from core.monitoring.mlflow_export import export_mlflow, run_histories

    client = registry.configure(settings)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    run = client.create_run(experiment.experiment_id, run_name="hgb-1")
    for step in range(3):
        client.log_metric(run.info.run_id, "valid_loss", 1.0 / (step + 1), step=step)
    client.log_metric(run.info.run_id, "f1", 0.8)
    client.log_param(run.info.run_id, "family", "hgb")
    client.set_terminated(run.info.run_id)
    client.create_registered_model(settings.model_name)
    version = client.create_model_version(settings.model_name, "file:///tmp/x", run.info.run_id)
    client.set_registered_model_alias(settings.model_name, "champion", version.version)
    histories = run_histories(settings)
    assert len(histories) == 1 and len(histories[0].metrics) == 4
    assert histories[0].versions[0].aliases == ["champion"]
    setup(es, prefix=indices.prefix)
    es_settings = settings.model_copy(update={"es_url": es_url})
    first = export_mlflow(es_settings, indices)
    again = export_mlflow(es_settings, indices)
    assert (first.created, again.created, again.updated) == (4, 0, 4)
    hit = es.search(index=indices.model_metrics, body={"query": {"term": {"metric.name": "f1"}}})
    source = hit["hits"]["hits"][0]["_source"]
    assert source["model"]["aliases"] == ["champion"] and source["metric"]["kind"] == "final"
