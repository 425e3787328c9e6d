"""The real stack for end-to-end tests, started the way a user starts it: ``make run``.

One launcher per session, on free ports, with every store in a temporary ``VAR_DIR``: it starts
the API (uvicorn), finds no champion, trains one with ``churnops train``, hot-loads it, then
starts Streamlit. Teardown sends SIGINT (Ctrl-C) to the launcher and checks it stopped every server
and every process under them. Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import ROOT
from tests.net import free_port

API_KEY = "e2e-admin-key"
READER_KEY = "e2e-reader-key"
WRITER_KEY = "e2e-writer-key"
#: Headers of a reader and of a writer (the stack runs with a key for every role but predict).
READER = {"X-API-Key": READER_KEY}
WRITER = {"X-API-Key": WRITER_KEY}
STARTUP_TIMEOUT = float(os.environ.get("E2E_STARTUP_TIMEOUT", "360"))


def http_json(url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    """GET (or POST ``body`` as JSON) and return the decoded answer, 4xx/5xx included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return json.loads(err.read() or b"null")


@dataclass
class Stack:
    """The running launcher and where its servers answer."""

    api_url: str
    ui_url: str
    launcher: subprocess.Popen[bytes]
    log: Path
    var_dir: Path
    env: dict[str, str]

    def log_tail(self, lines: int = 40) -> str:
        """The end of the launcher's combined output, for failure messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _wait_ready(stack: Stack) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if stack.launcher.poll() is not None:
            pytest.fail(f"churnops run exited ({stack.launcher.returncode}):\n{stack.log_tail()}")
        if "[run] API " in stack.log.read_text(errors="replace") and "Ctrl-C stops" in (
            stack.log.read_text(errors="replace")
        ):
            ready = http_json(f"{stack.api_url}/ready")
            if ready.get("status") == "ready":
                return
        time.sleep(1.0)
    pytest.fail(f"the stack did not come up in {STARTUP_TIMEOUT:.0f} s:\n{stack.log_tail()}")


def ctrl_c(launcher: subprocess.Popen[bytes], log: Path) -> None:
    """Press Ctrl-C on ``make run`` as a terminal does (SIGINT to its process group): the launcher
    stops every server it started, says so, and leaves no process behind (make itself then ends
    on the signal, as make does)."""
    descendants = psutil.Process(launcher.pid).children(recursive=True)
    os.killpg(launcher.pid, signal.SIGINT)
    try:
        code = launcher.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        pytest.fail(f"make run ignored Ctrl-C:\n{log.read_text(errors='replace')[-3000:]}")
    _, alive = psutil.wait_procs(descendants, timeout=10)
    for proc in alive:  # do not leak them, whatever the assertion says
        proc.kill()
    text = log.read_text(errors="replace")
    assert code in (0, -signal.SIGINT, 128 + signal.SIGINT, 2), text[-3000:]
    assert not alive, f"left running after Ctrl-C: {[p.pid for p in alive]}"
    assert "got SIGINT: stopping" in text, text[-3000:]
    assert "stopping API" in text and "stopping UI" in text, text[-3000:]
    assert "[run] stopped: nothing left running" in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


def _stop(stack: Stack) -> None:
    ctrl_c(stack.launcher, stack.log)


@pytest.fixture(scope="module")  # stopped after its module: no server left running for the rest
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API + UI started by ``churnops run`` (which trains the first champion)."""
    var_dir = tmp_path_factory.mktemp("e2e-var")
    api_port, ui_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ES_", "SMTP_"))}
    for name in ("DATABASE_URL", "KIBANA_URL", "API_URL", "API_KEY_FILE"):
        env.pop(name, None)
    env.update(
        VAR_DIR=str(var_dir), ENV="test", API_KEY=API_KEY, READER_KEY=READER_KEY,
        WRITER_KEY=WRITER_KEY, PYTHONUNBUFFERED="1",
        API_PORT=str(api_port), UI_PORT=str(ui_port), TRAIN_ARGS="--cv-folds 0",
        STARTUP_TIMEOUT=str(STARTUP_TIMEOUT),
    )  # fmt: skip
    log = var_dir / "run.log"
    with log.open("wb") as out:
        launcher = subprocess.Popen(  # pylint: disable=consider-using-with
            ["make", "-s", "run"],  # as the README says, default workers
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    running = Stack(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}", launcher, log,
                    var_dir, env)  # fmt: skip
    try:
        _wait_ready(running)
        yield running
    finally:
        if launcher.poll() is None:
            _stop(running)


@pytest.fixture()
def page(browser: Any, stack: Stack, tmp_path: Path) -> Iterator[Any]:
    """A fresh browser page (1280 px wide, downloads allowed) on the running UI."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 1000}, accept_downloads=True, device_scale_factor=1
    )
    context.set_default_timeout(30_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    del tmp_path
    assert not errors, f"JavaScript errors in the UI: {errors}"


def uuid_in(text: str) -> str:
    """The first UUID-looking token in a text."""
    found = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)
    assert found, text
    return found.group(0)
