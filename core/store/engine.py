"""Open the predictions database: one engine per URL and process, the schema migrated once.

:func:`prepare` brings the schema to the newest Alembic revision under a lock — a file lock next
to a SQLite file, an advisory lock on PostgreSQL — so API workers, the shipper and the launcher
starting at the same moment never migrate concurrently: the first one migrates, the others find
the schema up to date. :func:`open_engine` is the only way churnops opens the database.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Self

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


class WriteLock:
    """One process's share of the inter-process lock on a SQLite file's writes.

    A POSIX record lock (``fcntl.lockf``) on ``<database>-write.lock``, held by the process while
    any of its connections is inside a write transaction (a reference count: threads of one
    process share it, so a thread can never wait for its own process). A process that wants to
    write while another one writes *blocks in the kernel* and is woken the moment the other one
    commits, instead of SQLite's busy handler, which sleeps 1, 2, 5 … up to 100 ms between
    retries: with two API workers, that polling put a ~100 ms tail on ``POST /predict`` once
    answers waited for their commit. SQLite's own locking still guards the data; this lock only
    decides who goes next.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mutex = threading.Lock()
        self._pid = -1
        self._fd = -1
        self._holders = 0

    def acquire(self) -> None:
        """Take the lock for one more write transaction of this process (blocks while another
        process holds it)."""
        with self._mutex:
            if self._pid != os.getpid():  # a forked child holds no lock of its parent's
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._pid, self._holders = os.getpid(), 0
            if self._holders == 0:
                fcntl.lockf(self._fd, fcntl.LOCK_EX)
            self._holders += 1

    def release(self) -> None:
        """End one write transaction of this process; the last one lets other processes in."""
        with self._mutex:
            if self._pid != os.getpid() or self._holders == 0:
                return
            self._holders -= 1
            if self._holders == 0:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)


@lru_cache(maxsize=8)
def write_lock(database: Path) -> WriteLock:
    """The process's :class:`WriteLock` of the SQLite file ``database``."""
    return WriteLock(database.with_name(f"{database.name}-write.lock"))


#: The first word of the statements that write (sqlite3 begins a transaction before them).
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")


class _LockingCursor(sqlite3.Cursor):
    """A cursor that takes its connection's :class:`WriteLock` before the first write."""

    connection: _LockingConnection

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        """:meth:`sqlite3.Cursor.execute`, after the write lock when ``sql`` writes."""
        self.connection.before(sql)
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Self:
        """:meth:`sqlite3.Cursor.executemany`, after the write lock when ``sql`` writes."""
        self.connection.before(sql)
        return super().executemany(sql, parameters)


class _LockingConnection(sqlite3.Connection):
    """A sqlite3 connection that holds its file's :class:`WriteLock` from its first write to
    the end of that transaction (commit, rollback or close).

    The connection class every SQLite engine of :func:`open_engine` uses (``factory=``), so
    every write of churnops is serialised across processes, whatever code path issues it.
    """

    lock: WriteLock | None = None
    holding = False

    def before(self, sql: str) -> None:
        """Take the lock if ``sql`` writes and this connection does not hold it yet."""
        if (
            self.lock is not None
            and not self.holding
            and sql.lstrip()[:7].upper().startswith(_WRITES)
        ):
            self.lock.acquire()
            self.holding = True

    def _done(self) -> None:
        if self.holding and self.lock is not None:
            self.holding = False
            self.lock.release()

    def cursor(  # pylint: disable=useless-parent-delegation  # it changes the default factory
        self, factory: Any = _LockingCursor
    ) -> Any:
        """A cursor of this connection (a :class:`_LockingCursor` unless told otherwise)."""
        return super().cursor(factory)

    def commit(self) -> None:
        """Commit, then release the write lock this connection holds."""
        try:
            super().commit()
        finally:
            self._done()

    def rollback(self) -> None:
        """Roll back, then release the write lock this connection holds."""
        try:
            super().rollback()
        finally:
            self._done()

    def close(self) -> None:
        """Close, then release the write lock this connection holds."""
        try:
            super().close()
        finally:
            self._done()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """The settings of each connection. WAL is not one: it is a property of the file, set once
    by :func:`prepare` under the migration lock (processes opening a new file together and each
    switching it to WAL got "database is locked" at once: SQLite's busy timeout does not cover
    the switch)."""
    cursor = dbapi_connection.cursor()
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


_LOCAL_LOCKS: dict[str, threading.Lock] = {}
_LOCAL_LOCKS_GUARD = threading.Lock()


@contextmanager
def exclusive(url: str, name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the inter-process lock ``name`` of the store at ``url`` for the block.

    Every process sharing the store (API workers and replicas, the CLI, jobs) takes turns: a
    file lock ``<database>.<name>.lock`` next to a SQLite file, a transaction-scoped advisory lock
    on PostgreSQL (keyed by ``name``; released when the block ends, also when the process dies),
    a lock of this process for an in-memory database. Other threads and processes wait up to
    ``timeout`` seconds.

    Raises:
        StoreError: the lock was not free within ``timeout`` (the message names it), or the
            database is unreachable.
    """
    url = store_url(url)
    path = _sqlite_file(url)
    busy = f"another process has held the {name} lock of the predictions database for more "
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with FileLock(f"{path}.{name}.lock", timeout=timeout):
                yield
        except TimeoutError as exc:
            raise StoreError(f"{busy}than {timeout:.0f} s ({path}.{name}.lock)") from exc
        return
    if make_url(url).get_backend_name() == "sqlite":
        with _LOCAL_LOCKS_GUARD:
            local = _LOCAL_LOCKS.setdefault(name, threading.Lock())
        if not local.acquire(timeout=timeout):
            raise StoreError(f"{busy}than {timeout:.0f} s")
        try:
            yield
        finally:
            local.release()
        return
    engine = open_engine(url)
    key = zlib.crc32(name.encode()) ^ PG_LOCK_KEY
    try:
        with engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = '{int(timeout * 1000)}ms'"))
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield
    except OperationalError as exc:
        if _lock_timed_out(exc):
            raise StoreError(f"{busy}than {timeout:.0f} s") from exc
        raise StoreError(_unreachable(_describe(engine), engine, exc)) from exc


def _server_lock(conn: Connection) -> None:
    """On PostgreSQL, take the migration's advisory lock for the rest of ``conn``'s transaction
    (released by its commit or rollback, also when the process dies), waiting ``LOCK_TIMEOUT``."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(text(f"SET LOCAL lock_timeout = '{int(LOCK_TIMEOUT * 1000)}ms'"))
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})


def prepare(engine: Engine) -> str:
    """Switch a SQLite file to WAL, then create or upgrade the schema to the newest revision,
    both under the migration lock (processes opening a new store together take turns).

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
        if _sqlite_file(str(engine.url)) is not None:
            with _file_lock(engine), engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")  # persistent: once per file
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

    SQLite gets its parent folder, WAL mode, ``synchronous=NORMAL``, a 30 s busy timeout and
    its :class:`WriteLock` (writers of several processes take turns without polling);
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
        kwargs["connect_args"] = {
            "check_same_thread": False,
            "timeout": 30,
            "factory": _LockingConnection,
        }
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
        if path is not None:
            lock = write_lock(path.resolve())
            event.listen(engine, "connect", lambda dbapi, _record: setattr(dbapi, "lock", lock))
    prepare(engine)
    return engine
