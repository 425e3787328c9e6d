"""A throwaway PostgreSQL server for the tests: Debian's ``postgresql`` binaries, ``initdb`` and
``pg_ctl``, an unprivileged user, 127.0.0.1 and a free port.

PostgreSQL refuses to run as root: when the tests run as root (CI does), the server runs as the
``postgres`` system user the Debian package creates (``runuser``), in a folder of its own outside
``/tmp/pytest-of-root`` (mode 700). Passwords are checked (``scram-sha-256``), as in production,
so the URLs the tests use carry one. The server's time zone is deliberately not UTC: whatever reads
a timestamp back must convert it, or a test sees the offset.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess  # nosec B404 - starts the local test server
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tests.net import free_port

#: Not UTC, and not a whole hour: a timestamp that is not converted shows at once.
SERVER_TIMEZONE = "Asia/Kolkata"
USER = "churnops"
PASSWORD = "test-only-pw"  # nosec B105 - a throwaway cluster on 127.0.0.1


def binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/<major>/bin`` that has ``initdb`` (None: not installed)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


@dataclass
class LocalPostgres:
    """One PostgreSQL cluster in ``workdir``; :meth:`stop`/:meth:`start` keep its data."""

    bin_dir: Path
    workdir: Path
    port: int = field(default_factory=free_port)
    run_as: str | None = None

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.workdir / "data"

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.workdir / "server.log"

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` (psycopg 3 driver)."""
        return f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        return subprocess.run(  # nosec B603 - fixed argv
            [*prefix, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.workdir,
        )

    def init(self, durable: bool = False) -> None:
        """``initdb`` a new cluster (superuser ``churnops``, password auth, UTF-8); without
        ``durable``, writes are not synced to disk (a test cluster)."""
        if self.run_as:
            shutil.chown(self.workdir, self.run_as, self.run_as)
        pwfile = self.workdir / "pw"
        pwfile.write_text(PASSWORD, encoding="utf-8")
        if self.run_as:
            shutil.chown(pwfile, self.run_as, self.run_as)
        done = self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", USER, "--pwfile", str(pwfile),
            "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.workdir}'\ntimezone = '{SERVER_TIMEZONE}'\n"
                "max_connections = 200\n"
            )
            if not durable:  # a test cluster: a crash of the machine may lose it
                conf.write("fsync = off\nfull_page_writes = off\n")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        done = self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", "120", "start",
        )  # fmt: skip
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr[-1000:]}\n{tail}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions, close every connection)."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def create_database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of ``url``, closing its connections."""
        name = url.rsplit("/", 1)[1]
        self._sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _sql(self, statement: str) -> None:
        import psycopg  # pylint: disable=import-outside-toplevel

        conninfo = (
            f"host=127.0.0.1 port={self.port} user={USER} password={PASSWORD} dbname=postgres"
        )
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(statement.encode())


def start_local_postgres(durable: bool = False) -> LocalPostgres:
    """Init and start a cluster in a new folder (as ``postgres`` when this process is root);
    ``durable`` keeps PostgreSQL's default fsync settings (``make bench`` measures with them).

    Raises:
        RuntimeError: the binaries are missing (``apt-get install postgresql``) or it failed.
    """
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
    run_as = None
    if os.geteuid() == 0:
        run_as = "postgres"
        if shutil.which("runuser") is None:
            raise RuntimeError("running as root needs runuser (util-linux) to start PostgreSQL")
        try:
            pwd.getpwnam(run_as)
        except KeyError as exc:
            raise RuntimeError(
                f"no {run_as!r} user to run PostgreSQL as (apt-get install -y postgresql)"
            ) from exc
    workdir = Path(tempfile.mkdtemp(prefix="churnops-pg-"))
    workdir.chmod(0o755)
    server = LocalPostgres(bin_dir, workdir, run_as=run_as)
    try:
        server.init(durable)
        server.start()
    except (RuntimeError, LookupError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise RuntimeError(str(exc)) from exc
    return server


def remove(server: LocalPostgres) -> None:
    """Stop the server and delete its folder."""
    server.stop(mode="immediate")
    shutil.rmtree(server.workdir, ignore_errors=True)
