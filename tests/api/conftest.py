"""Fixtures of the API tests: one small model trained once per session, apps on tmp stores."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.main import create_app
from core import fingerprints
from core.data import DatasetSplit, SplitParams, load_dataset, split_dataset, to_xy
from core.evaluate import choose_threshold, evaluate
from core.persist import BundleMeta, ModelBundle
from core.registry import LoadedModel
from core.settings import Settings
from core.train import HGBParams, TrainConfig, fit_pipeline
from ops import services
from tests.conftest import ROOT
from tests.net import free_port

API_KEY = "test-key"


def make_bundle(split: DatasetSplit, config: TrainConfig) -> ModelBundle:
    """Fit, choose the threshold on validation, evaluate on the holdout; keep the fingerprints
    of the train and validation rows, as training does."""
    x_train, y_train = to_xy(split.train)
    x_valid, y_valid = to_xy(split.valid)
    x_test, y_test = to_xy(split.test)
    pipeline = fit_pipeline(config, x_train, y_train)
    threshold = choose_threshold(y_valid, pipeline.predict_proba(x_valid)[:, 1])
    metrics = evaluate(y_test, pipeline.predict_proba(x_test)[:, 1], threshold)
    meta = BundleMeta(
        family=config.family,
        config=config,
        data_sha256="test",
        fingerprint_format=fingerprints.FORMAT,
    )
    seen = fingerprints.fingerprint_set(pd.concat([split.train, split.valid]))
    return ModelBundle(
        pipeline=pipeline, threshold=threshold, metrics=metrics, meta=meta, fingerprints=seen
    )


@pytest.fixture(scope="session")
def split() -> DatasetSplit:
    """The project's fixed split of the real data."""
    return split_dataset(load_dataset(ROOT / "data/raw/churn.csv"), SplitParams())


@pytest.fixture(scope="session")
def bundle(split: DatasetSplit) -> ModelBundle:
    """The default model family (HGB), trained once per session."""
    return make_bundle(split, TrainConfig(cv_folds=0))


@pytest.fixture(scope="session")
def small_bundle(split: DatasetSplit) -> ModelBundle:
    """A second, different model (for swaps)."""
    params = HGBParams(max_iter=30, max_leaf_nodes=7)
    return make_bundle(split, TrainConfig(params=params, cv_folds=0))


@pytest.fixture(scope="session")
def holdout(split: DatasetSplit) -> tuple[pd.DataFrame, np.ndarray]:
    """The holdout features and 0/1 labels."""
    return to_xy(split.test)


class Champion:
    """A mutable champion for the in-memory loader: tests swap ``loaded``."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.calls = 0

    def __call__(self, settings: Settings) -> LoadedModel:
        del settings
        self.calls += 1
        return self.loaded


@pytest.fixture()
def champion(bundle: ModelBundle) -> Champion:
    """The loader the app uses (version 1 = the session bundle)."""
    return Champion(LoadedModel(bundle, "1", {"source": "test"}))


AppFactory = Callable[..., FastAPI]


@pytest.fixture()
def make_app(settings: Settings, champion: Champion) -> AppFactory:
    """Build apps on the tmp settings with the in-memory champion (kwargs go to create_app)."""

    def build(**kwargs: Any) -> FastAPI:
        kwargs.setdefault("loader", champion)
        kwargs.setdefault("watch_interval", 0.05)
        return create_app(kwargs.pop("settings", settings), **kwargs)

    return build


@pytest.fixture()
def client(make_app: AppFactory) -> Iterator[TestClient]:
    """A TestClient with the lifespan run (model loaded, writer started), sending the admin key
    (every role; who may do what is tested in test_auth.py: pass ``headers`` to override)."""
    with TestClient(make_app(), raise_server_exceptions=False) as test_client:
        test_client.headers["X-API-Key"] = API_KEY
        yield test_client


class LiveServer:
    """A real uvicorn process (``--factory``) on a free port."""

    def __init__(self, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The one definition of how the API starts (make serve, make run, the image use it too).
        service = services.api(
            Settings(_env_file=None), host="127.0.0.1", port=self.port, workers=workers
        )
        cmd = list(service.argv)
        env = service.environment(env)
        self.log = Path(env["VAR_DIR"]) / f"uvicorn-{self.port}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            cmd, env=env, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait for ``GET /ready`` to answer 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"API not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        """SIGTERM (graceful: the writer flushes), then wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
        return int(self.proc.returncode)


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment of a real server using the test's tmp stores."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DATABASE_"))}
    env.update(
        {
            "VAR_DIR": str(settings.var_dir),
            "ENV": "test",
            "API_KEY": API_KEY,
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )
    return env
