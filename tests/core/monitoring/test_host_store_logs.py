"""Host agent (psutil, Docker socket), SQLite store, read functions, ECS logging, CLI and route."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
import logging
import socket
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import SecretStr
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.auth import KeyRing
from api.deps import get_settings_dep
from api.routes.monitoring import router
from core import logs
from core.monitoring import jobs
from core.monitoring.cli import main
from core.monitoring.host import DockerStats, collect_host, container_document, run_agent
from core.monitoring.read import (
    AGENT_STALE,
    current_host,
    latest_drift,
    latest_host,
    prediction_summary,
)
from core.monitoring.store import MonitoringStore
from core.reference import build_reference
from core.settings import Settings
from tests.net import free_port
from tests.core.monitoring.helpers import (
    prediction_rows,
    reference,
    seed_predictions,
    training_frame,
)

STATS = {
    "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
    "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
    "memory_stats": {"usage": 600, "limit": 1000, "stats": {"inactive_file": 100}},
}


def test_collect_host_has_every_metric() -> None:
    _, counters = collect_host()
    docs, _ = collect_host(counters)
    host = docs[0]["system"]
    assert {"cpu", "load", "memory", "swap", "disk", "diskio", "network", "process"} <= set(host)
    assert 0 <= host["memory"]["pct"] <= 100 and host["process"]["count"] > 0
    cores = [d for d in docs if d["metricset"]["name"] == "core"]
    assert len(cores) == host["cpu"]["cores"]


def test_container_document_uses_docker_stats_formula() -> None:
    doc = container_document({"Id": "abcdef1234567890", "Names": ["/api.1"], "Image": "x"}, STATS)
    assert doc["container"]["cpu"]["pct"] == pytest.approx(40.0)
    assert doc["container"]["memory"] == {"usage": 500, "limit": 1000, "pct": 50.0}
    assert doc["container"]["name"] == "api.1" and doc["container"]["id"] == "abcdef123456"


class _DockerHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server API
        body: Any = [{"Id": "c1" * 8, "Names": ["/ui"], "Image": "ui"}]
        if "/stats" in self.path:
            body = STATS
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        del args


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, Any]:
        request, _ = super().get_request()
        return request, ("local", 0)


@pytest.fixture()
def docker_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "docker.sock"
    server = _UnixServer(str(path), _DockerHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()


@pytest.fixture()
def store_settings(settings: Settings, store_url: str) -> Settings:
    """The tmp settings with the embedded monitoring tables in ``store_url`` (SQLite, then
    PostgreSQL)."""
    return settings.model_copy(update={"database_url": store_url})


def test_agent_to_the_database_with_containers(
    store_settings: Settings, docker_socket: Path
) -> None:
    settings = store_settings
    store = MonitoringStore(settings.db_url)
    docker = DockerStats(docker_socket)
    assert docker.available and not DockerStats(docker_socket.with_name("none")).available
    taken = run_agent(store.add_host, interval=0.01, iterations=2, docker=docker)
    assert taken == 2
    found = latest_host(settings)
    assert found is not None and found["cpu_percent"] is not None
    assert found["document"]["system"]["memory"]["total"] > 0
    with store.engine.connect() as conn:
        kinds = dict(
            conn.exec_driver_sql(
                "select metricset, count(*) from monitoring_host group by metricset"
            ).all()
        )
    assert kinds["host"] == 2 and kinds["container"] == 2 and kinds["core"] >= 2


def test_agent_survives_emit_errors_and_bad_docker(tmp_path: Path) -> None:
    def broken(_docs: list[dict[str, Any]]) -> None:
        raise RuntimeError("store down")

    sock = tmp_path / "sock"
    sock.touch()
    assert run_agent(broken, interval=0.01, iterations=1, docker=DockerStats(sock)) == 1


def test_no_host_sample_yet(settings: Settings) -> None:
    assert latest_host(settings) is None


def test_current_host_is_live_when_the_agent_stopped(settings: Settings) -> None:
    """The agent's sample while it is fresh; a live one, naming the stale sample, after."""
    MonitoringStore(settings.db_url).add_host(collect_host()[0])
    stored = latest_host(settings)
    assert stored is not None
    at = datetime.fromisoformat(stored["at"])
    assert current_host(settings, now=at + AGENT_STALE) == stored
    later = current_host(settings, now=at + AGENT_STALE + timedelta(seconds=1))
    assert later["source"] == "live" and later["agent_last_seen"] == stored["at"]


def test_single_and_batch_latencies_apart(settings: Settings) -> None:
    """A 50-row batch (one request, 0.1 ms per row) next to 10 single predictions (5 ms each):
    the batch counts once, and does not pull the single predictions' p50 down."""
    singles = prediction_rows(hours=1, per_hour=10)
    for row in singles:
        row["latency_ms"] = 5.0
    batch = [
        {**row, "id": f"batch-{i}", "request_id": "one-batch", "latency_ms": 0.1}
        for i, row in enumerate(prediction_rows(hours=1, per_hour=50))
    ]
    seed_predictions(settings.db_url, singles + batch)
    summary = prediction_summary(settings, 24)
    assert summary["count"] == 60
    assert summary["latency_by_kind"] == {
        "single": {"requests": 10, "p50": 5.0, "p95": 5.0},
        "batch": {"requests": 1, "p50": 0.1, "p95": 0.1},
    }


