"""Open the predictions database: one engine per URL and process, the schema migrated once.

:func:`prepare` brings the schema to the newest Alembic revision under a lock — a file lock next
to a SQLite file, an advisory lock on PostgreSQL — so API workers, the shipper and the launcher
starting at the same moment never migrate concurrently: the first one migrates, the others find
the schema up to date. :func:`open_engine` is the only way churnops opens the database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from filelock import FileLock
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Seconds a process waits for another one's migration before giving up with a message.
LOCK_TIMEOUT = 600.0
#: Key of the PostgreSQL advisory lock held while migrating (any constant shared by all callers).
PG_LOCK_KEY = 0x636875726E6F7073  # "churnops"


class StoreError(RuntimeError):
    """The predictions database cannot be opened or migrated; the message says what to do."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database))


def _alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this code knows."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None  # the migrations folder ships with the code  # nosec B101
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """A lock file next to a SQLite file (SQLite has no lock that outlives a transaction)."""
    path = _sqlite_file(str(engine.url))
    if path is None:
        yield
        return
    with FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT):
        yield


def _server_lock(conn: Connection) -> None:
    """On PostgreSQL, take the migration's advisory lock for the rest of ``conn``'s transaction
    (released by its commit or rollback, also when the process dies), waiting ``LOCK_TIMEOUT``."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(text(f"SET LOCAL lock_timeout = '{int(LOCK_TIMEOUT * 1000)}ms'"))
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})


def prepare(engine: Engine) -> str:
    """Create or upgrade the schema to the newest revision, under the migration lock.

    Idempotent and cheap when the schema is already current (one query).

    Returns:
        The revision the database is at.

    Raises:
        StoreError: the database is unreachable, locked for longer than ``LOCK_TIMEOUT``, or
            newer than this code; the message names the database and what to do.
    """
    where = _describe(engine)
    head = head_revision()
    try:
        if current_revision(engine) == head:
            return head
        with _file_lock(engine), engine.begin() as conn:
            _server_lock(conn)
            found = MigrationContext.configure(conn).get_current_revision()
            if found != head:
                log.info("migrating the predictions database %s: %s -> %s", where, found, head)
                command.upgrade(_alembic_config(conn), "head")
    except (TimeoutError, OperationalError) as exc:
        if isinstance(exc, TimeoutError) or _lock_timed_out(exc):
            stale = f", or remove a stale {where}.lock" if _sqlite_file(str(engine.url)) else ""
            raise StoreError(
                f"another process has been migrating the predictions database {where} for more "
                f"than {LOCK_TIMEOUT:.0f} s; stop it{stale}"
            ) from exc
        raise StoreError(_unreachable(where, engine, exc)) from exc
    except SQLAlchemyError as exc:
        raise StoreError(_unreachable(where, engine, exc)) from exc
    except CommandError as exc:  # e.g. a revision this code does not know (a newer database)
        raise StoreError(
            f"the predictions database {where} cannot be migrated ({exc}); if a newer churnops "
            "migrated it, upgrade churnops or point DATABASE_URL elsewhere"
        ) from exc
    return head


def _lock_timed_out(exc: OperationalError) -> bool:
    """PostgreSQL's ``lock_not_available`` (SQLSTATE 55P03): the advisory lock's wait ran out."""
    return getattr(exc.orig, "sqlstate", None) == "55P03"


def _unreachable(where: str, engine: Engine, exc: SQLAlchemyError) -> str:
    """One line: which database, the driver's own reason (not the SQL), what to do."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = reason[0] if reason else type(exc).__name__
    if _sqlite_file(str(engine.url)) is not None:
        advice = (
            "Check DATABASE_URL; to start over with an empty history, move the file aside "
            "(or run `make clean`)."
        )
    else:
        advice = "Check DATABASE_URL (user, password, host, port, database) and that it is up."
    return (
        f"the predictions database {where} cannot be opened or migrated "
        f"({type(exc).__name__}: {first}). {advice}"
    )


def _describe(engine: Engine) -> str:
    path = _sqlite_file(str(engine.url))
    return str(path) if path is not None else engine.url.render_as_string(hide_password=True)


def store_url(url: str) -> str:
    """``url`` with the driver churnops ships for its scheme: ``postgresql://`` and
    ``postgres://`` (the forms PostgreSQL's own tools and most hosts print) become
    ``postgresql+psycopg://`` (psycopg 3, in the lock; SQLAlchemy would otherwise look for
    psycopg2). Other URLs are returned unchanged.

    Raises:
        StoreError: ``url`` is not a database URL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"DATABASE_URL is not a database URL ({exc}); e.g. sqlite:///var/churnops.db or "
            "postgresql+psycopg://churnops:PASSWORD@db:5432/churnops"
        ) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


@lru_cache(maxsize=8)
def open_engine(url: str) -> Engine:
    """The process's engine for ``url``, with its schema prepared (see :func:`prepare`).

    SQLite gets its parent folder, WAL mode, ``synchronous=NORMAL`` and a 30 s busy timeout;
    server databases get ``pool_pre_ping`` (a connection dropped by a restart is replaced on its
    next checkout) and a 10 s connect timeout (an unreachable host fails, it does not hang).

    Raises:
        StoreError: see :func:`store_url` and :func:`prepare`; also a driver that is not installed.
    """
    url = store_url(url)
    path = _sqlite_file(url)
    backend = make_url(url).get_backend_name()
    kwargs: dict[str, Any] = {"pool_pre_ping": path is None}
    if backend == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    elif backend == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, ImportError) as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        raise StoreError(
            f"cannot open the predictions database {shown}: {exc}. churnops ships the drivers "
            "for sqlite:/// and postgresql+psycopg:// URLs"
        ) from exc
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    prepare(engine)
    return engine
