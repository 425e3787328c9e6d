"""``make run`` (``churnops run``): serve the API and the UI together, training a first champion if
there is none.

In order: the predictions database and the MLflow store are created or migrated (once, here, before
any worker starts); both ports are checked (a taken port names the variable that moves it); the API
and the UI start (the UI shows the API's state while it waits); when ``GET /ready`` says
``not_ready`` (no champion), ``churnops train`` trains and registers one, with its progress on the
terminal, and ``POST /model/reload`` loads it. With ``ES_URL`` set, the prediction shipper and the
MLflow exporter run alongside. There is no fixed start-up deadline: the launcher waits as long as
a server is alive and says every 15 s what it is waiting for (``STARTUP_TIMEOUT`` sets one).

Every child runs in its own process group; Ctrl-C (SIGINT) or SIGTERM stops them all (SIGTERM to
each group, SIGKILL after a grace period), and on Linux each child also gets SIGTERM should this
launcher die, so no server is left behind. If one child exits, the others are stopped and the
launcher exits non-zero.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shlex
import signal
import subprocess  # launching our own servers is the point of this module  # nosec B404
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from core.arguments import doc_text, int_at_least, port
from core.settings import Settings, get_settings
from api.auth import KeyRing
from ops import services
from ops.interrupt import Interrupted, stop_on_signals
from ops.services import ROOT, PortInUse, Service

PYTHON = sys.executable
GRACE_SECONDS = 15.0
PR_SET_PDEATHSIG = 1
#: Seconds between "still waiting" lines while a server starts.
PROGRESS_EVERY = 15.0


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
        with urllib.request.urlopen(request, timeout=30) as answer:  # our http URL  # nosec B310
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            return json.loads(err.read() or b"null")
        except ValueError:
            return {"status": f"HTTP {err.code}"}


def wait_http(url: str, proc: subprocess.Popen[bytes], name: str, timeout: float = 0.0) -> bool:
    """Poll ``url`` until it answers 2xx (True), or the process exits or ``timeout`` (when > 0)
    passes (False); a line every :data:`PROGRESS_EVERY` seconds says what it waits for."""
    started = time.monotonic()
    said = started
    while timeout <= 0 or time.monotonic() - started < timeout:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # our http URL  # nosec B310
                if 200 <= answer.status < 300:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() - said >= PROGRESS_EVERY:
            said = time.monotonic()
            log(f"still waiting for the {name} on {url} ({said - started:.0f} s)")
        time.sleep(0.3)
    return False


class Supervisor:
    """Start child servers in their own process groups and stop them all, exactly once."""

    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> subprocess.Popen[bytes]:
        """Start one server; it does not get the terminal's Ctrl-C (we forward it)."""
        # A long-lived child, stopped in stop(); preexec_fn is safe: the launcher has no threads.
        # pylint: disable-next=consider-using-with,subprocess-popen-preexec-fn
        proc = subprocess.Popen(  # fixed argv, no shell  # nosec B603
            list(argv),
            cwd=ROOT,
            env=dict(env),
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.children[name] = proc
        log(f"{name} started (pid {proc.pid})")
        return proc

    def start_service(self, service: Service, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        """Start a service of :mod:`ops.services` with its own additions to ``env``."""
        return self.start(service.name, service.argv, service.environment(env))

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


def train(supervisor: Supervisor, env: Mapping[str, str], extra: Sequence[str] = ()) -> bool:
    """Run ``churnops train``, supervised (Ctrl-C stops it too); its progress on the terminal."""
    proc = supervisor.start("training", [PYTHON, "-m", "ops.cli", "train", *extra], env)
    code = proc.wait()
    del supervisor.children["training"]
    if code != 0:
        log(f"training failed (exit {code})")
    return code == 0


def start_monitoring(supervisor: Supervisor, settings: Settings, env: Mapping[str, str]) -> bool:
    """Start the prediction shipper and the MLflow exporter when ``ES_URL`` is set; whether they
    were started."""
    if not settings.es_url:
        log("ES_URL is unset: monitoring reads the prediction table (no shipper, no exporter)")
        return False
    supervisor.start_service(services.shipper(settings), env)
    supervisor.start_service(services.exporter(settings), env)
    return True


def ensure_model(
    supervisor: Supervisor,
    settings: Settings,
    api_url: str,
    env: Mapping[str, str],
    train_args: Sequence[str] | None,
) -> bool:
    """Train and hot-load a champion when the API has none (``GET /ready`` is ``not_ready``)."""
    ready = get_json(f"{api_url}/ready")
    if ready.get("status") != "not_ready":
        log(f"API {ready.get('status')}: model v{ready.get('model_version')}")
        return True
    log(f"the API has no model yet ({ready.get('reason')})")
    if train_args is None:
        log("--no-train: serving without a model (predictions answer 503)")
        return True
    log(f"training a first champion: churnops train {' '.join(train_args)}".rstrip())
    if not train(supervisor, env, train_args):
        return False
    key = settings.require_api_key()
    get_json(f"{api_url}/model/reload", method="POST", headers={"X-API-Key": key})
    started = said = time.monotonic()
    while True:
        ready = get_json(f"{api_url}/ready")
        if ready.get("status") in ("ready", "degraded"):
            log(f"API {ready['status']}: model v{ready.get('model_version')}")
            return True
        if settings.startup_timeout and time.monotonic() - started > settings.startup_timeout:
            log(f"the API did not load the new model: {ready.get('reason')}")
            return False
        if time.monotonic() - said >= PROGRESS_EVERY:
            said = time.monotonic()
            log(f"waiting for the API to load the new model ({ready.get('reason')})")
        time.sleep(0.5)


def parse_args(argv: Sequence[str] | None, settings: Settings) -> argparse.Namespace:
    """Options; defaults from the settings (``API_PORT``, ``UI_PORT``, ``API_WORKERS``...)."""
    parser = argparse.ArgumentParser(prog="churnops run", description=doc_text(__doc__))
    parser.add_argument("--host", default=None, help="interface of both servers (API_HOST/UI_HOST)")
    parser.add_argument("--api-port", type=port, default=settings.api_port)
    parser.add_argument("--ui-port", type=port, default=settings.ui_port)
    parser.add_argument("--workers", type=int_at_least(1), default=settings.api_workers)
    parser.add_argument("--no-train", action="store_true", help="never train, even without a model")
    parser.add_argument(
        "--train-args",
        default=os.environ.get("TRAIN_ARGS", ""),
        help="extra arguments of `churnops train` (e.g. '--cv-folds 0')",
    )
    return parser.parse_args(argv)


def _supervise(
    supervisor: Supervisor, settings: Settings, args: argparse.Namespace, api: Service, ui: Service
) -> int:
    """Start everything in order, then wait for a child's exit; the exit code of ``make run``."""
    env = {**os.environ, "API_URL": api.url}
    for service in (api, ui):
        services.check_port(service)
    log(f"preparing the stores under {settings.var_dir} (predictions database, MLflow)")
    services.prepare_stores(settings)
    api_proc = supervisor.start_service(api, env)
    ui_proc = supervisor.start_service(ui, env)  # it shows the API's state while it waits
    if not wait_http(f"{api.url}/health", api_proc, "API", settings.startup_timeout):
        log(f"the API did not come up on {api.url}")
        return 1
    start_monitoring(supervisor, settings, env)
    train_args = None if args.no_train else shlex.split(args.train_args)
    if not ensure_model(supervisor, settings, api.url, env, train_args):
        return 1
    if not wait_http(f"{ui.url}/_stcore/health", ui_proc, "UI", settings.startup_timeout):
        log(f"the UI did not come up on {ui.url}")
        return 1
    log(f"API {api.url}/docs · UI {ui.url} — Ctrl-C stops {', '.join(supervisor.children)}")
    log(KeyRing(settings).open_notice() or "API keys: from API_KEY, WRITER_KEY, READER_KEY")
    while (ended := supervisor.first_exit()) is None:
        time.sleep(0.5)
    log(f"{ended[0]} exited with code {ended[1]}: stopping the others")
    return ended[1] or 1


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the stores, start API and UI (and shipper and exporter), train a first model if
    needed, then supervise until a signal or a child's exit. Ctrl-C or SIGTERM at any moment
    (the first training included) stops every child and exits 0."""
    settings = get_settings()
    args = parse_args(argv, settings)
    api = services.api(settings, host=args.host, port=args.api_port, workers=args.workers)
    ui = services.ui(settings, host=args.host, port=args.ui_port, api_url=api.url)
    supervisor = Supervisor()
    with stop_on_signals():
        try:
            return _supervise(supervisor, settings, args, api, ui)
        except Interrupted as exc:
            log(f"got {exc}: stopping {', '.join(supervisor.children) or 'nothing'}")
            supervisor.stop()
            log("stopped: nothing left running")
            return 0
        except PortInUse as exc:
            log(str(exc))
            return 2
        except RuntimeError as exc:  # a broken store: core.store.StoreError, TrackingStoreBroken
            log(f"cannot start: {exc}")
            return 1
        finally:
            supervisor.stop()
