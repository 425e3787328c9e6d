"""Shared fixtures and the CI rule: in CI (``CI`` set) nothing may skip.

Fixtures local to one area live in ``tests/<area>/conftest.py``; factories in
``tests/factories.py``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from core.settings import DOTENV_VARIABLE, Settings, get_settings

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from core.data import DatasetSplit
    from core.persist import ModelBundle
    from core.pipelines import TrainedModel
    from tests.elastic import LocalElasticsearch
    from tests.postgres import LocalPostgres

ROOT = Path(__file__).resolve().parents[1]
IN_CI = bool(os.environ.get("CI"))


#: What points a process at a store or a service of the user's: the suite never inherits them.
#: Tests that need a store make one under their tmp dir; tests that need Elasticsearch or SMTP
#: start their own.
USER_STORE_VARIABLES = (
    "VAR_DIR",
    "DATABASE_URL",
    "DATABASE_PASSWORD",
    "DATABASE_PASSWORD_FILE",
    "DATA_PATH",
    "ES_URL",
    "ES_USERNAME",
    "ES_PASSWORD",
    "ES_PASSWORD_FILE",
    "KIBANA_URL",
    "MLFLOW_PUBLIC_URL",
    "API_PUBLIC_URL",
    "LOGSTASH_HOST",
    "API_URL",
    "API_KEY",
    "API_KEY_FILE",
    "WRITER_KEY",
    "WRITER_KEY_FILE",
    "READER_KEY",
    "READER_KEY_FILE",
    "PREDICT_KEY",
    "PREDICT_KEY_FILE",
    "SMTP_HOST",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "SMTP_PASSWORD_FILE",
    "SMTP_TO",
)
_SESSION_VAR: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    """Before any test or fixture runs: forget the user's stores and services (environment and
    ``.env``), and point ``VAR_DIR`` at a folder of this session, so whatever a test (or a process
    it starts) opens by default is a throwaway store. In an xdist worker, size the OpenMP/BLAS
    thread pools to the worker's share of the CPUs (unless ``OMP_NUM_THREADS`` is set)."""
    del config
    for name in [*USER_STORE_VARIABLES, *(k for k in os.environ if k.startswith("MLFLOW_"))]:
        os.environ.pop(name, None)
    os.environ[DOTENV_VARIABLE] = ""
    session_var = Path(tempfile.mkdtemp(prefix="churnops-tests-")) / "var"
    os.environ["VAR_DIR"] = str(session_var)
    _SESSION_VAR.append(session_var)
    get_settings.cache_clear()
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
    if workers:
        # An xdist worker shares the CPUs with the others: OpenMP (sklearn, ONNX Runtime) and BLAS
        # sized for every CPU in each worker oversubscribe them (a subset of the fast tests took
        # 106 s on two workers, 41 s with one thread each). Set before numpy or sklearn load, so
        # the workers and the processes they start read it; scikit-learn's own suite does the same.
        threads = max((os.cpu_count() or 1) // workers, 1)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's default store folder."""
    del config
    for folder in _SESSION_VAR:
        shutil.rmtree(folder.parent, ignore_errors=True)


def need(condition: bool, why: str) -> None:
    """Skip the calling test when ``condition`` is false; fail it in CI, where nothing may skip."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI but unavailable: {why}")
    pytest.skip(why)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI, turn every skip (whatever raised it) into a failure."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which is not allowed: {report.longrepr}"
    del item, call


@pytest.fixture(autouse=True)
def _restore_mlflow_env() -> Iterator[None]:
    """Undo what ``mlflow.set_tracking_uri`` writes to ``os.environ`` (it exports the URI for child
    processes), so a store of one test never leaks into a later test or the subprocesses it starts.
    """
    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    yield
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        if key not in saved:
            del os.environ[key]
    os.environ.update(saved)


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings whose every store (MLflow, predictions DB, model cache) lives under ``tmp_path``."""
    for name in ("MLFLOW_TRACKING_URI", "DATABASE_URL", "ES_URL", "SMTP_HOST", "API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("ENV", "test")
    monkeypatch.setenv("API_KEY", "test-key")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def empty_registry_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An MLflow SQLite store shared by the tests whose registry calls leave it empty (a list of
    no versions, a promote or rollback refused, no champion): MLflow creates its schema, which
    takes seconds, once per session instead of once per test. A test that registers a model uses
    its own store (the ``settings`` fixture's).

    The xdist workers of one run share it too (the folder of their base temp dirs is the run's
    own): the first to open it creates it, under the lock ``core.registry`` takes for processes
    opening a new store together, and the others find it ready."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.getbasetemp().parent / "empty-registry"
        folder.mkdir(exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("empty-registry")
    path = folder / "mlflow.db"
    yield f"sqlite:///{path}"
    if path.exists():  # what the tests sharing it rely on: nothing was ever registered there
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("SELECT count(*) FROM registered_models").fetchone() == (0,)


@pytest.fixture(scope="session")
def trained_model() -> TrainedModel:
    """The default model (HGB) trained once per session on the real data's fixed split (no CV).

    Read-only: the pipeline, bundle and split are shared by every test that asks for it.
    """
    from tests.factories import (  # pylint: disable=import-outside-toplevel  # only when used
        trained_default,
    )

    return trained_default()


# One headless browser per test module (tests/e2e, tests/stack), defined once. Playwright's sync
# API runs an event loop in this thread while a browser is open: two at once cannot start, and a
# browser left open for the whole session broke every later test that calls asyncio.run(). So it
# is opened by the first test of a module that asks for it and closed at the module's end.
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture(scope="session")
def split() -> DatasetSplit:
    """The project's fixed split of the real data."""
    from core.data import (
        SplitParams,
        load_dataset,
        split_dataset,
    )  # pylint: disable=import-outside-toplevel

    return split_dataset(load_dataset(ROOT / "data/raw/churn.csv"), SplitParams())


@pytest.fixture(scope="session")
def bundle(split: DatasetSplit) -> ModelBundle:
    """The default model family (HGB), trained once per session."""
    from core.train import TrainConfig  # pylint: disable=import-outside-toplevel
    from tests.factories import make_bundle  # pylint: disable=import-outside-toplevel

    return make_bundle(split, TrainConfig(cv_folds=0))


@pytest.fixture(scope="session")
def holdout(split: DatasetSplit) -> tuple[pd.DataFrame, np.ndarray]:
    """The holdout features and 0/1 labels."""
    from core.data import to_xy  # pylint: disable=import-outside-toplevel

    return to_xy(split.test)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium through Playwright (its own browser download does not work here)."""
    need(CHROMIUM.exists(), f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """The session's PostgreSQL server (Debian's binaries; see :mod:`tests.postgres`), stopped and
    removed at the end. Skips locally, fails in CI, when it cannot start."""
    from tests import postgres as pg  # pylint: disable=import-outside-toplevel  # only when used

    try:
        server = pg.start_local_postgres()
    except RuntimeError as exc:
        need(False, f"no PostgreSQL server for the tests: {exc}")
        raise  # need() raised already; this keeps the type checker informed
    try:
        yield server
    finally:
        pg.remove(server)


@pytest.fixture(scope="session")
def elasticsearch() -> Iterator[LocalElasticsearch]:
    """The session's Elasticsearch (see :mod:`tests.elastic`). Skips locally, fails in CI, when it
    cannot start."""
    from tests import elastic  # pylint: disable=import-outside-toplevel  # only when used

    yield from elastic.session_elasticsearch()


@pytest.fixture()
def pg_url(postgres: LocalPostgres) -> Iterator[str]:
    """A new empty database on the session's PostgreSQL (dropped after the test)."""
    from core.store import open_engine  # pylint: disable=import-outside-toplevel

    url = postgres.create_database()
    yield url
    open_engine.cache_clear()
    postgres.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty predictions database on each back end: a SQLite file under ``tmp_path``, then
    a database of the session's PostgreSQL server. Tests that take it run once per back end."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_url"))
