"""Scoring: the one path from customers to churn probabilities and labels (:class:`ServedModel`).

Every entry point scores through a :class:`ServedModel`: the API (``POST /predict``, the batch,
the WebSocket, explain), ``churnops predict``/``evaluate`` and the model tests. It is built once
per model version by :meth:`ServedModel.build`, which compiles the pipeline
(:func:`core.fastpath.build_scorer`: ONNX Runtime or exact numpy, sklearn when not compilable),
so the CLI and the API give the same numbers to the last bit.

The label rule is :func:`core.schema.predicted_churn` (churn when ``probability >=
threshold``); a scored table's result columns are :data:`core.tables.PROBABILITY` and
:data:`core.tables.LABEL` (:func:`core.tables.scored_table`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.fastpath import CompiledKind, Scorer, build_scorer
from core.features import encode_frame, encode_records
from core.persist import ModelBundle
from core.schema import NEGATIVE_LABEL, POSITIVE_LABEL, check_frame, predicted_churn
from core.tables import LABEL, PROBABILITY

if TYPE_CHECKING:  # the registry (and MLflow) is only needed by its callers
    from core.registry import LoadedModel


def labels_of(probability: np.ndarray, threshold: float) -> np.ndarray:
    """``yes``/``no`` per probability, by the one rule :func:`core.schema.predicted_churn`."""
    return np.where(predicted_churn(probability, threshold), POSITIVE_LABEL, NEGATIVE_LABEL)


@dataclass(frozen=True)
class ServedModel:
    """One model version ready to score: the bundle, its compiled scorer and what it is.

    Never mutated: the API swaps a whole new one in when the champion changes.

    Attributes:
        bundle: the model bundle (pipeline, threshold, metrics, metadata).
        scorer: encoded ``(n, 19)`` raw matrix in, churn probabilities out.
        version: the registry version (or a local name, e.g. the bundle directory).
        generation: the API's model generation it was loaded for (0 outside the API).
        info: the description ``GET /model`` returns.
        degraded: loaded from the local copy because the registry was unreachable.
        reason: why it is degraded.
    """

    bundle: ModelBundle
    scorer: Scorer
    version: str
    generation: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    degraded: bool = False
    reason: str = ""

    @classmethod
    def build(
        cls,
        bundle: ModelBundle,
        version: str,
        *,
        generation: int = 0,
        name: str = "",
        metadata: Mapping[str, Any] | None = None,
        degraded: bool = False,
        reason: str = "",
    ) -> ServedModel:
        """Compile ``bundle`` (sklearn when it cannot be) and describe it.

        Args:
            bundle: the model bundle.
            version: the registry version (or a local name).
            generation: the API's model generation.
            name: the registered model name.
            metadata: the registry's metadata of the version (overrides the bundle's).
            degraded: loaded from the local copy.
            reason: why it is degraded.
        """
        scorer = build_scorer(bundle.pipeline, bundle.threshold, version)
        meta = {**_as_dict(getattr(bundle, "meta", None)), **(metadata or {})}
        info = {
            "name": name,
            "version": str(version),
            "alias": "champion",
            "family": meta.get("family"),
            "metrics": _as_dict(getattr(bundle, "metrics", None)),
            "trained_at": _text(meta.get("trained_at")),
            "data_sha256": meta.get("data_sha256"),
            "threshold": float(bundle.threshold),
            "compiled": scorer.kind,
            "degraded": degraded,
            "reason": reason or None,
            "generation": generation,
        }
        return cls(bundle, scorer, str(version), generation, info, degraded, reason)

    @classmethod
    def from_loaded(cls, loaded: LoadedModel, generation: int = 0, name: str = "") -> ServedModel:
        """:meth:`build` on what :func:`core.registry.load_champion` returned."""
        return cls.build(
            loaded.bundle,
            loaded.version,
            generation=generation,
            name=name,
            metadata=loaded.metadata,
            degraded=loaded.degraded,
            reason=loaded.reason,
        )

    @property
    def threshold(self) -> float:
        """The decision threshold: churn when the probability reaches it."""
        return float(self.bundle.threshold)

    @property
    def compiled(self) -> CompiledKind:
        """What scores: ``"onnx"``, ``"numpy"`` or ``"sklearn"``."""
        return self.scorer.kind

    # The inputs of the score_* methods are already validated (the API's Customer model, the
    # table reader's validator); predict_frame validates a table itself.
    def score_one(self, record: Mapping[str, Any]) -> float:
        """Churn probability of one validated record (the 19 canonical fields)."""
        return self.scorer.one(encode_records([record])[0])

    def score_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Churn probabilities (``(n,)``) of validated records."""
        return self._score(encode_records(records)) if records else np.empty(0)

    def score_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Churn probabilities (``(n,)``) of a validated, typed table (the 19 canonical columns;
        others ignored)."""
        return self._score(encode_frame(frame)) if len(frame) else np.empty(0)

    def _score(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(self.scorer(raw), dtype=np.float64)

    def label(self, probability: float) -> str:
        """``yes`` when ``probability`` reaches the threshold, else ``no``."""
        return POSITIVE_LABEL if predicted_churn(probability, self.threshold) else NEGATIVE_LABEL

    def labels(self, probability: np.ndarray) -> np.ndarray:
        """``yes``/``no`` per probability (:func:`labels_of` at this model's threshold)."""
        return labels_of(probability, self.threshold)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Validate and score a table (modeldata or BigML spelling; extra columns ignored).

        Returns:
            A new DataFrame with :data:`core.tables.PROBABILITY` and :data:`core.tables.LABEL`,
            on the input's index.

        Raises:
            core.schema.SchemaError: listing every bad row and column.
        """
        probability = self.score_frame(check_frame(frame))
        return pd.DataFrame(
            {PROBABILITY: probability, LABEL: self.labels(probability)}, index=frame.index
        )


def _as_dict(value: Any) -> dict[str, Any]:
    """A bundle's metadata or metrics as a JSON-ready dict (``{}`` for none)."""
    if value is None:
        return {}
    if hasattr(value, "model_dump"):
        return dict(value.model_dump(mode="json"))
    return dict(value) if isinstance(value, Mapping) else dict(vars(value))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
