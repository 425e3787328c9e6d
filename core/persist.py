"""The local model bundle: the fitted pipeline (skops, never pickle) plus ``bundle.json``.

A bundle directory holds ``model.skops``, ``bundle.json`` (threshold, holdout metrics and
metadata) and ``fingerprints.npy`` (the training rows' fingerprints, :mod:`core.fingerprints`).
Loading only accepts the types listed in :data:`TRUSTED_TYPES` on top of skops' own defaults: a
file that holds anything else is refused, never unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio  # type: ignore[import-untyped]
import sklearn
from pydantic import BaseModel, ConfigDict, Field
from sklearn.pipeline import Pipeline

from core import fingerprints
from core.evaluate import CVResult, Metrics
from core.train import TrainConfig

BUNDLE_FORMAT = "churnops.bundle/v1"
MODEL_FILE = "model.skops"
BUNDLE_FILE = "bundle.json"

# Types skops does not trust by default but our pipelines are made of (checked on every save).
TRUSTED_TYPES: tuple[str, ...] = (
    "core.features.ChurnFeatures",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)


class UntrustedModelError(ValueError):
    """The pipeline (or file) contains a type outside :data:`TRUSTED_TYPES`."""


class BundleMeta(BaseModel):
    """What is known about how a model was made."""

    model_config = ConfigDict(frozen=True)

    family: str = Field(description="Model family: hgb, rf or logreg.")
    config: TrainConfig = Field(description="The full training configuration.")
    trained_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    data_sha256: str = Field("", description="SHA-256 of the training CSV.")
    n_train: int = 0
    n_valid: int = 0
    n_test: int = 0
    feature_names_in: list[str] = Field(default_factory=list, description="Raw input columns.")
    feature_names_out: list[str] = Field(default_factory=list, description="Model input columns.")
    cv: CVResult | None = Field(None, description="Cross-validated F1 of the same configuration.")
    sklearn_version: str = sklearn.__version__
    fingerprint_format: str = Field(
        "",
        description="Format of the training rows' fingerprints (core.fingerprints.FORMAT); "
        "empty: the bundle keeps none.",
    )


def _no_rows() -> np.ndarray:
    return np.empty(0, dtype=np.uint64)


@dataclass(frozen=True)
class ModelBundle:
    """A fitted pipeline with its decision threshold, holdout metrics and metadata.

    ``fingerprints`` are the sorted fingerprints of every row the model was trained on (fit and
    threshold), in the format ``meta.fingerprint_format``; empty when it keeps none.
    """

    pipeline: Pipeline
    threshold: float
    metrics: Metrics
    meta: BundleMeta
    fingerprints: np.ndarray = field(default_factory=_no_rows)

    @property
    def seen_rows(self) -> np.ndarray | None:
        """The training-row fingerprints in the current format, or None when it keeps none."""
        if self.meta.fingerprint_format != fingerprints.FORMAT:
            return None
        return self.fingerprints


def bundle_document(bundle: ModelBundle) -> dict[str, Any]:
    """The JSON document stored as ``bundle.json`` (everything but the pipeline)."""
    return {
        "format": BUNDLE_FORMAT,
        "threshold": float(bundle.threshold),
        "metrics": bundle.metrics.model_dump(mode="json"),
        "meta": bundle.meta.model_dump(mode="json"),
    }


def bundle_from_document(pipeline: Pipeline, document: Mapping[str, Any]) -> ModelBundle:
    """Rebuild a :class:`ModelBundle` from a loaded pipeline and its ``bundle.json`` document.

    Raises:
        ValueError: when the document is not a churnops bundle.
    """
    if document.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"not a {BUNDLE_FORMAT} document: format={document.get('format')!r}")
    return ModelBundle(
        pipeline=pipeline,
        threshold=float(document["threshold"]),
        metrics=Metrics.model_validate(document["metrics"]),
        meta=BundleMeta.model_validate(document["meta"]),
    )


def check_trusted(unknown: list[str]) -> None:
    """Raise :class:`UntrustedModelError` when ``unknown`` holds a type we do not trust."""
    refused = sorted(set(unknown) - set(TRUSTED_TYPES))
    if refused:
        raise UntrustedModelError(f"untrusted type(s) in the model: {', '.join(refused)}")


def dumps_pipeline(pipeline: Pipeline) -> bytes:
    """Serialise a pipeline with skops after checking it only holds trusted types."""
    data: bytes = sio.dumps(pipeline)
    check_trusted(list(sio.get_untrusted_types(data=data)))
    return data


def loads_pipeline(data: bytes) -> Pipeline:
    """Load a skops pipeline, refusing types beyond skops' defaults and :data:`TRUSTED_TYPES`."""
    check_trusted(list(sio.get_untrusted_types(data=data)))
    pipeline = sio.loads(data, trusted=list(TRUSTED_TYPES))
    if not isinstance(pipeline, Pipeline):
        raise UntrustedModelError(f"expected a sklearn Pipeline, found {type(pipeline).__name__}")
    return pipeline


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_bundle(bundle: ModelBundle, directory: Path) -> Path:
    """Write ``model.skops``, ``bundle.json`` and ``fingerprints.npy`` into ``directory``.

    The directory is created if needed; ``fingerprints.npy`` only when the bundle keeps some.

    Args:
        bundle: the bundle to save.
        directory: target directory.

    Returns:
        ``directory``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / MODEL_FILE, dumps_pipeline(bundle.pipeline))
    text = json.dumps(bundle_document(bundle), indent=2) + "\n"
    _write_atomic(directory / BUNDLE_FILE, text.encode("utf-8"))
    if bundle.meta.fingerprint_format:
        _write_atomic(directory / fingerprints.FILE, fingerprints.dumps(bundle.fingerprints))
    return directory


def load_bundle(directory: Path) -> ModelBundle:
    """Load a bundle saved by :func:`save_bundle`.

    Raises:
        FileNotFoundError: when the model or ``bundle.json`` is missing (a missing
            ``fingerprints.npy`` gives a bundle that keeps none).
        ValueError: when ``fingerprints.npy`` is not a fingerprints file.
        UntrustedModelError: when the model file holds an untrusted type.
    """
    pipeline = loads_pipeline((directory / MODEL_FILE).read_bytes())
    document = json.loads((directory / BUNDLE_FILE).read_text(encoding="utf-8"))
    bundle = bundle_from_document(pipeline, document)
    seen = directory / fingerprints.FILE
    if bundle.meta.fingerprint_format and seen.is_file():
        return replace(bundle, fingerprints=fingerprints.load(seen))
    return replace(bundle, meta=bundle.meta.model_copy(update={"fingerprint_format": ""}))


LATEST_FILE = "LATEST"


def mark_latest(directory: Path) -> None:
    """Record ``directory`` as the newest bundle of its parent (``<parent>/LATEST``)."""
    _write_atomic(directory.parent / LATEST_FILE, (directory.name + "\n").encode("utf-8"))


def latest_bundle_dir(models_dir: Path) -> Path:
    """The bundle directory last marked by :func:`mark_latest` under ``models_dir``.

    Raises:
        FileNotFoundError: when no bundle was saved there yet.
    """
    pointer = models_dir / LATEST_FILE
    if not pointer.is_file():
        raise FileNotFoundError(f"no trained model under {models_dir} (run `make train` first)")
    return models_dir / pointer.read_text(encoding="utf-8").strip()
