"""The connection to MLflow: where the store is, opened once per process, and what fails.

:func:`configure` is called by every registry function: it points MLflow at
``settings.tracking_uri`` (default: a SQLite store ``var/mlflow.db`` with artifacts under
``var/mlartifacts``, no server) and makes sure the store and the experiment exist. Nothing happens
at import time.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import mlflow
from alembic.util.exc import CommandError
from filelock import FileLock
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from core.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT = "model"
HISTORY_TAG = "champion_history"
MODEL_URI_TAG = "model_uri"
PROBE_TIMEOUT = 5.0


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (no champion, nothing to roll back to...)."""


class TrackingUnavailable(ConnectionError):
    """The HTTP tracking server does not answer (raised fast instead of MLflow's long retries)."""


class ChampionUnavailable(RegistryError):
    """Neither the registry nor the local copy can provide a champion."""


class TrackingStoreBroken(RegistryError):
    """The MLflow store cannot be opened or migrated; the message says what to do."""


#: Tracking URIs whose store this process has opened (migrated, experiment made) under the lock.
_PREPARED: set[str] = set()
#: Seconds a process waits for another one to finish creating/migrating the store.
STORE_LOCK_TIMEOUT = 600.0


def _is_database(uri: str) -> bool:
    """Whether MLflow opens ``uri`` as a SQL database (and migrates it on first open)."""
    return uri.split(":", 1)[0].split("+", 1)[0] in {"sqlite", "postgresql", "mysql", "mssql"}


def store_exists(settings: Settings) -> bool:
    """Whether there is a store to read: a local SQLite file or file store that exists (a read
    must not create one as a side effect); a server or a database server is assumed to be."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///")).is_file()
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file://").removeprefix("file:")).is_dir()
    if "://" not in uri:  # a plain path: MLflow's file store
        return Path(uri).is_dir()
    return True


def _store_lock(settings: Settings, uri: str) -> FileLock:
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
    else:
        path = settings.var_dir / "mlflow-store"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{path}.lock", timeout=STORE_LOCK_TIMEOUT)


def _open_store(settings: Settings, uri: str) -> MlflowClient:
    """A client whose store this process has opened once under a lock: MLflow creates and
    migrates a new SQL store when it first opens it (even in ``MlflowClient()``), and two
    processes doing that at once corrupt it for good."""
    where = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else uri
    try:
        with _store_lock(settings, uri), _quiet_mlflow():
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)  # the tracking store: tables, migrations
            client.search_registered_models(max_results=1)  # the registry store
            _ensure_experiment(settings, client, uri)
            return client
    except TimeoutError as exc:
        raise TrackingStoreBroken(
            f"another process has held the MLflow store lock for more than "
            f"{STORE_LOCK_TIMEOUT:.0f} s ({where}); stop it and retry"
        ) from exc
    except (MlflowException, SQLAlchemyError, CommandError) as exc:
        text = str(exc).strip()
        first_line = text.splitlines()[0][:300] if text else repr(exc)
        raise TrackingStoreBroken(
            f"the MLflow store {where} cannot be opened ({type(exc).__name__}: {first_line}). "
            "If it is a local file that a failed first start left half-migrated, move it aside "
            f"(mv {where} {where}.broken) or run `make clean` to start over; "
            "for a database server, see `mlflow db upgrade`."
        ) from exc


def _ensure_experiment(settings: Settings, client: MlflowClient, uri: str) -> None:
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is None:
        location = settings.artifact_root.as_uri() if uri.startswith("sqlite:") else None
        client.create_experiment(settings.mlflow_experiment, artifact_location=location)


def configure(settings: Settings) -> MlflowClient:
    """Point MLflow at ``settings`` and make sure the store and the experiment exist.

    With the embedded default (a ``sqlite:`` URI) the experiment's artifact location is
    ``settings.artifact_root`` — the same directory ``make mlflow-ui`` serves. A SQL store is
    opened (created, migrated) once per process under a file lock, so processes starting together
    never migrate it at the same time.

    Returns:
        A client bound to the configured tracking and registry URI.

    Raises:
        TrackingUnavailable: when an HTTP tracking server does not answer its health check.
        TrackingStoreBroken: when the store cannot be opened or migrated (the message says why
            and what to do).
    """
    uri = settings.tracking_uri
    if uri.startswith("sqlite:"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    _probe(uri, PROBE_TIMEOUT)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    key = f"{uri}#{settings.mlflow_experiment}"
    if key in _PREPARED:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    elif _is_database(uri):
        client = _open_store(settings, uri)
    else:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        _ensure_experiment(settings, client, uri)
    _PREPARED.add(key)
    mlflow.set_experiment(settings.mlflow_experiment)
    return client


def _probe(uri: str, timeout: float) -> None:
    """Fail fast when an HTTP tracking server is down (MLflow itself retries for minutes)."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        # The scheme is checked above (http/https only), so B310's file:// concern does not apply.
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # nosec B310
            answer.read()
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingUnavailable(f"tracking server {uri} unreachable: {exc}") from exc


@contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's chatty INFO logs (store creation, registration banners) for the duration,
    and its warning that pip's version is unknown (uv venvs have no pip; the model's requirements
    are pinned explicitly)."""
    loggers = {"mlflow": logging.WARNING, "mlflow.utils.environment": logging.ERROR}
    levels = {name: logging.getLogger(name).level for name in loggers}
    for name, level in loggers.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def _now() -> int:
    return int(time.time() * 1000)


def _events(tags: Mapping[str, str]) -> dict[str, str]:
    """The gate decision and manual events of a version (``gate.`` prefix dropped)."""
    prefixes = ("gate.", "promotion.", "rollback.")
    return {
        (k[5:] if k.startswith("gate.") else k): v
        for k, v in tags.items()
        if k.startswith(prefixes)
    }
