"""The MLflow store on first contact: processes racing to create it, and a broken one."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from core import registry
from core.settings import Settings
from tests.conftest import ROOT

RACE = """
import sys, time
from core import registry
from core.settings import Settings
while time.time() < float(sys.argv[2]):
    pass
client = registry.configure(Settings(var_dir=sys.argv[1], env="test"))
print(client.get_experiment_by_name("churnops").experiment_id)
"""


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DATABASE_URL"))}
    return {**env, "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Four processes released at the same instant on an empty VAR_DIR (what two API workers,
    the launcher and a training do on a first start): every one opens the store, all see the
    same experiment, and the store then registers models normally."""
    var = tmp_path / "var"
    go = time.time() + 4.0
    procs = [
        subprocess.Popen(  # pylint: disable=consider-using-with  # waited for below
            [sys.executable, "-c", RACE, str(var), str(go)],
            cwd=ROOT,
            env=_clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, [err[-2000:] for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1
    settings = Settings(var_dir=var, env="test")
    client = registry.configure(settings)
    client.create_registered_model("race-check")
    assert client.get_registered_model("race-check").name == "race-check"


def test_a_broken_store_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, empty_registry_uri: str
) -> None:
    """A store whose migration state is unknown (as a crashed first start leaves it) gives one
    clear error naming the file and the way out, not MLflow's traceback."""
    # a store registry.configure created and migrated: the session's (creating one takes seconds)
    registry.configure(
        Settings(var_dir=tmp_path / "var", env="test", mlflow_tracking_uri=empty_registry_uri)
    )
    monkeypatch.setattr(registry.client, "_PREPARED", set())
    # mlflow.set_tracking_uri may have exported the first store
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    broken = tmp_path / "copy"
    broken.mkdir()
    source = empty_registry_uri.removeprefix("sqlite:///")
    with (
        closing(sqlite3.connect(source)) as src,
        closing(sqlite3.connect(broken / "mlflow.db")) as dst,
    ):
        src.backup(dst)  # a consistent copy, whoever else reads the session's store
        dst.execute("UPDATE alembic_version SET version_num = 'half_migrated'")
        dst.commit()
    with pytest.raises(registry.TrackingStoreBroken) as caught:
        registry.configure(Settings(var_dir=broken, env="test"))
    message = str(caught.value)
    assert str(broken / "mlflow.db") in message
    assert "make clean" in message and "mv " in message
