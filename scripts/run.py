"""``make run``: serve the API and the UI together, training a first champion if there is none.

The API starts first; when ``GET /ready`` says ``not_ready`` (no champion), ``python -m core train``
trains and registers one and ``POST /model/reload`` loads it (the API's own key from the same
environment). Then the UI starts against that API.

With ``ES_URL`` set (environment or ``.env``), the prediction shipper
(``python -m core.monitoring ship``: stored predictions to Elasticsearch, at a low CPU priority)
runs alongside; without it, monitoring reads the prediction table and there is nothing to ship.

Every child runs in its own process group; Ctrl-C (SIGINT) or SIGTERM stops them all (SIGTERM to
each group, SIGKILL after a grace period), and on Linux each child also gets SIGTERM should this
launcher die, so no server is left behind. If one child exits, the others are stopped and the
launcher exits non-zero.

    python scripts/run.py [--host 127.0.0.1] [--api-port 8000] [--ui-port 8501] [--workers 2]
                          [--no-train | --train-args "--family rf"]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shlex
import signal
import subprocess  # nosec B404  # launching our own servers is the point of this script
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
GRACE_SECONDS = 15.0
PR_SET_PDEATHSIG = 1


def log(message: str) -> None:
    """Launcher messages go to stderr, prefixed, so they stand out from the servers' logs."""
    print(f"[run] {message}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the child if the launcher dies (no orphan even on SIGKILL)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


def get_json(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    """The JSON body of an answer, 4xx/5xx included (``/ready`` answers 503 when not ready)."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # nosec B310  # our http URL
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            return json.loads(err.read() or b"null")
        except ValueError:
            return {"status": f"HTTP {err.code}"}


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll ``url`` until it answers 2xx, the process exits, or the timeout passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # nosec B310  # our http URL
                if 200 <= answer.status < 300:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


class Supervisor:
    """Start child servers in their own process groups and stop them all, exactly once."""

    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start one server; it does not get the terminal's Ctrl-C (we forward it)."""
        # A long-lived child, stopped in stop(); preexec_fn is safe: the launcher has no threads.
        # pylint: disable-next=consider-using-with,subprocess-popen-preexec-fn
        proc = subprocess.Popen(  # nosec B603  # fixed argv, no shell
            list(argv),
            cwd=ROOT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.children[name] = proc
        log(f"{name} started (pid {proc.pid})")
        return proc

    def stop(self) -> None:
        """SIGTERM every child's process group, wait, then SIGKILL what is left."""
        if self.stopping:
            return
        self.stopping = True
        for name, proc in self.children.items():
            if proc.poll() is None:
                log(f"stopping {name} (pid {proc.pid})")
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for name, proc in self.children.items():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in {GRACE_SECONDS:.0f} s: killing it")
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            _signal_group(proc, signal.SIGKILL)  # stray grandchildren (e.g. API workers)

    def first_exit(self) -> tuple[str, int] | None:
        """The name and code of a child that has exited, if any."""
        for name, proc in self.children.items():
            code = proc.poll()
            if code is not None:
                return name, code
        return None


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # the child leads its own session, so pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


def train(supervisor: Supervisor, env: dict[str, str], extra: Sequence[str] = ()) -> bool:
    """Run the training entry point, supervised (Ctrl-C stops it too); output on the terminal."""
    proc = supervisor.start("training", [PYTHON, "-m", "core", "train", *extra], env)
    code = proc.wait()
    del supervisor.children["training"]
    if code != 0:
        log(f"training failed (exit {code})")
    return code == 0


def settings() -> Any:
    """``core.settings.get_settings()``: what the servers read (same environment, same rules)."""
    if str(ROOT) not in sys.path:  # `python scripts/run.py` puts only scripts/ on sys.path
        sys.path.insert(0, str(ROOT))
    from core.settings import (  # pylint: disable=import-outside-toplevel  # after the path fix
        get_settings,
    )

    return get_settings()


def api_key() -> str:
    """The admin key the API uses."""
    key: str = settings().require_api_key()
    return key


def start_shipper(supervisor: Supervisor, env: dict[str, str]) -> bool:
    """Start the prediction shipper when ``ES_URL`` is set; whether it was started."""
    if not settings().es_url:
        log("ES_URL is unset: monitoring reads the prediction table (no shipper)")
        return False
    supervisor.start("shipper", [PYTHON, "-m", "core.monitoring", "ship"], env)
    return True


def ensure_model(
    supervisor: Supervisor,
    api_url: str,
    env: dict[str, str],
    train_args: Sequence[str] | None,
    timeout: float,
) -> bool:
    """Train and hot-load a champion when the API has none (``GET /ready`` is ``not_ready``)."""
    ready = get_json(f"{api_url}/ready")
    if ready.get("status") != "not_ready":
        log(f"API {ready.get('status')}: model v{ready.get('model_version')}")
        return True
    log(f"the API has no model ({ready.get('reason')})")
    if train_args is None:
        log("--no-train: serving without a model (predictions answer 503)")
        return True
    log(f"training a first champion: python -m core train {' '.join(train_args)}".rstrip())
    if not train(supervisor, env, train_args):
        return False
    key = api_key()
    get_json(f"{api_url}/model/reload", method="POST", headers={"X-API-Key": key})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = get_json(f"{api_url}/ready")
        if ready.get("status") in ("ready", "degraded"):
            log(f"API {ready['status']}: model v{ready.get('model_version')}")
            return True
        time.sleep(1.0)
    log(f"the API did not load the new model: {ready.get('reason')}")
    return False


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options (defaults from API_PORT, UI_PORT, API_WORKERS, RUN_HOST)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default=os.environ.get("RUN_HOST", "127.0.0.1"))
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("API_PORT", "8000")))
    parser.add_argument("--ui-port", type=int, default=int(os.environ.get("UI_PORT", "8501")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("API_WORKERS", "2")))
    parser.add_argument("--no-train", action="store_true", help="never train, even without a model")
    parser.add_argument(
        "--train-args",
        default=os.environ.get("TRAIN_ARGS", ""),
        help="extra arguments of `python -m core train` (e.g. '--cv-folds 0')",
    )
    parser.add_argument("--startup-timeout", type=float, default=120.0, help="seconds per server")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start API, UI (and shipper), train a first model if needed; supervise until signal/exit."""
    args = parse_args(argv)
    api_url = f"http://{args.host}:{args.api_port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "API_URL": api_url}
    supervisor = Supervisor()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        log(f"got {signal.Signals(signum).name}: stopping {', '.join(supervisor.children)}")
        supervisor.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        api = supervisor.start(
            "API",
            [PYTHON, "-m", "uvicorn", "api.main:create_app", "--factory", "--host", args.host,
             "--port", str(args.api_port), "--workers", str(args.workers), "--no-access-log"],
            {**env, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        # The UI starts at once (it shows the API's state while a first model trains).
        ui = supervisor.start(
            "UI",
            [PYTHON, "-m", "streamlit", "run", str(ROOT / "ui" / "app.py"),
             "--server.address", args.host, "--server.port", str(args.ui_port),
             "--server.headless", "true", "--browser.gatherUsageStats", "false",
             "--client.toolbarMode", "minimal"],
            env,
        )  # fmt: skip
        ui_url = f"http://{args.host}:{args.ui_port}"
        if not wait_http(f"{api_url}/health", api, args.startup_timeout):
            log(f"the API did not come up on {api_url}")
            return 1
        start_shipper(supervisor, env)  # after the API has created/migrated the prediction table
        train_args = None if args.no_train else shlex.split(args.train_args)
        if not ensure_model(supervisor, api_url, env, train_args, args.startup_timeout):
            return 1
        if not wait_http(f"{ui_url}/_stcore/health", ui, args.startup_timeout):
            log(f"the UI did not come up on {ui_url}")
            return 1
        log(f"API {api_url}/docs · UI {ui_url} — Ctrl-C stops {', '.join(supervisor.children)}")
        while (ended := supervisor.first_exit()) is None:
            time.sleep(0.5)
        log(f"{ended[0]} exited with code {ended[1]}: stopping the others")
        return ended[1] or 1
    finally:
        supervisor.stop()


if __name__ == "__main__":
    sys.exit(main())
