"""A real Elasticsearch for the tests, started by ``scripts/es.sh`` (the ``elasticsearch`` session
fixture of ``tests/conftest.py`` uses :func:`session_elasticsearch`).

The integ-test zip from Maven Central runs as an unprivileged user on 127.0.0.1 with a free port;
``ES_TEST_URL`` points the tests at an already running cluster instead. When neither works the tests
skip locally and fail in CI (``need``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess  # nosec B404 - starts the local test cluster
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from core.monitoring.es import connect, ping
from tests.conftest import ROOT, need
from tests.net import free_port

ES_SCRIPT = ROOT / "scripts" / "es.sh"


@dataclass
class LocalElasticsearch:
    """One Elasticsearch process whose state survives :meth:`stop` / :meth:`start`."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    external: bool = False

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> None:
        """Start (or restart) the process and wait until the cluster is yellow."""
        log = (self.workdir / "es.out").open("ab")
        self.process = subprocess.Popen(  # nosec B603 - fixed argv
            ["bash", str(ES_SCRIPT), "run", str(self.workdir), str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        client = connect(self.url)
        deadline = time.monotonic() + timeout
        while not ping(client, timeout=1.0):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = (self.workdir / "es.out").read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"Elasticsearch did not start:\n{tail}")
            time.sleep(0.5)
        client.close()

    def stop(self) -> None:
        """Stop the process group (SIGTERM, then SIGKILL after 30 s)."""
        if self.process is None:
            return
        pgid = self.process.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.process.wait(30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None


def session_elasticsearch() -> Iterator[LocalElasticsearch]:
    """The session's Elasticsearch (``ES_TEST_URL`` or the integ-test zip), stopped and removed
    after the last test that used it."""
    external = os.environ.get("ES_TEST_URL")
    if external:
        server = LocalElasticsearch(Path(tempfile.gettempdir()), external=True)
        server.port = int(external.rsplit(":", 1)[1].strip("/"))
        need(ping(connect(external)), f"ES_TEST_URL={external} does not answer")
        yield server
        return
    need(shutil.which("java") is not None or Path("/usr/lib/jvm").is_dir(), "no JDK installed")
    fetched = subprocess.run(  # nosec B603 B607 - fixed argv
        ["bash", str(ES_SCRIPT), "fetch"], capture_output=True, text=True, check=False
    )
    need(fetched.returncode == 0, f"cannot fetch Elasticsearch: {fetched.stderr[-2000:]}")
    # The unprivileged user must reach the folder: not under /tmp/pytest-of-root (mode 700).
    workdir = Path(tempfile.mkdtemp(prefix="churnops-es-"))
    workdir.chmod(0o755)
    server = LocalElasticsearch(workdir)
    try:
        server.start()
    except RuntimeError as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        need(False, str(exc))
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)
