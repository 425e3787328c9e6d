"""``churnops``: the one command line of the project (``[project.scripts]``; ``make`` calls it).

    churnops serve api|ui|shipper|exporter   start one service in the foreground (ops.services)
    churnops prepare              create or migrate the predictions database and MLflow store
    churnops migrate-store        copy the SQLite history into DATABASE_URL (e.g. PostgreSQL)
    churnops run                  API + UI (+ shipper), training a first model if needed
    churnops validate|train|evaluate|predict|promote|rollback|champion|tune   the ML pipeline
    churnops monitoring ...       Elasticsearch setup, shipper, drift, host agent, MLflow export
    churnops pipeline ...         run a chain of make targets as one pipeline, then notify
    churnops watch                run the matching pipeline on every change
    churnops notify ...           desktop/email notifications by hand, flush the email outbox

Errors are one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from core.arguments import doc_text, int_at_least, port
from core.settings import get_settings
from ops import services

log = logging.getLogger("churnops")

ML_COMMANDS = (
    "validate",
    "train",
    "evaluate",
    "predict",
    "promote",
    "rollback",
    "champion",
    "tune",
)


def _serve(argv: Sequence[str]) -> int:
    """``churnops serve api|ui|shipper|exporter``: start one service in the foreground, as
    defined once in :mod:`ops.services` (the API prepares the stores and the API and UI check their
    port first). Arguments after ``shipper``/``exporter`` go to that command (e.g.
    ``--heartbeat FILE``)."""
    parser = argparse.ArgumentParser(prog="churnops serve", description=doc_text(_serve.__doc__))
    parser.add_argument("service", choices=("api", "ui", "shipper", "exporter"))
    parser.add_argument("--host", help="interface (API_HOST / UI_HOST)")
    parser.add_argument("--port", type=port, help="port (API_PORT / UI_PORT)")
    parser.add_argument(
        "--workers", type=int_at_least(1), help="API worker processes (API_WORKERS)"
    )
    args, extra = parser.parse_known_args(argv)
    if extra and args.service in ("api", "ui"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    settings = get_settings()
    if args.service == "api":
        service = services.api(settings, host=args.host, port=args.port, workers=args.workers)
    elif args.service == "ui":
        service = services.ui(settings, host=args.host, port=args.port)
    else:
        service = getattr(services, args.service)(settings, extra)
    if service.port_variable:
        services.check_port(service)
    if args.service == "api":
        services.prepare_stores(settings)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(service.argv[0], list(service.argv), service.environment())  # nosec B606
    return 0  # pragma: no cover - execve does not return


def _prepare(argv: Sequence[str]) -> int:
    """``churnops prepare``: create or migrate the stores now, once, under their locks."""
    argparse.ArgumentParser(
        prog="churnops prepare", description=doc_text(_prepare.__doc__)
    ).parse_args(argv)
    settings = get_settings()
    services.prepare_stores(settings)
    print(f"stores ready: {settings.db_url} · {settings.tracking_uri}")
    return 0


def _migrate_store(argv: Sequence[str]) -> int:
    """``churnops migrate-store``: copy a predictions history (by default the embedded SQLite
    file under VAR_DIR) into another database (by default DATABASE_URL), verified; running it
    again copies nothing twice. Last stdout line: one JSON object of the counts."""
    settings = get_settings()
    embedded = settings.model_copy(update={"database_url": None}).db_url
    parser = argparse.ArgumentParser(
        prog="churnops migrate-store", description=doc_text(_migrate_store.__doc__)
    )
    parser.add_argument("--from", dest="source", default=embedded, help=f"default: {embedded}")
    parser.add_argument(
        "--to", dest="target", default=settings.database_url, help="default: DATABASE_URL"
    )
    args = parser.parse_args(argv)
    if not args.target:
        print(
            "churnops migrate-store: say where to copy the history: --to URL or DATABASE_URL "
            "(e.g. postgresql+psycopg://churnops:PASSWORD@localhost:5432/churnops)",
            file=sys.stderr,
        )
        return 2
    # Imported once the arguments are parsed: the store pulls in SQLAlchemy and pandas.
    from core.store.copy import copy_store  # pylint: disable=import-outside-toplevel

    done = copy_store(args.source, args.target)
    print(f"{done.source} -> {done.target}", file=sys.stderr)
    for table in done.tables:
        print(
            f"  {table.table:<20} {table.source:>9} rows, {table.copied:>9} copied, "
            f"{table.present:>9} found in the target{'' if table.verified else '  MISSING'}",
            file=sys.stderr,
        )
    print(json.dumps(done.summary(), separators=(",", ":")))
    return 0 if done.verified else 1


def _delegate(module: str) -> Callable[[Sequence[str]], int]:
    def run(argv: Sequence[str]) -> int:
        # Imported when used: each command pulls in only what it needs (MLflow, pandas...).
        entry: Callable[[Sequence[str]], int] = getattr(
            __import__(module, fromlist=["main"]), "main"
        )
        return int(entry(list(argv)) or 0)

    return run


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "serve": _serve,
    "prepare": _prepare,
    "migrate-store": _migrate_store,
    "run": _delegate("ops.launcher"),
    "monitoring": _delegate("core.monitoring.cli"),
    "pipeline": _delegate("ops.runner"),
    "watch": _delegate("ops.watch"),
    "notify": _delegate("core.notify"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to one command; returns its exit code."""
    raw = list(sys.argv[1:] if argv is None else argv)
    if not raw or raw[0] in ("-h", "--help"):
        print(doc_text(__doc__, whole=True))
        return 0 if raw else 2
    command, rest = raw[0], raw[1:]
    try:
        if command in ML_COMMANDS:
            return _delegate("core.cli")(raw)
        if command in COMMANDS:
            return COMMANDS[command](rest)
    except services.PortInUse as exc:
        print(f"churnops {command}: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # broken stores and registry errors: one line, no traceback
        print(f"churnops {command}: {exc}", file=sys.stderr)
        return 1
    print(f"churnops: unknown command {command!r}; see `churnops --help`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
