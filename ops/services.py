"""How each churnops service starts: the one definition used by make, ``make run``, the benchmark,
the Docker images and the Swarm stack.

* :func:`api` — ``uvicorn api.main:create_app --factory`` with ``uvicorn[standard]``'s uvloop and
  httptools, ``API_WORKERS`` worker processes, no access log (every prediction is stored), a
  graceful shutdown that lets the API flush its buffered prediction rows, and OpenMP capped at
  ``API_THREADS`` threads that spin only briefly (``GOMP_SPINCOUNT``): libgomp's default long spin
  made batches of two workers up to 10x slower on a 2-core machine.
* :func:`ui` — ``streamlit run ui/app.py`` headless, against ``API_URL``.
* :func:`shipper` — the prediction shipper (``churnops monitoring ship``).
* :func:`exporter` — the MLflow exporter (``churnops monitoring export-mlflow --follow``).

:func:`prepare_stores` creates or migrates the predictions database and the MLflow store once,
before any worker starts (each open is also locked, so a direct ``uvicorn`` start stays safe).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.settings import Settings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
#: How long libgomp threads spin before sleeping (its default spins ~300,000 times).
GOMP_SPINCOUNT = "10000"
#: Seconds uvicorn gives requests in flight and the prediction writer on SIGTERM.
GRACEFUL_SECONDS = "20"


class PortInUse(RuntimeError):
    """The port a service should listen on is taken; the message names the variable to set."""


@dataclass(frozen=True)
class Service:
    """A command line and the environment it adds, plus where it answers when it is up."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 0
    port_variable: str = ""
    health_path: str = "/health"

    @property
    def url(self) -> str:
        """Where the service answers (``http://host:port``; 127.0.0.1 for a wildcard host)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host  # nosec B104
        return f"http://{host}:{self.port}"

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with the service's additions."""
        return {**(os.environ if base is None else base), "PYTHONPATH": str(ROOT), **self.env}


def api(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> Service:
    """The API server (defaults: ``API_HOST``, ``API_PORT``, ``API_WORKERS``, ``API_THREADS``)."""
    host = host or settings.api_host
    port = settings.api_port if port is None else port
    workers = settings.api_workers if workers is None else workers
    argv: tuple[str, ...] = (
        sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
        "--host", host, "--port", str(port), "--workers", str(workers),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--no-server-header",
        "--timeout-graceful-shutdown", GRACEFUL_SECONDS,
    )  # fmt: skip
    if settings.log_json:  # uvicorn's own lines as ECS JSON too, from its first line
        argv = (*argv, "--log-config", str(Path(__file__).with_name("uvicorn-log-json.json")))
    env = {"OMP_NUM_THREADS": str(settings.api_threads), "GOMP_SPINCOUNT": GOMP_SPINCOUNT}
    return Service("API", argv, env, host, port, "API_PORT", "/health")


def ui(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    api_url: str | None = None,
) -> Service:
    """The Streamlit UI (defaults: ``UI_HOST``, ``UI_PORT``, ``API_URL``)."""
    host = host or settings.ui_host
    port = settings.ui_port if port is None else port
    argv = (
        sys.executable, "-m", "streamlit", "run", str(ROOT / "ui" / "app.py"),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
    )  # fmt: skip
    env = {"API_URL": api_url or settings.api_url}
    return Service("UI", argv, env, host, port, "UI_PORT", "/_stcore/health")


def shipper(settings: Settings, extra: Sequence[str] = ()) -> Service:
    """The prediction shipper (stored predictions to Elasticsearch, at nice 19)."""
    del settings
    argv = (sys.executable, "-m", "ops.cli", "monitoring", "ship", *extra)
    return Service("shipper", argv)


#: Seconds between two looks at the MLflow store by the exporter (the stack's exporter: the same).
EXPORT_EVERY = 30


def exporter(settings: Settings, extra: Sequence[str] = ()) -> Service:
    """The MLflow exporter: every :data:`EXPORT_EVERY` s, the runs, registrations and promotions
    that changed go to Elasticsearch's model-metrics index (``churnops monitoring export-mlflow
    --follow``), so the model-metrics chart moves after a retrain with no manual step."""
    del settings
    argv = (
        sys.executable, "-m", "ops.cli", "monitoring", "export-mlflow",
        "--follow", str(EXPORT_EVERY), *extra,
    )  # fmt: skip
    return Service("exporter", argv)


def check_port(service: Service) -> None:
    """Raise :class:`PortInUse` when ``service.port`` cannot be bound on ``service.host``.

    Raises:
        PortInUse: naming the port and the variable that moves it.
    """
    family = socket.AF_INET6 if ":" in service.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((service.host, service.port))
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
            free = _next_free_port(family, service.host, service.port)
            raise PortInUse(
                f"{service.name}: port {service.port} on {service.host} is already in use "
                f"(another churnops, or another program). Stop it, or choose another port"
                + (
                    f", e.g. {service.port_variable}={free}, which is free now (as in "
                    f"`{service.port_variable}={free} make run`)."
                    if free
                    else "."
                )
            ) from exc


def _next_free_port(family: socket.AddressFamily, host: str, taken: int) -> int | None:
    """The first port after ``taken`` (within 100) that ``host`` can bind now, for the hint."""
    for port in range(taken + 1, min(taken + 100, 65535)):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    return None


def prepare_stores(settings: Settings) -> None:
    """Create or migrate the predictions database and the MLflow store, once, before workers.

    An unreachable tracking *server* is not fatal here (the API then serves its local copy of the
    champion); a broken store or database is.

    Raises:
        core.store.StoreError: the predictions database cannot be opened or migrated.
        core.registry.TrackingStoreBroken: the MLflow store cannot be opened or migrated.
    """
    # Imported here: the UI and the shipper do not need MLflow or the store to start.
    # pylint: disable=import-outside-toplevel
    from core import registry
    from core.store import open_engine

    open_engine(settings.db_url).dispose()
    try:
        registry.configure(settings)
    except registry.TrackingUnavailable as exc:
        log.warning("MLflow is not reachable yet (%s): serving will start from the local copy", exc)
