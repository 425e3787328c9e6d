"""The registry against a real ``mlflow server`` subprocess over HTTP (the make mlflow-ui setup).

Logs, registers, gates and loads a champion through the server; then stops the server and checks
that the champion still loads from the local copy, reported as degraded.
"""

from __future__ import annotations

import os
import signal
import subprocess  # nosec B404 - the test starts the real mlflow server
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest

from core import registry
from core.settings import Settings
from tests import mlflow_factory as factory
from tests.conftest import need
from tests.net import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MLFLOW = Path(sys.executable).with_name("mlflow")


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:  # nosec B310
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server not healthy after {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server and every worker it forked (its own process group, started below)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module", name="server")
def server_fixture(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """A real ``mlflow server`` on a free port with a SQLite store and served artifacts."""
    need(MLFLOW.is_file(), f"mlflow CLI not found at {MLFLOW}")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--serve-artifacts", "--artifacts-destination", str(root / "mlartifacts"),
    ]  # fmt: skip
    # Own session: _stop() signals the server's whole process group (its uvicorn worker too).
    with (
        (root / "server.log").open("wb") as log,
        subprocess.Popen(  # nosec B603
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        ) as process,
    ):
        try:
            _wait_healthy(url, process, timeout=180)
            yield url, root, process
        finally:
            _stop(process)
            mlflow.set_tracking_uri(None)


def test_registry_over_http_then_degraded_when_server_stops(
    server: tuple[str, Path, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Track, register, gate and load through HTTP; artifacts land in the served root; with the
    server gone the champion is still served from the local copy."""
    url, root, process = server
    settings = Settings(var_dir=tmp_path / "var", mlflow_tracking_uri=url, _env_file=None)
    run_id = registry.log_training(settings, factory.record(60))
    version = registry.register(settings, run_id)
    decision = registry.gate(settings, version, factory.holdout())
    assert decision.promoted, decision.reason
    assert decision.rows is not None and decision.rows.compared_rows == len(factory.holdout()[1])
    assert list((root / "mlartifacts").rglob("roc_curve.png")), "artifacts not served by server"
    assert len(registry.list_plots(settings, version)) >= 5
    loaded = registry.load_champion(settings)
    assert loaded.version == version and not loaded.degraded
    seen = loaded.bundle.seen_rows  # fingerprints.npy came back through the served artifacts
    assert seen is not None and np.array_equal(seen, factory.record(60).bundle.fingerprints)
    versions = registry.list_versions(settings)
    assert versions[0].aliases == ["champion"]  # promoted: no longer a challenger

    _stop(process)  # same URI, server gone
    assert process.poll() is not None
    offline = registry.load_champion(settings, timeout=0.5)
    assert offline.degraded and offline.version == version
    assert url in offline.reason and offline.metadata["source"] == "cache"
    x, _ = factory.holdout()
    np.testing.assert_allclose(
        offline.bundle.pipeline.predict_proba(x), loaded.bundle.pipeline.predict_proba(x), 0, 0
    )
