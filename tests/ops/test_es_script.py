"""``scripts/es.sh start|stop`` (``make es-start``/``es-stop``, ``make bench``): it stops the
Elasticsearch it started, and nothing else, whatever its PID file says."""

from __future__ import annotations

import os
import shutil
import subprocess  # nosec B404 - the script under test, sleep
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, need
from tests.net import free_port

SCRIPT = ROOT / "scripts" / "es.sh"


def _es_sh(state: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # nosec B603 B607 - fixed argv
        ["bash", str(SCRIPT), *args],
        env={**os.environ, "ES_STATE": str(state)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_stop_leaves_a_process_that_took_a_stale_pid_alone(tmp_path: Path) -> None:
    """A killed run's PID file, its PID since given to another session leader: not signalled."""
    bystander = subprocess.Popen(  # nosec B603 B607 - fixed argv
        ["sleep", "600"], start_new_session=True
    )
    try:
        (tmp_path / "es.pid").write_text(f"{bystander.pid}\n", encoding="ascii")
        done = _es_sh(tmp_path, "stop", timeout=60)
        assert done.returncode == 0, done.stderr
        assert "stale" in done.stdout
        assert bystander.poll() is None, "es.sh stop signalled a process it did not start"
        assert not (tmp_path / "es.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.es
@pytest.mark.slow
def test_start_then_stop_leaves_no_elasticsearch_process() -> None:
    need(
        _es_sh(Path(tempfile.gettempdir()), "java-home", timeout=30).returncode == 0,
        "es.sh needs a JDK 21+ under /usr/lib/jvm",
    )
    # the unprivileged user Elasticsearch runs as must reach it: not under /tmp/pytest-of-root
    workdir = Path(tempfile.mkdtemp(prefix="churnops-es-script-"))
    workdir.chmod(0o755)
    state = workdir / "es"
    port = free_port()
    started = _es_sh(state, "start", str(port))
    try:
        assert started.returncode == 0, started.stderr + started.stdout
        assert f"http://127.0.0.1:{port}" in started.stdout
        again = _es_sh(state, "start", str(port), timeout=60)
        assert "already running" in again.stdout  # the recorded one is recognised as ours
    finally:
        stopped = _es_sh(state, "stop", timeout=90)
        shutil.rmtree(workdir, ignore_errors=True)
    assert stopped.returncode == 0 and stopped.stdout.strip() == "stopped", stopped.stderr
    marker = f"ES_PATH_CONF={state}/config".encode()
    left = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "environ").read_bytes().split(b"\0"):
                left.append(proc.name)
        except OSError:  # gone, or not ours to read
            continue
    assert not left, f"Elasticsearch processes left: {left}"
