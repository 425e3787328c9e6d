"""The images' runtime, rebuilt without Docker: the entrypoints they run really start.

The venv is made the way the Dockerfiles make it (``uv sync --frozen --no-dev
--no-install-project`` from the same uv.lock, in a folder holding only the build context, then the
project with ``uv pip install --no-deps --editable``); the API and the UI are started with the
images' own CMD and ENV (only host and port changed, through API_HOST/API_PORT/UI_HOST/UI_PORT),
against stores in a temporary folder, and probed with the images' own HEALTHCHECKs. uv's cache
makes the venv a matter of seconds. (The stack's ``mlflow server`` flags are checked against the
locked mlflow in test_stack.py: starting it takes 30-90 s on these machines.)
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, need
from tests.deploy.conftest import (
    DOCKERFILES,
    context_files,
    parse_dockerfile,
)
from tests.net import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START_TIMEOUT = 90.0


@dataclass(frozen=True)
class Runtime:
    """A venv like the images' /opt/venv and a folder like their /app."""

    venv: Path
    app: Path

    @property
    def bin(self) -> Path:
        """The venv's scripts (first on PATH, as in the images)."""
        return self.venv / "bin"


def _uv() -> list[str]:
    uv = shutil.which("uv")
    if uv:
        return [uv]
    probe = subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True)
    need(probe.returncode == 0, "uv is needed to build the image venv")
    return [sys.executable, "-m", "uv"]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Runtime:
    """Build the image runtime from the build context and uv.lock, as the Dockerfiles do."""
    base = tmp_path_factory.mktemp("image")
    app = base / "app"
    for relative in context_files():
        target = app / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    venv = base / "venv"
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    deps = base / "deps"  # the deps stage sees only pyproject.toml and uv.lock
    deps.mkdir()
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy2(ROOT / name, deps / name)
    steps = [
        (
            [*_uv(), "sync", "--frozen", "--no-dev", "--no-install-project", "--python", python],
            deps,
        ),
        (
            [*_uv(), "pip", "install", "--python", str(venv / "bin" / "python"), "--no-deps"]
            + ["--editable", str(app)],
            app,
        ),
    ]
    for command, cwd in steps:
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert result.returncode == 0, result.stderr[-3000:]
    return Runtime(venv, app)


def _image_command(kind: str, rt: Runtime) -> list[str]:
    """The image's CMD, its program taken from the runtime's venv (first on the image's PATH)."""
    command = parse_dockerfile(DOCKERFILES[kind]).exec_form("CMD")
    return [str(rt.bin / command[0]), *command[1:]]


def _image_env(kind: str, rt: Runtime, var_dir: Path) -> dict[str, str]:
    """The image's ENV (PATH to the venv, VAR_DIR to a temporary store) over a clean environment."""
    keep = {"HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    for key, value in parse_dockerfile(DOCKERFILES[kind]).env().items():
        env[key] = value.replace("$PATH", os.environ.get("PATH", "/usr/bin:/bin"))
    env["PATH"] = env["PATH"].replace("/opt/venv/bin", str(rt.bin))
    env["VAR_DIR"] = str(var_dir)
    return env


@dataclass
class Server:
    """A started entrypoint: its process and base URL."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def tail(self) -> str:
        """The end of its output, for assertion messages."""
        return self.log.read_text("utf-8", errors="replace")[-3000:]


def _start(command: list[str], env: dict[str, str], cwd: Path, log: Path, url: str) -> Server:
    with log.open("wb") as out:
        process = subprocess.Popen(  # pylint: disable=consider-using-with
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Server(process, url, log)


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)


def _get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # nosec B310 - loopback
            return answer.status, answer.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", errors="replace")


def _wait_ok(server: Server, path: str) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert server.process.poll() is None, f"exited {server.process.returncode}\n{server.tail()}"
        try:
            status, body = _get(server.url + path, timeout=2.0)
            if status == 200:
                return body
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{server.url}{path} not up after {START_TIMEOUT:.0f} s\n{server.tail()}")


def _healthcheck_passes(kind: str, rt: Runtime, env: dict[str, str], port: int) -> None:
    """Run the image's own HEALTHCHECK command against the started server."""
    image_port = {"api": "8000", "ui": "8501"}[kind]
    probe = [
        part.replace(f"127.0.0.1:{image_port}", f"127.0.0.1:{port}")
        for part in parse_dockerfile(DOCKERFILES[kind]).healthcheck()
    ]
    probe[0] = str(rt.bin / probe[0])
    result = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def api(runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API image's CMD, in production mode, on an empty store (no champion yet)."""
    var_dir = tmp_path_factory.mktemp("api-var")
    port = free_port()
    env = _image_env("api", runtime, var_dir)
    env["API_KEY"] = secrets.token_urlsafe(24)  # ENV=prod refuses placeholder keys
    env.update(API_WORKERS="1", API_HOST="127.0.0.1", API_PORT=str(port))
    command = _image_command("api", runtime)
    server = _start(command, env, runtime.app, var_dir / "api.log", f"http://127.0.0.1:{port}")
    try:
        yield server
    finally:
        _stop(server)


def test_api_entrypoint_starts(api: Server, runtime: Runtime) -> None:
    assert _wait_ok(api, "/health").strip() == '{"status":"ok"}'
    status, body = _get(api.url + "/ready")
    # no champion in the fresh registry: alive, and honest about not being ready
    assert status in {200, 503}, body
    assert '"status":' in body
    env = _image_env("api", runtime, Path(os.devnull))
    _healthcheck_passes("api", runtime, env, int(api.url.rsplit(":", 1)[1]))


def test_ui_entrypoint_starts(api: Server, runtime: Runtime, tmp_path: Path) -> None:
    _wait_ok(api, "/health")
    port = free_port()
    env = _image_env("ui", runtime, tmp_path / "var")
    env.update(API_URL=api.url, UI_HOST="127.0.0.1", UI_PORT=str(port))
    command = _image_command("ui", runtime)
    server = _start(command, env, runtime.app, tmp_path / "ui.log", f"http://127.0.0.1:{port}")
    try:
        assert _wait_ok(server, "/_stcore/health").strip() == "ok"
        status, page = _get(server.url + "/")
        assert status == 200 and "<html" in page.lower()
        _healthcheck_passes("ui", runtime, env, port)
    finally:
        _stop(server)
