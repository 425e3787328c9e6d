"""Scoring validated customers with a model bundle (single record or batch).

:class:`Predictor` validates every input with :mod:`core.schema` (records through the pydantic
``Customer`` model, tables through the vectorised validator) and then scores the encoded
``float64`` matrix of :func:`core.features.encode_records` / :func:`~core.features.encode_frame`.
All scoring goes through :meth:`Predictor.predict_proba_raw`, the one seam where a compiled fast
path (ONNX or exact numpy) replaces the sklearn pipeline; ``compiled`` says which is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from core.features import encode_frame, encode_records
from core.persist import ModelBundle
from core.schema import POSITIVE_LABEL, Customer, check_frame
from core.train import thread_limit

CompiledKind = Literal["onnx", "numpy", "sklearn"]
RawScorer = Callable[[np.ndarray], np.ndarray]
NEGATIVE_LABEL = "no"


class Prediction(BaseModel):
    """The score of one customer."""

    model_config = ConfigDict(frozen=True)

    probability: float = Field(description="Predicted churn probability (0-1).")
    label: Literal["yes", "no"] = Field(description="'yes' when probability >= threshold.")
    threshold: float = Field(description="Decision threshold of the model.")


class Predictor:
    """Score customers with a bundle's pipeline and threshold.

    Args:
        bundle: the model bundle.
        scorer: optional replacement for the sklearn pipeline: a function from the encoded
            ``(n, 19)`` raw matrix to churn probabilities (``(n,)``), e.g. a compiled model.
        compiled: what ``scorer`` is (``"onnx"`` or ``"numpy"``); ``"sklearn"`` without scorer.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        scorer: RawScorer | None = None,
        compiled: CompiledKind = "sklearn",
    ) -> None:
        self.bundle = bundle
        self.threshold = float(bundle.threshold)
        self._scorer: RawScorer = scorer or self._sklearn_scorer
        self.compiled: CompiledKind = compiled if scorer is not None else "sklearn"

    def _sklearn_scorer(self, raw: np.ndarray) -> np.ndarray:
        # One OpenMP thread: on a busy machine HGB's threaded predict is ~30x slower per row.
        with thread_limit(1):
            proba = self.bundle.pipeline.predict_proba(raw)
        return np.asarray(proba[:, 1], dtype=np.float64)

    def predict_proba_raw(self, raw: np.ndarray) -> np.ndarray:
        """Churn probabilities of an encoded ``(n, 19)`` ``float64`` matrix (no validation)."""
        return self._scorer(raw)

    def _label(self, probability: np.ndarray) -> np.ndarray:
        return np.where(probability >= self.threshold, POSITIVE_LABEL, NEGATIVE_LABEL)

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> list[Prediction]:
        """Validate and score customer records (canonical or BigML value spellings).

        Raises:
            pydantic.ValidationError: when a record is not a valid :class:`core.schema.Customer`.
        """
        if not records:
            return []
        customers = [Customer.model_validate(dict(record)).model_dump() for record in records]
        probability = self.predict_proba_raw(encode_records(customers))
        return [
            Prediction(probability=float(p), label=str(label), threshold=self.threshold)
            for p, label in zip(probability, self._label(probability))
        ]

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Validate and score a table (modeldata or BigML spelling; extra columns ignored).

        Returns:
            A new DataFrame with ``probability`` and ``label``, on the input's index.

        Raises:
            core.schema.SchemaError: listing every bad row and column.
        """
        clean = check_frame(frame)
        probability = self.predict_proba_raw(encode_frame(clean))
        return pd.DataFrame(
            {"probability": probability, "label": self._label(probability)}, index=frame.index
        )
