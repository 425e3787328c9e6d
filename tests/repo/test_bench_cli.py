"""``make bench`` from a fresh clone: without a champion it says what to do (no 180 s wait, no
traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


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
