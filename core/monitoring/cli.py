"""``churnops monitoring {setup, export-mlflow, drift, agent, ship, kibana-import}``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.arguments import add_command, int_at_least, positive_float, probability
from core.logs import configure_logging
from core.monitoring.host import DOCKER_SOCKET, DockerStats, run_agent
from core.monitoring.indices import DEFAULT_PREFIX, DEPLOY_DIR, Indices, setup
from core.settings import Settings, get_settings

# The Elasticsearch client (it loads pyarrow), SQLAlchemy and pandas are imported inside the
# commands that use them, so --help and usage errors answer at once.
# pylint: disable=import-outside-toplevel

log = logging.getLogger("core.monitoring")


def _print(data: dict[str, Any]) -> None:
    print(json.dumps(data, default=str))


def cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    """Install the index templates (waits for Elasticsearch)."""
    from core.monitoring.es import from_settings, wait_ready
    from core.monitoring.store import MonitoringStore

    if not settings.es_url:
        _print({"setup": "skipped", "reason": "ES_URL is unset: monitoring uses SQLite"})
        MonitoringStore(settings.db_url)
        return 0
    with from_settings(settings) as client:
        wait_ready(client, timeout=args.wait)
        installed = setup(client, args.deploy_dir, args.prefix)
    _print({"setup": "ok", "templates": installed})
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    """Sync MLflow runs into Elasticsearch: once, or every ``--follow`` seconds until SIGTERM."""
    from core.monitoring.mlflow_export import MlflowFollower

    follower = MlflowFollower(settings, Indices(args.prefix))
    try:
        if args.follow is None:
            result = follower.sync()
            _print({"export": "ok", **vars(result)})
            return 0 if not result.rejected else 1
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):  # finish the current pass, then stop
            signal.signal(sig, lambda *_: stop.set())
        follower.follow(stop, args.follow, args.heartbeat)
    finally:
        follower.close()
    _print({"export": "stopped"})
    return 0


def cmd_drift(args: argparse.Namespace, settings: Settings) -> int:
    """Compute drift; exit 3 when the verdict is drift (for schedulers)."""
    from core.monitoring.jobs import DriftOptions, run_drift
    from core.reference import load_reference

    reference = load_reference(args.reference) if args.reference else None
    alpha = DriftOptions.alpha if args.alpha is None else args.alpha
    outcome = run_drift(
        settings,
        DriftOptions(args.hours, args.limit, alpha, not args.no_notify, args.retrain),
        csv=args.csv,
        reference=reference,
        indices=Indices(args.prefix),
    )
    report = outcome.report
    _print(
        {
            "drift": "ok",
            "stored_in": outcome.stored_in,
            "verdict": report.verdict,
            "current_rows": report.current_rows,
            "min_rows": report.min_rows,
            "alpha": report.alpha,
            "drifted_features": report.drifted_features,
            "min_p_value_adjusted": report.min_p_value_adjusted,
            "max_psi": round(report.max_psi, 4),
            "notified": outcome.notified,
            "retrain_job": outcome.retrain_job,
        }
    )
    return 3 if report.drifted and args.fail_on_drift else 0


def cmd_agent(args: argparse.Namespace, settings: Settings) -> int:
    """Run the host agent until SIGTERM/SIGINT (or ``--iterations``)."""
    from core.monitoring.sink import SinkConfig, get_event_sink
    from core.monitoring.store import MonitoringStore

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    docker = DockerStats(args.docker_socket)
    if settings.es_url:
        sink = get_event_sink(settings, Indices(args.prefix), SinkConfig(linger=0.5))

        def emit(docs: list[dict[str, Any]]) -> None:
            sink.submit("host", docs)

        taken = run_agent(emit, args.interval, args.iterations, docker, stop, args.disk)
        sink.flush(timeout=10.0)
        sink.close()
    else:
        store = MonitoringStore(settings.db_url)

        def emit(docs: list[dict[str, Any]]) -> None:
            store.add_host(docs)

        taken = run_agent(emit, args.interval, args.iterations, docker, stop, args.disk)
    _print({"agent": "stopped", "samples": taken, "docker": docker.available})
    return 0


def lower_priority(increment: int, autogroup: Path = Path("/proc/self/autogroup")) -> None:
    """Let serving keep the CPU: ``os.nice(increment)``, and the same for this session's autogroup.

    With ``kernel.sched_autogroup_enabled`` (Debian's default) the CPU is shared fairly between
    sessions first, and a nice value only counts inside its own session: a shipper started in a
    session of its own (``make run``, the benchmark) would still take a full share. So when this
    process leads its session, the session's autogroup gets the same nice value.
    """
    try:
        os.nice(increment)  # serving keeps the CPU; the shipper catches up when it is free
    except OSError as exc:
        log.warning("ship: cannot change the priority by %d: %s", increment, exc)
        return
    if os.getsid(0) == os.getpid():
        try:
            autogroup.write_text(str(min(19, increment)), encoding="ascii")
        except OSError:  # no autogroup support (or not allowed): the plain nice value stays
            pass


def cmd_ship(args: argparse.Namespace, settings: Settings) -> int:
    """Ship the stored predictions to Elasticsearch until SIGTERM/SIGINT (or once, ``--once``)."""
    from sqlalchemy.exc import SQLAlchemyError

    from core.monitoring.outbox import PredictionShipper, ShipperConfig

    if not settings.es_url:
        # Nothing to do: without Elasticsearch the UI and /monitoring read the prediction table.
        _print(
            {"ship": "skipped", "reason": "ES_URL is unset: monitoring reads the prediction table"}
        )
        return 0
    if args.nice:
        lower_priority(args.nice)
    config = ShipperConfig(batch=args.batch, interval=args.interval)
    shipper = PredictionShipper.from_settings(settings, Indices(args.prefix), config)
    code = 0
    try:
        if args.once:
            code = 1 if shipper.drain().retry else 0
        else:
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):  # finish the current batch, then stop
                signal.signal(sig, lambda *_: stop.set())
            shipper.run(stop, args.heartbeat)
    except SQLAlchemyError as exc:
        log.error("ship failed: %s", exc)
        code = 1
    finally:
        shipper.close()
    stats = vars(shipper.stats) | {"lag_seconds": round(shipper.stats.lag_seconds, 3)}
    _print({"ship": "stopped", **stats})
    return code


def cmd_kibana(args: argparse.Namespace, settings: Settings) -> int:
    """Import the dashboards into Kibana."""
    from core.monitoring import kibana

    if not settings.kibana_url:
        print("KIBANA_URL is not set", file=sys.stderr)
        return 2
    password = settings.es_password.get_secret_value() if settings.es_password else None
    auth = (settings.es_username, password) if settings.es_username and password else None
    files = sorted(args.folder.glob("*.ndjson"))
    count = kibana.import_saved_objects(settings.kibana_url, files, auth, args.wait)
    _print({"kibana_import": "ok", "files": [f.name for f in files], "objects": count})
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="churnops monitoring",
        description="Monitoring: ES templates, MLflow export, drift, host agent, shipper, Kibana.",
    )
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="index name prefix")
    commands = parser.add_subparsers(dest="command", required=True)

    sub = add_command(commands, "setup", "install index/component templates in Elasticsearch")
    sub.add_argument(
        "--deploy-dir", type=Path, default=DEPLOY_DIR, help="folder with elasticsearch/"
    )
    sub.add_argument(
        "--wait", type=positive_float, default=300.0, help="seconds to wait for the cluster"
    )
    sub.set_defaults(func=cmd_setup)

    sub = add_command(commands, "export-mlflow", "sync MLflow runs/metrics into Elasticsearch")
    sub.add_argument(
        "--follow",
        type=positive_float,
        metavar="SECONDS",
        help="keep running: export the new and changed runs every SECONDS (until SIGTERM)",
    )
    sub.add_argument("--heartbeat", type=Path, help="file touched on every turn (liveness probe)")
    sub.set_defaults(func=cmd_export)

    sub = add_command(
        commands, "drift", "drift tests (KS, z, chi-squared; Holm) of recent predictions or a CSV"
    )
    sub.add_argument("--csv", type=Path, help="compare this CSV instead of recent predictions")
    sub.add_argument("--reference", type=Path, help="reference.json (default: the champion's)")
    sub.add_argument(
        "--hours", type=positive_float, default=24.0, help="window of recent predictions"
    )
    sub.add_argument(
        "--limit", type=int_at_least(1), default=5000, help="most recent predictions to use"
    )
    sub.add_argument(
        "--alpha",
        type=probability,
        help="family-wise false-alarm rate of the verdict (default 0.05)",
    )
    sub.add_argument("--no-notify", action="store_true", help="do not send a notification")
    sub.add_argument("--retrain", action="store_true", help="POST /retrain to the API on drift")
    sub.add_argument(
        "--fail-on-drift", action="store_true", help="exit 3 when the verdict is drift"
    )
    sub.set_defaults(func=cmd_drift)

    sub = add_command(commands, "agent", "host metrics (psutil + Docker socket) at an interval")
    sub.add_argument(
        "--interval", type=positive_float, default=10.0, help="seconds between samples"
    )
    sub.add_argument(
        "--iterations", type=int_at_least(1), help="stop after N samples (default: run forever)"
    )
    sub.add_argument("--docker-socket", type=Path, default=DOCKER_SOCKET, help="Docker API socket")
    sub.add_argument("--disk", default="/", help="filesystem whose usage is reported")
    sub.set_defaults(func=cmd_agent)

    sub = add_command(commands, "ship", "ship stored predictions (the outbox) to Elasticsearch")
    sub.add_argument(
        "--interval", type=positive_float, default=1.0, help="seconds to wait when all shipped"
    )
    sub.add_argument("--batch", type=int_at_least(1), default=2_000, help="rows per bulk request")
    sub.add_argument(
        "--once", action="store_true", help="ship what is pending, then exit (1 if some is left)"
    )
    sub.add_argument(
        "--nice", type=int, default=19, help="os.nice increment: serving keeps the CPU (0 = none)"
    )
    sub.add_argument("--heartbeat", type=Path, help="file touched on every turn (liveness probe)")
    sub.set_defaults(func=cmd_ship)

    sub = add_command(commands, "kibana-import", "import deploy/kibana/*.ndjson into Kibana")
    sub.add_argument("--folder", type=Path, default=DEPLOY_DIR / "kibana", help="ndjson folder")
    sub.add_argument(
        "--wait", type=positive_float, default=300.0, help="seconds to wait for Kibana"
    )
    sub.set_defaults(func=cmd_kibana)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    from core.monitoring import kibana
    from core.monitoring.es import ES_ERRORS

    settings = get_settings()
    configure_logging(settings, service="churnops-monitoring")
    try:
        code: int = args.func(args, settings)
    except (*ES_ERRORS, kibana.KibanaError, ValueError, FileNotFoundError) as exc:
        log.error("%s failed: %s", args.command, exc)
        return 1
    return code
