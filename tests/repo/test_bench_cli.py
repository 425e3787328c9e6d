"""``make bench`` from a fresh clone: without a champion it says what to do (no 180 s wait, no
traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT
from tests.net import free_port


@pytest.mark.slow  # a second interpreter importing the whole stack (~10 s)
def test_bench_without_a_champion_names_the_next_step(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DATABASE_"))}
    env.update(VAR_DIR=str(tmp_path / "var"), PYTHONPATH=str(ROOT))
    done = subprocess.run(  # the test's own interpreter, a fixed script of the repository
        [sys.executable, str(ROOT / "scripts" / "bench.py")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "no champion" in done.stderr and "`make train`" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.integration  # a real uvicorn with 2 workers
def test_the_bench_loads_a_server_only_once_every_worker_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``server(..., workers=2)`` returns once both uvicorn workers have accepted a connection
    (a real ``uvicorn --workers 2``), and tells them apart from the supervisor."""
    from scripts import bench  # pylint: disable=import-outside-toplevel  # a script, not a package

    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "tests.net:hello_app", "--port", str(port),
           "--workers", "2", "--no-access-log"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = tmp_path / "hello.log"
    with bench.server(cmd, env, f"http://127.0.0.1:{port}/", log, workers=2):
        supervisor = next(p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == cmd)
        workers = {child.pid for child in supervisor.children(recursive=True)}
        found = bench.accepting_processes(supervisor.pid, port)
        assert len(found) == 2 and found <= workers and supervisor.pid not in found
    assert "warning" not in capsys.readouterr().err
