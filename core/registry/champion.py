"""The champion as served: loaded from the registry, with a local copy for degraded serving.

:func:`load_champion` returns the champion and keeps a copy under ``settings.model_cache_dir``,
from which serving starts (degraded) when the tracking server is down; :func:`champion_version`
is the cheap question a running API asks to follow promotions made anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from core.persist import MODEL_FILE, ModelBundle, load_bundle
from core.registry.client import (
    CHAMPION,
    MODEL_ARTIFACT,
    ChampionUnavailable,
    RegistryError,
    _events,
    _probe,
    _version_by_alias,
    configure,
    store_exists,
)
from core.registry.versions import _download_version, _load_downloaded
from core.settings import Settings

log = logging.getLogger(__name__)
CACHE_INFO = "champion.json"


@dataclass(frozen=True)
class LoadedModel:
    """The champion as served: bundle, version, metadata and whether it came from the local copy."""

    bundle: ModelBundle
    version: str
    metadata: dict[str, Any]
    degraded: bool = False
    reason: str = ""


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path)


def _refresh_cache(
    client: MlflowClient, settings: Settings, version: ModelVersion, metadata: dict[str, Any]
) -> None:
    """Copy ``version`` into the cache and point ``champion.json`` at it.

    Each version gets its own folder, renamed into place once complete, and the pointer file is
    replaced atomically, so API workers refreshing at the same time never see a half-written copy.
    """
    cache = settings.model_cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    folder = f"v{version.version}-{str(version.run_id)[:12]}"
    final = cache / folder
    if not (final / MODEL_FILE).is_file():
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder}-", dir=cache))
        try:
            _load_downloaded(_download_version(client, settings.model_name, version, tmp))
            shutil.rmtree(tmp / MODEL_ARTIFACT)  # the MLflow copy; model.skops is kept
            try:
                tmp.rename(final)
            except OSError:  # another worker finished the same copy first
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    info = {
        "version": str(version.version),
        "run_id": version.run_id,
        "folder": folder,
        "cached_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "tracking_uri": settings.tracking_uri,
        "metadata": metadata,
    }
    _write_json_atomic(cache / CACHE_INFO, info)
    for old in cache.glob("v*-*"):
        if old.is_dir() and old.name != folder:
            shutil.rmtree(old, ignore_errors=True)


def _load_cache(settings: Settings) -> LoadedModel:
    cache = settings.model_cache_dir
    info = _read_json(cache / CACHE_INFO)
    folder = cache / str(info["folder"])
    metadata = dict(info.get("metadata") or {})
    reference = folder / "reference.json"
    metadata["reference_path"] = str(reference) if reference.is_file() else None
    metadata["cached_at"] = info.get("cached_at")
    metadata["cache_dir"] = str(folder)
    return LoadedModel(bundle=load_bundle(folder), version=str(info["version"]), metadata=metadata)


def _champion_metadata(
    client: MlflowClient, settings: Settings, version: ModelVersion
) -> dict[str, Any]:
    run = client.get_run(str(version.run_id))
    return {
        "name": settings.model_name,
        "version": str(version.version),
        "run_id": version.run_id,
        "aliases": sorted(
            a
            for a, v in (client.get_registered_model(settings.model_name).aliases or {}).items()
            if str(v) == str(version.version)
        ),
        "family": run.data.tags.get("model_family"),
        "data_sha256": run.data.tags.get("data_sha256"),
        "git_commit": run.data.tags.get("git_commit"),
        "registered_at": datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).isoformat(),
        "gate": _events(version.tags),
    }


def load_champion(settings: Settings, *, timeout: float = 3.0) -> LoadedModel:
    """Load the champion from the registry, refreshing the local copy; fall back to that copy.

    Args:
        settings: where the registry and the local copy (``settings.model_cache_dir``) are.
        timeout: seconds to wait for an HTTP tracking server before using the local copy.

    Returns:
        The :class:`LoadedModel`; ``degraded`` is true (with the reason) when it comes from the
        local copy because the registry could not provide the champion.

    Raises:
        ChampionUnavailable: when neither the registry nor a local copy has a champion.
    """
    cache_info = settings.model_cache_dir / CACHE_INFO
    try:
        _probe(settings.tracking_uri, timeout)
        client = configure(settings)
        version = _version_by_alias(client, settings.model_name, CHAMPION)
        if version is None:
            raise RegistryError(f"{settings.model_name} has no {CHAMPION} alias yet")
        cached = _read_json(cache_info) if cache_info.is_file() else {}
        if cached.get("version") != str(version.version) or cached.get("run_id") != version.run_id:
            metadata = _champion_metadata(client, settings, version)
            _refresh_cache(client, settings, version, metadata)
        loaded = _load_cache(settings)
        return LoadedModel(loaded.bundle, loaded.version, {**loaded.metadata, "source": "registry"})
    # Whatever failed on the registry side (HTTP, SQL, missing alias, bad artifact), serving can
    # still start from the last good local copy; the reason is reported, never swallowed.
    except Exception as exc:  # pylint: disable=broad-exception-caught
        # the registry's own refusals read as sentences; anything else is named by its type
        reason = str(exc) if isinstance(exc, RegistryError) else f"{type(exc).__name__}: {exc}"
        if not cache_info.is_file():
            raise ChampionUnavailable(f"no champion: {reason}; no local copy") from exc
        log.warning("registry unavailable (%s); serving the local copy", reason)
        loaded = _load_cache(settings)
        why = f"registry unavailable, serving local copy of v{loaded.version}: {reason}"
        return LoadedModel(
            loaded.bundle, loaded.version, {**loaded.metadata, "source": "cache"}, True, why[:500]
        )


def champion_version(settings: Settings, *, timeout: float = 3.0) -> str | None:
    """The version the ``champion`` alias points at now (None: no champion yet, or no store yet,
    which is not created).

    Raises:
        TrackingUnavailable: when an HTTP tracking server does not answer.
    """
    if not store_exists(settings):
        return None
    _probe(settings.tracking_uri, timeout)
    version = _version_by_alias(configure(settings), settings.model_name, CHAMPION)
    return None if version is None else str(version.version)
