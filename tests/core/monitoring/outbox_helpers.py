"""Prediction rows written the way the API writes them, and a shipper running in a thread."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from core.store import PredictionWriter, utcnow
from core.monitoring.outbox import PredictionShipper
from core.store import PREDICTION
from core.schema import EXAMPLE_CHURNER
from tests.conftest import ROOT


def prediction_rows(
    n: int, features: Any = None, start: datetime | None = None
) -> list[dict[str, Any]]:
    """``n`` rows as the API submits them to its writer (``features`` a dict or JSON text)."""
    start = start or utcnow() - timedelta(minutes=10)
    return [
        {
            "id": str(uuid.uuid4()),
            "created_at": start + timedelta(microseconds=i),
            "request_id": f"r{i}",
            "model_version": "3",
            "probability": 0.9 if i % 4 == 0 else 0.1,
            "label": "yes" if i % 4 == 0 else "no",
            "threshold": 0.5,
            "latency_ms": 1.0 + i % 10,
            "features": EXAMPLE_CHURNER if features is None else features,
            "actual": None,
            "feedback_at": None,
        }
        for i in range(n)
    ]


def store(engine: Engine, rows: list[dict[str, Any]]) -> list[str]:
    """Insert ``rows`` with the API's own writer; their ids."""
    writer = PredictionWriter(engine)
    for row in rows:
        writer.submit(row)
    writer.close()  # never started: drains in this thread
    return [row["id"] for row in rows]


def unshipped(engine: Engine) -> int:
    """Rows whose ``shipped_at`` is NULL."""
    query = select(func.count()).select_from(PREDICTION).where(PREDICTION.c.shipped_at.is_(None))
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def wait_for(condition: Callable[[], bool], timeout: float, poll: float = 0.05) -> bool:
    """Poll ``condition`` until it holds; ``False`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


@contextmanager
def running(
    shipper: PredictionShipper, heartbeat: Path | None = None
) -> Iterator[threading.Thread]:
    """``shipper.run`` in a thread for the block; stopped (and joined) after it."""
    stop = threading.Event()
    thread = threading.Thread(target=shipper.run, args=(stop, heartbeat), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(30)


def run_loop_until_sigterm(
    args: list[str],
    env: dict[str, str],
    heartbeat: Path,
    while_running: Callable[[int], None] | None = None,
) -> tuple[int, str, str]:
    """Run ``churnops monitoring ARGS --heartbeat HEARTBEAT`` (the shipper's or the exporter's
    loop) until its heartbeat has been touched twice (one whole pass done), call
    ``while_running(pid)``, then SIGTERM it.

    Returns:
        The exit code, stdout and stderr. The waits are hang guards only: at nice 19 on a busy
        machine a loop may wait long for a CPU.
    """
    command = [sys.executable, "-m", "ops.cli", "monitoring", *args, "--heartbeat", str(heartbeat)]
    proc = subprocess.Popen(  # pylint: disable=consider-using-with  # stopped below
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_for(heartbeat.exists, 120), proc.stderr.read() if proc.poll() else ""
        first = heartbeat.stat().st_mtime_ns
        assert wait_for(lambda: heartbeat.stat().st_mtime_ns > first, 60)  # a second turn
        if while_running is not None:
            while_running(proc.pid)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err
