"""Versions of ``churn-model``: the gate that moves ``champion``, manual promotion and rollback,
and the list of versions with their records.

:func:`gate` scores the challenger and the champion on the same holdout rows, neither of which
either model was trained on (:func:`core.registry.gate.fair_holdout`), and moves ``champion`` only
when :func:`core.registry.gate.decide` says so; :func:`promote` and :func:`rollback` are the
recorded manual overrides. Every decision is written on the version and on its run. The three
take turns (:data:`CHAMPION_LOCK`, held by every process sharing the predictions store), so each
starts from the champion the previous one left.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from pydantic import BaseModel

from core import fingerprints
from core.labelled import Quality, labelled_quality
from core.persist import MODEL_FILE, ModelBundle, load_bundle
from core.registry.client import (
    CHALLENGER,
    CHAMPION,
    HISTORY_TAG,
    MODEL_ARTIFACT,
    RegistryError,
    _events,
    _now,
    _version_by_alias,
    configure,
    store_exists,
)
from core.registry.gate import FairHoldout, GateDecision, GatePolicy, decide, fair_holdout
from core.settings import Settings
from core.store.engine import exclusive
from core.train import thread_limit

log = logging.getLogger(__name__)

#: The lock every change of ``champion`` holds (:func:`core.store.engine.exclusive`).
CHAMPION_LOCK = "champion"


def _champion_change(settings: Settings) -> AbstractContextManager[None]:
    """Serialise the changes of ``champion``: the gate, promote and rollback each read the
    champion and the history, then move both; two at once (an admin's promote during a
    retrain's gate, two API workers) would start from the same champion and lose a move. All
    processes sharing the predictions store (``settings.db_url``) take turns."""
    return exclusive(settings.db_url, CHAMPION_LOCK)


def _nothing_registered(settings: Settings) -> RegistryError:
    return RegistryError(
        f"{settings.model_name}: no model registered yet (train one first: make train)"
    )


def _require_store(settings: Settings) -> None:
    """A change of the champion on a fresh clone: refused before any store or lock is created."""
    if not store_exists(settings):
        raise _nothing_registered(settings)


class VersionInfo(BaseModel):
    """One registered version, as ``GET /model/versions`` shows it."""

    version: str
    aliases: list[str]
    metrics: dict[str, float]
    created_at: datetime
    run_id: str | None
    gate: dict[str, str]
    description: str = ""


def _download_version(client: MlflowClient, name: str, version: ModelVersion, dst: Path) -> Path:
    """Download a version's model (``dst/model``), ``bundle.json``, ``reference.json`` and
    ``fingerprints.npy``."""
    dst.mkdir(parents=True, exist_ok=True)
    mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{name}/{version.version}",
        dst_path=str(dst / MODEL_ARTIFACT),
    )
    run_id = str(version.run_id)
    for doc in ("bundle.json", "reference.json", fingerprints.FILE):
        try:
            client.download_artifacts(run_id, doc, str(dst))
        except (MlflowException, OSError) as exc:  # runs logged by hand may lack one
            log.warning("version %s: no %s (%s)", version.version, doc, exc)
    return dst


def _load_downloaded(folder: Path) -> ModelBundle:
    """A downloaded version as a bundle (``model.skops`` loaded with our own allow-list)."""
    model_file = folder / MODEL_ARTIFACT / MODEL_FILE
    if model_file.is_file():
        shutil.move(str(model_file), folder / MODEL_FILE)
    return load_bundle(folder)


def _score(bundle: ModelBundle, rows: FairHoldout) -> Quality:
    with thread_limit(1):
        proba = bundle.pipeline.predict_proba(rows.x)[:, 1] if len(rows.x) else np.empty(0)
    return labelled_quality(rows.y, proba, bundle.threshold)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def _record_decision(client: MlflowClient, name: str, decision: GateDecision) -> None:
    tags = {
        "gate.decision": decision.verdict,
        "gate.reason": decision.reason,
        "gate.metric": decision.metric,
        "gate.margin": f"{decision.margin:g}",
        "gate.challenger_score": _number(decision.challenger_score),
        "gate.champion_score": _number(decision.champion_score),
        "gate.champion_version": decision.champion_version or "",
        "gate.at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if decision.rows is not None:
        rows = decision.rows
        tags |= {
            "gate.compared_rows": str(rows.compared_rows),
            "gate.compared_churners": str(rows.churners),
            "gate.excluded_rows": str(rows.excluded_rows),
        }
    for key, value in tags.items():
        client.set_model_version_tag(name, decision.version, key, value)
    verdict = "PROMOTED to champion" if decision.promoted else "kept as challenger"
    client.update_model_version(name, decision.version, description=f"{verdict}: {decision.reason}")
    run_id = client.get_model_version(name, decision.version).run_id
    if run_id:
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        scores = {
            "gate_challenger_score": decision.challenger_score,
            "gate_champion_score": decision.champion_score,
            "gate_compared_rows": None if decision.rows is None else decision.rows.compared_rows,
            "gate_excluded_rows": None if decision.rows is None else decision.rows.excluded_rows,
        }
        gate_metrics = [Metric(k, float(v), _now(), 0) for k, v in scores.items() if v is not None]
        client.log_batch(run_id, metrics=gate_metrics, synchronous=True)


def _history(client: MlflowClient, name: str) -> list[str]:
    raw = client.get_registered_model(name).tags.get(HISTORY_TAG, "")
    return [v for v in raw.split(",") if v]


def _set_champion(client: MlflowClient, name: str, version: str, history: list[str]) -> None:
    """Move ``champion`` to ``version``; a challenger that became champion is no longer one (the
    alias would show a version as both, with no challenger actually waiting)."""
    client.set_registered_model_alias(name, CHAMPION, version)
    challenger = _version_by_alias(client, name, CHALLENGER)
    if challenger is not None and str(challenger.version) == str(version):
        client.delete_registered_model_alias(name, CHALLENGER)
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history[-50:]))


def gate(
    settings: Settings, version: str, holdout: tuple[pd.DataFrame, np.ndarray]
) -> GateDecision:
    """Promote ``version`` to champion only if the gate's rules say so, on rows neither model saw.

    Both models are loaded from the registry. The holdout rows either one was trained on
    (recognised by the ``fingerprints.npy`` each version keeps) are left out
    (:func:`core.registry.gate.fair_holdout`); both models are scored on the rest, each at its own
    decision threshold, with 95 % intervals (:func:`core.labelled.labelled_quality`); and
    :func:`core.registry.gate.decide` decides with the policy of ``settings``
    (:meth:`core.registry.gate.GatePolicy.from_settings`). The decision, both scores, the rows
    compared and left out, and the reason are recorded as tags and description of the version
    and as tags/metrics of its run.

    Args:
        settings: where the registry is, and the gate's metric, margin and sample rule.
        version: the challenger version.
        holdout: validated raw features and 0/1 labels of the challenger's holdout.

    Returns:
        The :class:`GateDecision`.

    Raises:
        core.store.StoreError: another champion change held the lock too long.
    """
    with _champion_change(settings):
        return _gate(settings, version, holdout)


def _gate(
    settings: Settings, version: str, holdout: tuple[pd.DataFrame, np.ndarray]
) -> GateDecision:
    client = configure(settings)
    name = settings.model_name
    x, y = holdout
    with tempfile.TemporaryDirectory(prefix="churnops-gate-") as tmp:
        challenger = client.get_model_version(name, version)
        bundle = _load_downloaded(_download_version(client, name, challenger, Path(tmp) / "c"))
        current = _version_by_alias(client, name, CHAMPION)
        c_bundle: ModelBundle | None = None
        if current is not None and str(current.version) != str(version):
            c_bundle = _load_downloaded(
                _download_version(client, name, current, Path(tmp) / "champion")
            )
        champion_seen = np.empty(0, np.uint64) if c_bundle is None else c_bundle.seen_rows
        rows = fair_holdout(x, y, bundle.seen_rows, champion_seen)
        quality = _score(bundle, rows)
        champion = None if c_bundle is None else _score(c_bundle, rows)
    decision = decide(
        str(version),
        quality,
        champion,
        str(current.version) if current is not None else None,
        rows.rows,
        GatePolicy.from_settings(settings),
    )
    if decision.promoted:
        _push_history(client, name, str(version), decision.champion_version)
    _record_decision(client, name, decision)
    return decision


def _record_event(
    client: MlflowClient, name: str, version: str, kind: str, tags: Mapping[str, str], text: str
) -> None:
    """Record a manual registry event (``promotion.*`` / ``rollback.*``) on a version and its run.

    The gate's own ``gate.*`` record is left as it was: the history shows both.
    """
    stamped = {f"{kind}.{k}": v for k, v in tags.items()}
    stamped[f"{kind}.at"] = datetime.now(UTC).isoformat(timespec="seconds")
    for key, value in stamped.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=text)
    run_id = client.get_model_version(name, version).run_id
    if run_id:
        for key, value in stamped.items():
            client.set_tag(run_id, key, value)


def _push_history(client: MlflowClient, name: str, version: str, current: str | None) -> None:
    history = [v for v in _history(client, name) if v != version]
    if current is not None and current != version and (not history or history[-1] != current):
        history.append(current)
    _set_champion(client, name, version, history + [version])


def promote(settings: Settings, version: str, reason: str) -> GateDecision:
    """Force ``version`` to champion without the gate, recorded on the version and its run.

    Raises:
        RegistryError: when the version does not exist (or nothing was registered yet).
        core.store.StoreError: another champion change held the lock too long.
    """
    _require_store(settings)
    with _champion_change(settings):
        return _promote(settings, version, reason)


def _promote(settings: Settings, version: str, reason: str) -> GateDecision:
    client = configure(settings)
    name = settings.model_name
    try:
        target = client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc
    current = _version_by_alias(client, name, CHAMPION)
    previous = str(current.version) if current is not None else None
    _push_history(client, name, str(target.version), previous)
    text = f"PROMOTED to champion by hand (was v{previous}): {reason}"
    _record_event(
        client,
        name,
        str(target.version),
        "promotion",
        {"forced": "true", "reason": reason, "previous_champion": previous or ""},
        text,
    )
    score = client.get_run(str(target.run_id)).data.metrics.get("f1", 0.0) if target.run_id else 0.0
    return GateDecision(
        version=str(target.version),
        promoted=True,
        verdict="promoted",
        reason=f"forced promotion: {reason}",
        metric="manual",
        margin=0.0,
        challenger_score=float(score),
        champion_version=previous,
    )


def rollback(settings: Settings, reason: str = "rollback") -> GateDecision:
    """Move ``champion`` back to the previous champion, recorded on both versions and runs.

    Raises:
        RegistryError: when there is no previous champion (or nothing was registered yet).
        core.store.StoreError: another champion change held the lock too long.
    """
    _require_store(settings)
    with _champion_change(settings):
        return _rollback(settings, reason)


def _rollback(settings: Settings, reason: str) -> GateDecision:
    client = configure(settings)
    name = settings.model_name
    try:
        history = _history(client, name)
    except MlflowException as exc:  # a store, but no model registered in it
        raise _nothing_registered(settings) from exc
    current = _version_by_alias(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no champion to roll back")
    demoted = str(current.version)
    if history and history[-1] == demoted:
        history = history[:-1]
    if not history:
        raise RegistryError(f"{name}: no previous champion to roll back to")
    previous = history[-1]
    _set_champion(client, name, previous, history)
    _record_event(
        client,
        name,
        demoted,
        "rollback",
        {"demoted": "true", "reason": reason, "restored": previous},
        f"ROLLED BACK (champion returned to v{previous}): {reason}",
    )
    _record_event(
        client,
        name,
        previous,
        "rollback",
        {"restored": "true", "reason": reason, "demoted": demoted},
        f"RESTORED as champion by rollback from v{demoted}: {reason}",
    )
    score = client.get_run(str(client.get_model_version(name, previous).run_id)).data.metrics
    return GateDecision(
        version=previous,
        promoted=True,
        verdict="rolled_back",
        reason=f"rollback from v{demoted}: {reason}",
        metric="manual",
        margin=0.0,
        challenger_score=float(score.get("f1", 0.0)),
        champion_version=demoted,
    )


def list_versions(settings: Settings) -> list[VersionInfo]:
    """Every version of ``churn-model``, newest first, with aliases, metrics and gate tags
    (none when there is no store yet: a read does not create one)."""
    if not store_exists(settings):
        return []
    client = configure(settings)
    name = settings.model_name
    try:
        aliases = client.get_registered_model(name).aliases or {}
    except MlflowException:
        return []  # nothing registered yet
    out: list[VersionInfo] = []
    for version in client.search_model_versions(f"name='{name}'", order_by=["version_number DESC"]):
        metrics: dict[str, float] = {}
        if version.run_id:
            try:
                data = client.get_run(version.run_id).data.metrics
                metrics = {k: float(v) for k, v in data.items() if not k.startswith("system/")}
            except MlflowException:
                metrics = {}
        out.append(
            VersionInfo(
                version=str(version.version),
                aliases=sorted(a for a, v in aliases.items() if str(v) == str(version.version)),
                metrics=metrics,
                created_at=datetime.fromtimestamp(version.creation_timestamp / 1000, UTC),
                run_id=version.run_id,
                gate=_events(version.tags),
                description=version.description or "",
            )
        )
    return out
