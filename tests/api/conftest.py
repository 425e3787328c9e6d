"""Fixtures of the API tests: one small model trained once per session, apps on tmp stores."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.main import create_app
from core.data import DatasetSplit
from core.persist import ModelBundle
from core.registry import LoadedModel
from core.settings import Settings
from core.train import HGBParams, TrainConfig
from ops import services
from tests.conftest import ROOT
from tests.factories import make_bundle
from tests.net import free_port

API_KEY = "test-key"


@pytest.fixture(scope="session")
def small_bundle(split: DatasetSplit) -> ModelBundle:
    """A second, different model (for swaps)."""
    params = HGBParams(max_iter=30, max_leaf_nodes=7)
    return make_bundle(split, TrainConfig(params=params, cv_folds=0))


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


def shared_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """What the ``settings`` fixture gives (ENV=test, the admin key, every store under a new tmp
    dir), for an app that the tests of a module share."""
    var_dir = tmp_path_factory.mktemp("shared-app") / "var"
    return Settings(_env_file=None, env="test", var_dir=var_dir, api_key=SecretStr(API_KEY))


@pytest.fixture(scope="module")
def module_client(
    bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """A ``client`` shared by the tests of a module that store nothing and read nothing stored
    (each request is refused: 401, 415, 422...): one app start per module, not one per test
    (each start migrates a new database and loads the model). Tests must not change its
    headers or its app."""
    app = create_app(
        shared_settings(tmp_path_factory),
        loader=Champion(LoadedModel(bundle, "1", {"source": "test"})),
        watch_interval=0.05,
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
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
