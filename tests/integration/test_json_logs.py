"""LOG_JSON=1: every line the API writes is one ECS JSON object (uvicorn's own lines included), and
the UI logs through the same formatter (what Logstash reads in the stack)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from streamlit.testing.v1 import AppTest

from core.settings import Settings, get_settings
from ops import services
from tests.conftest import ROOT
from tests.net import free_port
from tests.ui.conftest import APP

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _ecs_lines(text: str) -> list[dict[str, object]]:
    """Every non-empty line parsed as JSON (a line that is not JSON fails the test)."""
    docs = []
    for line in text.splitlines():
        if line.strip():
            try:
                docs.append(json.loads(line))
            except ValueError:
                pytest.fail(f"not a JSON line: {line!r}")
    return docs


def test_the_api_logs_only_ecs_json_lines(tmp_path: Path) -> None:
    """Two workers started as make serve starts them, from the first line to the last."""
    port = free_port()
    settings = Settings(_env_file=None, log_json=True, api_key=SecretStr("k"), env="test")
    service = services.api(settings, host="127.0.0.1", port=port, workers=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(LOG_JSON="true", VAR_DIR=str(tmp_path / "var"), ENV="test", API_KEY="k")
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with  # stopped below
            list(service.argv), cwd=ROOT, env=service.environment(env),
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240  # a hang guard
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{service.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        assert httpx.get(f"{service.url}/ready", timeout=10).status_code == 503  # no champion
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    docs = _ecs_lines(log.read_text())
    messages = [str(d["message"]) for d in docs]
    assert any("Application startup complete" in m for m in messages)  # uvicorn's own line
    assert any("no champion loaded yet" in m for m in messages)  # the app's own line
    assert {d["service"]["name"] for d in docs} == {"churnops-api"}  # type: ignore[index]
    assert all(d["ecs"] == {"version": "8.11.0"} for d in docs)


def test_the_ui_logs_ecs_json(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The real app script under Streamlit's runner, with LOG_JSON=1."""
    import streamlit as st  # pylint: disable=import-outside-toplevel

    monkeypatch.setenv("LOG_JSON", "true")
    get_settings.cache_clear()
    st.cache_resource.clear()  # configure logging again, as a new UI process would
    try:
        AppTest.from_file(str(APP), default_timeout=30).run()
        err = capfd.readouterr().err
    finally:
        monkeypatch.delenv("LOG_JSON")
        get_settings.cache_clear()
        st.cache_resource.clear()
    started = [d for d in _ecs_lines(err) if "churnops UI started" in str(d.get("message"))]
    assert started and started[0]["service"] == {"name": "churnops-ui"}
