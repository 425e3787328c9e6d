"""The training reference distribution that drift monitoring compares live traffic against.

:func:`build_reference` summarises the raw training features (the 19 columns of
:mod:`core.schema`) into a small JSON document, logged with every training run as
``reference.json`` and copied next to the cached champion. Its format (``churnops.reference/v1``)
is documented in ``docs/design.md``; :func:`bin_frequencies` and :func:`category_frequencies` are
the exact binning rules, so the monitor computes live frequencies the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from core.schema import CATEGORICAL_FEATURES, NUMERIC_FEATURES

REFERENCE_FORMAT = "churnops.reference/v1"
DEFAULT_BINS = 10
SAMPLE_SIZE = 500


class NumericReference(BaseModel):
    """Histogram of one numeric feature on the training data."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["numeric"] = "numeric"
    bins: list[float] = Field(description="Increasing bin edges (k + 1 values for k bins).")
    frequencies: list[float] = Field(description="Share of rows per bin (k values, sum 1).")
    count: int = Field(description="Non-missing training rows.")
    missing: int = Field(0, description="Missing training rows.")
    mean: float
    std: float
    quantiles: list[float] = Field(description="The 0th, 1st, ..., 100th percentiles (101 values).")
    sample: list[float] = Field(
        description="A seeded sample of training values, for two-sample KS."
    )


class CategoricalReference(BaseModel):
    """Category frequencies of one categorical feature on the training data."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["categorical"] = "categorical"
    frequencies: dict[str, float] = Field(description="Share of rows per category (sum 1).")
    count: int
    missing: int = 0


FeatureReference = Annotated[NumericReference | CategoricalReference, Field(discriminator="kind")]


class Reference(BaseModel):
    """The whole reference document (``reference.json``)."""

    model_config = ConfigDict(frozen=True)

    format: str = REFERENCE_FORMAT
    n_rows: int
    data_sha256: str = ""
    features: dict[str, FeatureReference]

    def to_json(self) -> str:
        """Serialise to the JSON text stored as ``reference.json``."""
        return self.model_dump_json(indent=1)

    def save(self, path: Path) -> Path:
        """Write ``reference.json`` to ``path`` (a file) and return it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json(), encoding="utf-8")
        return path


def bin_edges(values: np.ndarray, bins: int = DEFAULT_BINS) -> list[float]:
    """Quantile bin edges of ``values``: at most ``bins`` bins, duplicate edges merged.

    Args:
        values: finite training values.
        bins: the wanted number of bins (fewer when the feature has few distinct values).

    Returns:
        Increasing edges; a constant feature gets the two edges ``[v, v + 1]``.
    """
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))
    if edges.size < 2:
        edges = np.array([edges[0], edges[0] + 1.0])
    return [float(edge) for edge in edges]


def bin_frequencies(values: Sequence[float] | np.ndarray, edges: Sequence[float]) -> list[float]:
    """Share of ``values`` per bin, with the reference binning rule.

    Bin ``i`` holds ``edges[i] <= v < edges[i + 1]``, the last bin also holds ``v == edges[-1]``;
    values below the first edge count in the first bin, values above the last edge in the last bin
    (so live values outside the training range still count). Missing values are ignored.

    Args:
        values: the values to bin (training or live).
        edges: the reference edges.

    Returns:
        ``len(edges) - 1`` frequencies summing to 1 (all zeros when no value is present).
    """
    arr = np.asarray(values, dtype="float64")
    arr = arr[np.isfinite(arr)]
    lo, hi = float(edges[0]), float(edges[-1])
    counts, _ = np.histogram(np.clip(arr, lo, hi), bins=np.asarray(edges, dtype="float64"))
    total = counts.sum()
    return [float(c / total) if total else 0.0 for c in counts]


def category_frequencies(values: pd.Series) -> dict[str, float]:
    """Share of each category in ``values`` (missing values ignored), sorted by category."""
    counts = values.dropna().astype(str).value_counts()
    total = int(counts.sum())
    return {str(k): float(counts[k] / total) for k in sorted(counts.index)} if total else {}


def _numeric(values: pd.Series, bins: int, seed: int) -> NumericReference:
    raw = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    finite = raw[np.isfinite(raw)]
    if finite.size == 0:
        raise ValueError(f"feature {values.name!r} has no finite training value")
    edges = bin_edges(finite, bins)
    rng = np.random.default_rng(seed)
    size = min(SAMPLE_SIZE, finite.size)
    sample = np.sort(rng.choice(finite, size=size, replace=False))
    return NumericReference(
        bins=edges,
        frequencies=bin_frequencies(finite, edges),
        count=int(finite.size),
        missing=int(raw.size - finite.size),
        mean=float(finite.mean()),
        std=float(finite.std()),
        quantiles=[float(q) for q in np.quantile(finite, np.linspace(0.0, 1.0, 101))],
        sample=[float(v) for v in sample],
    )


def build_reference(
    frame: pd.DataFrame, *, data_sha256: str = "", bins: int = DEFAULT_BINS, seed: int = 42
) -> Reference:
    """Summarise the raw training features of ``frame`` (not modified) for drift monitoring.

    Args:
        frame: training rows with the raw schema columns (extra columns are ignored).
        data_sha256: SHA-256 of the source data file, recorded for provenance.
        bins: number of quantile bins per numeric feature.
        seed: seed of the KS sample.

    Returns:
        The :class:`Reference` document.
    """
    features: dict[str, FeatureReference] = {}
    for name in NUMERIC_FEATURES:
        if name in frame.columns:
            features[name] = _numeric(frame[name], bins, seed)
    for name in CATEGORICAL_FEATURES:
        if name in frame.columns:
            column = frame[name]
            features[name] = CategoricalReference(
                frequencies=category_frequencies(column),
                count=int(column.notna().sum()),
                missing=int(column.isna().sum()),
            )
    return Reference(n_rows=len(frame), data_sha256=data_sha256, features=features)


def load_reference(path: Path) -> Reference:
    """Read a ``reference.json`` written by :meth:`Reference.save`."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != REFERENCE_FORMAT:
        raise ValueError(f"{path}: not a {REFERENCE_FORMAT} document")
    return Reference.model_validate(data)
