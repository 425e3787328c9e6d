"""The shipper without Elasticsearch: it never stamps what it could not send, and stops cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
import pytest

from core.store import open_engine
from core.monitoring.cli import main
from core.monitoring.es import connect
from core.monitoring.outbox import PredictionShipper, ShipperConfig
from core.settings import Settings, get_settings
from tests.conftest import ROOT
from tests.net import free_port
from tests.core.monitoring.outbox_helpers import (
    prediction_rows,
    run_loop_until_sigterm,
    running,
    store,
    unshipped,
    wait_for,
)

FAST = ShipperConfig(batch=100, interval=0.05, probe_min=0.05, probe_max=0.2, timeout=1.0)


def nowhere() -> str:
    """An Elasticsearch URL nobody answers on."""
    return f"http://127.0.0.1:{free_port()}"


def test_elasticsearch_down_nothing_is_stamped_and_stop_is_prompt(
    store_url: str, tmp_path: Path
) -> None:
    """The loop backs off (counting failures), keeps its heartbeat, stamps nothing, stops."""
    engine = open_engine(store_url)
    store(engine, prediction_rows(250))
    shipper = PredictionShipper(
        engine, connect(nowhere(), timeout=1.0), tmp_path / "rej", config=FAST
    )
    heartbeat = tmp_path / "alive"
    with running(shipper, heartbeat) as thread:
        assert wait_for(lambda: shipper.stats.failures >= 1 and heartbeat.exists(), 10)
        touched = heartbeat.stat().st_mtime_ns
        assert wait_for(lambda: heartbeat.stat().st_mtime_ns > touched, 10)  # still turning
    assert not thread.is_alive()
    assert unshipped(engine) == 250
    assert shipper.stats.delivered == shipper.stats.existing == shipper.stats.rejected == 0
    assert shipper.rejects.pending_records() == 0


def _ship_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch, es_url: str) -> Settings:
    monkeypatch.setenv("ES_URL", es_url)
    get_settings.cache_clear()
    return get_settings()


def test_cli_without_es_url_says_so_and_exits_0(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite-only monitoring needs no shipping: the UI reads the prediction table."""
    assert settings.es_url is None
    assert main(["ship", "--once"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["ship"] == "skipped" and "ES_URL" in out["reason"]


def test_cli_once_with_elasticsearch_down_fails_and_stamps_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ship --once`` exits 1 when Elasticsearch is down; it lowered its priority first."""
    engine = open_engine(settings.db_url)
    store(engine, prediction_rows(10))
    niced: list[int] = []
    monkeypatch.setattr(os, "nice", lambda inc: niced.append(inc) or inc)
    _ship_settings(settings, monkeypatch, nowhere())
    assert main(["ship", "--once", "--batch", "5"]) == 1
    assert niced == [19]
    assert unshipped(engine) == 10


@pytest.mark.slow
def test_cli_runs_niced_and_stops_cleanly_on_sigterm(settings: Settings, tmp_path: Path) -> None:
    """The real command: nice 19, heartbeat, SIGTERM → exit 0 with its counters on stdout."""
    engine = open_engine(settings.db_url)
    store(engine, prediction_rows(10))
    heartbeat = tmp_path / "alive"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "VAR_DIR": str(settings.var_dir),
        "ES_URL": nowhere(),
        "DATABASE_URL": settings.db_url,
    }

    def nice_is_19(pid: int) -> None:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            assert int(stat.read().rsplit(")", 1)[1].split()[16]) == 19  # field 19: nice

    code, out, err = run_loop_until_sigterm(
        ["ship", "--interval", "0.1"], env, heartbeat, while_running=nice_is_19
    )
    assert code == 0, err[-2000:]
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["ship"] == "stopped" and stats["failures"] >= 1 and stats["delivered"] == 0
    assert unshipped(engine) == 10


@pytest.mark.slow
@pytest.mark.parametrize("own_session", [True, False], ids=["session-leader", "shared-session"])
def test_lower_priority_nices_the_autogroup_only_of_its_own_session(
    tmp_path: Path, own_session: bool
) -> None:
    """Under sched autogroup a nice value only counts inside its session: a shipper leading its
    own session nices the session's autogroup too; one sharing a session leaves it alone."""
    autogroup = tmp_path / "autogroup"
    autogroup.write_text("0", encoding="ascii")
    code = (
        "import os, sys; from pathlib import Path;"
        "from core.monitoring.cli import lower_priority;"
        "before = os.nice(0); lower_priority(7, Path(sys.argv[1])); print(os.nice(0) - before)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(autogroup)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        start_new_session=own_session,
    )
    assert done.stdout.strip() == "7"
    assert autogroup.read_text(encoding="ascii") == ("7" if own_session else "0")
