"""ops.launcher (``make run``): process-group supervision without starting the real servers.

The full launcher (API + training + UI, then Ctrl-C) is exercised by the tests/e2e session fixture.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

import psutil
import pytest

from core.settings import get_settings
from ops import launcher
from ops.services import Service


@pytest.fixture(scope="module")
def run() -> ModuleType:
    return launcher


PARENT_WITH_CHILD = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
)
IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
)


def _family(pid: int) -> list[psutil.Process]:
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def test_stop_terminates_each_group_with_grandchildren(run: ModuleType) -> None:
    supervisor = run.Supervisor()
    supervisor.start("a", [sys.executable, "-c", PARENT_WITH_CHILD], {})
    supervisor.start("b", [sys.executable, "-c", "import time; time.sleep(60)"], {})
    time.sleep(0.5)
    procs = [p for child in supervisor.children.values() for p in _family(child.pid)]
    assert len(procs) == 3
    for child in supervisor.children.values():  # each leads its own group: no terminal Ctrl-C
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
    assert supervisor.first_exit() is None
    supervisor.stop()
    _, alive = psutil.wait_procs(procs, timeout=5)
    assert not alive
    assert supervisor.children["b"].returncode == -signal.SIGTERM
    supervisor.stop()  # idempotent


def test_a_child_ignoring_sigterm_is_killed_after_the_grace(
    run: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run, "GRACE_SECONDS", 0.5)
    supervisor = run.Supervisor()
    proc = supervisor.start("stubborn", [sys.executable, "-c", IGNORES_SIGTERM], {})
    time.sleep(0.5)
    supervisor.stop()
    assert proc.returncode == -signal.SIGKILL


def test_first_exit_reports_the_child_that_ended(run: ModuleType) -> None:
    supervisor = run.Supervisor()
    supervisor.start("quick", [sys.executable, "-c", "raise SystemExit(3)"], {})
    supervisor.start("slow", [sys.executable, "-c", "import time; time.sleep(60)"], {})
    deadline = time.monotonic() + 10
    while supervisor.first_exit() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert supervisor.first_exit() == ("quick", 3)
    supervisor.stop()


class _Ready(BaseHTTPRequestHandler):
    status = "not_ready"
    reloads = 0

    def log_message(self, *args: object) -> None:
        del args

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802  # pylint: disable=invalid-name  # http.server API
        ready = _Ready.status == "ready"
        self._send(200 if ready else 503, {"status": _Ready.status, "reason": "no champion",
                                           "model_version": "1" if ready else None})  # fmt: skip

    def do_POST(self) -> None:  # noqa: N802  # pylint: disable=invalid-name  # http.server API
        _Ready.reloads += 1
        _Ready.status = "ready"
        self._send(200, {"status": "ok", "action": "reload", "version": "1"})


@pytest.fixture()
def api_stub() -> Iterator[str]:
    _Ready.status, _Ready.reloads = "not_ready", 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_no_model_trains_then_reloads(
    run: ModuleType, api_stub: str, monkeypatch: pytest.MonkeyPatch, settings: object
) -> None:
    del settings  # API_KEY=test-key in the environment
    trained: list[list[str]] = []
    monkeypatch.setattr(run, "train", lambda sup, env, extra: trained.append(list(extra)) or True)
    assert run.ensure_model(run.Supervisor(), get_settings(), api_stub, {}, ["--cv-folds", "0"])
    assert trained == [["--cv-folds", "0"]] and _Ready.reloads == 1


def test_no_train_serves_without_a_model_and_a_ready_api_is_left_alone(
    run: ModuleType, api_stub: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run, "train", lambda *a: pytest.fail("must not train"))
    assert run.ensure_model(run.Supervisor(), get_settings(), api_stub, {}, None)
    _Ready.status = "ready"
    assert run.ensure_model(run.Supervisor(), get_settings(), api_stub, {}, [])
    assert _Ready.reloads == 0


def test_failed_training_is_reported(
    run: ModuleType, api_stub: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run, "train", lambda *a: False)
    assert not run.ensure_model(run.Supervisor(), get_settings(), api_stub, {}, [])


class _Recorder:
    """Stands in for the Supervisor: records what would be started."""

    def __init__(self) -> None:
        self.started: list[tuple[str, list[str]]] = []

    def start_service(self, service: Service, env: dict[str, str]) -> None:
        """Record the child."""
        del env
        self.started.append((service.name, list(service.argv)))


def test_the_shipper_and_the_exporter_run_only_with_es_url(
    run: ModuleType, settings: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ES_URL: nothing to send (the UI reads the table). ES_URL: the prediction shipper and the
    continuous MLflow exporter run beside the API."""
    del settings  # tmp stores, ES_URL unset
    recorder = _Recorder()
    assert run.start_monitoring(recorder, get_settings(), {}) is False and not recorder.started
    monkeypatch.setenv("ES_URL", "http://127.0.0.1:9200")
    get_settings.cache_clear()
    assert run.start_monitoring(recorder, get_settings(), {}) is True
    cli = [sys.executable, "-m", "ops.cli", "monitoring"]
    assert recorder.started == [
        ("shipper", [*cli, "ship"]),
        ("exporter", [*cli, "export-mlflow", "--follow", "30"]),
    ]