def test_json_logging_has_ecs_fields(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    received: list[bytes] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def accept() -> None:
        conn, _ = listener.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.append(chunk)
                if b"\n" in chunk:
                    break

    reader = threading.Thread(target=accept, daemon=True)
    reader.start()
    json_settings = settings.model_copy(
        update={"log_json": True, "logstash_host": f"127.0.0.1:{port}"}
    )
    logs.configure_logging(json_settings, service="churnops-test")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("t").exception("it failed", extra={"url": {"path": "/x"}})
    reader.join(5)
    logs.configure_logging(settings)
    listener.close()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["log"]["level"] == "error" and line["message"] == "it failed"
    assert line["service"]["name"] == "churnops-test" and line["error"]["type"] == "ValueError"
    assert line["url"] == {"path": "/x"} and line["@timestamp"].endswith("Z")
    shipped = json.loads(b"".join(received).split(b"\n")[0])
    assert shipped["message"] == "it failed"


def test_cli_without_elasticsearch(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["setup"]) == 0
    assert "skipped" in capsys.readouterr().out
    assert main(["agent", "--interval", "0.01", "--iterations", "1"]) == 0
    assert latest_host(settings) is not None
    ref = tmp_path / "reference.json"
    build_reference(training_frame().iloc[:3000]).save(ref)
    csv = tmp_path / "new.csv"
    training_frame().iloc[3000:3500].to_csv(csv, index=False)
    code = main(["drift", "--csv", str(csv), "--reference", str(ref), "--no-notify",
                 "--fail-on-drift"])  # fmt: skip
    assert code == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["stored_in"] == "sqlite" and out["current_rows"] == 500
    assert out["verdict"] == "no_drift" and out["alpha"] == 0.05 and out["drifted_features"] == []
    with pytest.raises(SystemExit) as usage:  # a usage error, found before any work
        main(["drift", "--csv", str(csv), "--reference", str(ref), "--alpha", "2"])
    assert usage.value.code == 2
    assert "--alpha: 2 is not between 0 and 1" in capsys.readouterr().err
    assert main(["kibana-import"]) == 2
    assert main(["drift", "--reference", str(ref)]) == 1  # no predictions yet
    with_es = {"ES_URL": f"http://127.0.0.1:{free_port()}"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in with_es.items():
            patch.setenv(key, value)
        from core.settings import get_settings

        get_settings.cache_clear()
        assert main(["setup", "--wait", "0.5"]) == 1
        get_settings.cache_clear()


def test_monitoring_routes(store_settings: Settings) -> None:
    settings = store_settings
    app = FastAPI()
    app.include_router(router)
    app.dependency_overrides[get_settings_dep] = lambda: settings
    app.state.churnops = SimpleNamespace(keys=KeyRing(settings))  # the routes' guard reads it
    client = TestClient(app, headers={"X-API-Key": settings.require_api_key()})
    assert client.get("/monitoring/drift").status_code == 404
    no_data = client.post("/monitoring/drift")  # the drift job now, with nothing to compare
    assert no_data.status_code == 409 and "no recent predictions" in no_data.json()["detail"]
    reader = {"X-API-Key": "a-reader-key"}
    app.state.churnops = SimpleNamespace(
        keys=KeyRing(settings.model_copy(update={"reader_key": SecretStr(reader["X-API-Key"])}))
    )
    assert client.post("/monitoring/drift", headers=reader).status_code == 403  # admin only
    assert client.get("/monitoring/host", headers=reader).status_code == 200
    live = client.get("/monitoring/host").json()  # no agent has run: the API samples the host
    assert live["source"] == "live" and live["agent_last_seen"] is None
    assert 0 < live["memory_percent"] <= 100 and live["document"]["system"]["memory"]["total"] > 0
    seed_predictions(settings.db_url, prediction_rows(hours=2, per_hour=10))
    answer = client.get("/monitoring/summary", params={"hours": 24})
    assert answer.status_code == 200 and answer.json()["count"] == 20
    assert answer.json() == {**prediction_summary(settings, 24), "source": "db"}
    MonitoringStore(settings.db_url).add_host(collect_host()[0])
    sampled = client.get("/monitoring/host").json()
    assert sampled["memory_percent"] > 0 and sampled["source"] == "agent"
    run = jobs.run_drift(
        settings, jobs.DriftOptions(notify=False), reference=reference(), model_version="3"
    )
    drift = client.get("/monitoring/drift")
    assert drift.status_code == 200 and drift.json() == latest_drift(settings)
    assert drift.json()["verdict"] == "not_enough_rows" and drift.json()["current_rows"] == 20
    assert drift.json()["run_id"] == run.report.run_id and len(drift.json()["features"]) == 19
    broken = settings.model_copy(update={"es_url": f"http://127.0.0.1:{free_port()}"})
    app.dependency_overrides[get_settings_dep] = lambda: broken
    assert client.get("/monitoring/host").status_code == 503
    assert client.get("/monitoring/drift").status_code == 503
    assert client.get("/monitoring/summary", params={"source": "es"}).status_code == 503
