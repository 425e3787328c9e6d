"""The suite never touches a user's stores, whatever their environment and ``.env`` say."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

#: Tests that open the predictions database, the MLflow store, a live server and the CLI.
SAMPLE = [
    "tests/api/routes/test_predict.py::test_examples_churner_and_loyal",
    "tests/api/test_openapi.py::test_the_live_server_stores_in_its_own_folder",
    "tests/core/registry/test_lifecycle.py::test_configure_uses_sqlite_and_artifact_root",
    "tests/api/test_store.py::test_list_filter_get",
]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.integration
@pytest.mark.slow
def test_user_stores_are_left_untouched(tmp_path: Path) -> None:
    """A user's DATABASE_URL and MLFLOW_TRACKING_URI files (from the environment and from a
    dotenv file), VAR_DIR and ES_URL stay exactly as they were after the fixtures ran."""
    user = tmp_path / "user"
    user.mkdir()
    predictions, mlflow_db = user / "churnops.db", user / "mlflow.db"
    for path in (predictions, mlflow_db):
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE mine (x)")
            conn.execute("INSERT INTO mine VALUES ('keep me')")
    dotenv = user / ".env"
    dotenv.write_text(f"DATABASE_URL=sqlite:///{user / 'from-dotenv.db'}\n", encoding="utf-8")
    user_var = user / "var"
    before = {path: _digest(path) for path in (predictions, mlflow_db)}
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{predictions}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_db}",
        "VAR_DIR": str(user_var),
        "ES_URL": "http://127.0.0.1:9",
        "CHURNOPS_DOTENV": str(dotenv),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SAMPLE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    passed = re.search(r"(\d+) passed", done.stdout)  # a test may run once per store back end
    assert passed and int(passed.group(1)) >= len(SAMPLE), done.stdout[-3000:]
    assert "skipped" not in done.stdout and "deselected" not in done.stdout, done.stdout[-3000:]
    assert {path: _digest(path) for path in (predictions, mlflow_db)} == before
    assert not user_var.exists()
    assert not (user / "from-dotenv.db").exists()
    assert sorted(p.name for p in user.iterdir()) == [".env", "churnops.db", "mlflow.db"]
