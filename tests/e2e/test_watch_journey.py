"""``make watch`` as a developer runs it, in a fresh clone: one saved file starts exactly one
pipeline — the real code pipeline (``make pipeline-code``: every gate, then the fast tests) — and
nothing it writes starts another one in the two minutes after it ends.

The fast tests are narrowed to one module (``PYTEST_ARGS``, as a developer narrows them) that
writes what the whole run writes (``.hypothesis/``, the test stores): the whole fast suite would
add minutes and no new kind of file. The whole suite runs in ``make test`` itself."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.test_cold_start import fresh_clone, user_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(3600)]

QUIET_AFTER_S = 120.0
HANG_GUARD_S = 1800.0
RUN_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] (\w+)\s+(✓ passed|✗ FAILED[^ ]*)", re.M)


def _runs(log: Path) -> list[tuple[str, str]]:
    return RUN_LINE.findall(log.read_text(encoding="utf-8", errors="replace"))


def test_one_save_starts_exactly_one_pipeline(tmp_path: Path) -> None:
    clone = fresh_clone(tmp_path / "churnops")
    env = {**user_env(0, 0), "PYTEST_ARGS": "tests/core/test_schema.py"}  # hypothesis: .hypothesis/
    log = tmp_path / "watch.log"
    with log.open("wb") as out:
        watcher = subprocess.Popen(  # pylint: disable=consider-using-with  # stopped below
            ["make", "watch"], cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        started = time.monotonic()
        while "Ctrl-C to stop" not in log.read_text(errors="replace"):
            assert watcher.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() - started < HANG_GUARD_S
            time.sleep(0.5)
        schema = clone / "core" / "schema.py"
        schema.write_text(schema.read_text(encoding="utf-8") + "\n\n# saved\n", encoding="utf-8")
        while not _runs(log):  # the pipeline started by the save, until it ends
            assert watcher.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() - started < HANG_GUARD_S, "the pipeline never ended"
            time.sleep(1.0)
        time.sleep(QUIET_AFTER_S)  # what the pipeline wrote must not start another run
        runs = _runs(log)
    finally:
        os.killpg(watcher.pid, signal.SIGINT)
        watcher.wait(60)
    text = log.read_text(errors="replace")
    assert runs == [("code", "✓ passed")], text[-4000:]
    assert "Traceback" not in text
