"""Ctrl-C on ``make run`` while it trains the first model (a newcomer's first minutes): the
launcher stops the training, the API and the UI, says so and exits, leaving nothing running.

It used to hang for good: its signal handler waited for the training process that the
interrupted code was already waiting for (see :mod:`ops.interrupt`)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import ctrl_c
from tests.net import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

HANG_GUARD_S = 600.0  # a hang guard, not a speed figure: a busy machine is slow, a hang is forever
TRAINING_LINE = "[run] training started (pid"


def test_ctrl_c_during_the_first_training_stops_everything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ES_", "SMTP_"))}
    for name in ("DATABASE_URL", "KIBANA_URL", "API_URL", "API_KEY_FILE"):
        env.pop(name, None)
    env.update(
        VAR_DIR=str(tmp_path / "var"), ENV="test", API_KEY="interrupt-key", PYTHONUNBUFFERED="1",
        API_PORT=str(free_port()), UI_PORT=str(free_port()),
    )  # fmt: skip
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        launcher = subprocess.Popen(  # pylint: disable=consider-using-with  # stopped by ctrl_c
            ["make", "-s", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    started = time.monotonic()
    try:
        while "%]" not in log.read_text(errors="replace").partition(TRAINING_LINE)[2]:
            assert launcher.poll() is None, log.read_text(errors="replace")[-4000:]
            assert time.monotonic() - started < HANG_GUARD_S, "no training progress"
            time.sleep(0.2)
    finally:
        ctrl_c(launcher, log)  # asserts the exit, the messages and that nothing is left
    text = log.read_text(errors="replace")
    assert "stopping training" in text, text[-3000:]
    assert "did not stop in" not in text, text[-3000:]  # the training honours SIGTERM
