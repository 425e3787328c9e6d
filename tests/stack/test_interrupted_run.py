"""``scripts/stack.sh up`` after a run that was interrupted before its ``down``.

A run killed with the machine (a reboot, a VM restored from a snapshot) leaves its record under
``/run/churnops-stack`` while its engine is gone and its processes' PIDs may belong to others. The
next ``up`` puts the machine back from that record and starts, instead of refusing; it signals no
process that is not the one it recorded. Runs (alphabetically) before the live stack's module, on
the real engine, under the same machine-wide lock.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess  # nosec B404 - scripts/stack.sh, sleep
import time
from pathlib import Path

import pytest

from tests.conftest import IN_CI, need
from tests.stack.conftest import SCRIPT, _lock, _stack_sh

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(900)]

STATE = Path(os.environ.get("STACK_STATE", "/run/churnops-stack"))


def _pids(name: str) -> list[int]:
    found = subprocess.run(  # nosec B603 B607 - fixed argv
        ["pgrep", "-x", name], capture_output=True, text=True, check=False
    ).stdout.split()
    return [int(pid) for pid in found]


def _engine_answers(env: dict[str, str]) -> bool:
    if not Path("/usr/bin/docker").exists():  # not installed yet: `up` installs it
        return False
    return (
        subprocess.run(  # nosec B603 B607 - fixed argv
            ["/usr/bin/docker", "version"], env=env, capture_output=True, check=False
        ).returncode
        == 0
    )


def test_up_after_an_interrupted_run_puts_the_machine_back_and_starts() -> None:
    need(
        os.geteuid() == 0 and shutil.which("apt-get") is not None,
        "the live stack test installs and starts a Docker engine: root and apt-get needed",
    )
    need(
        IN_CI or os.environ.get("CHURNOPS_STACK_TEST", "") != "skip",
        "CHURNOPS_STACK_TEST=skip (outside CI only)",
    )
    env = {**os.environ, "DOCKER_HOST": "unix:///var/run/docker.sock"}
    lock = _lock()
    bystander = None
    try:
        need(not _engine_answers(env), "an engine already answers: no interrupted run to make")
        _stack_sh("up", env, timeout=600)
        # the run dies with its machine: the engine's processes are gone, its record stays,
        # and the PID it recorded for dockerd now belongs to another process
        for name in ("dockerd", "containerd", "containerd-shim"):
            for pid in _pids(name):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _pids("dockerd") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _pids("dockerd")
        bystander = subprocess.Popen(["sleep", "600"])  # nosec B603 B607 - fixed argv
        (STATE / "dockerd.pid").write_text(f"{bystander.pid}\n", encoding="ascii")
        assert not _engine_answers(env)

        _stack_sh("up", env, timeout=600)

        assert _engine_answers(env)
        assert bystander.poll() is None, "up signalled a process it did not start"
        assert int((STATE / "dockerd.pid").read_text(encoding="ascii")) in _pids("dockerd")
    finally:
        _stack_sh("down", env, timeout=600)
        if bystander is not None:
            bystander.kill()
            bystander.wait()
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    clean = subprocess.run(  # nosec B603 B607 - fixed argv
        ["bash", str(SCRIPT), "check-clean"], capture_output=True, text=True, check=False
    )
    assert clean.returncode == 0, clean.stderr
