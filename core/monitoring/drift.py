"""Data drift: live feature distributions against the champion's training reference.

:func:`compute_drift` is pure: the reference (``reference.json``, see :mod:`core.reference`) and a
DataFrame of raw features in, a :class:`DriftReport` out. PSI is computed for every feature on the
reference's own bins (numeric) or categories; the two-sample Kolmogorov-Smirnov test against the
reference sample is added for numeric features. A feature drifts when its PSI exceeds the threshold
(0.2 by default: the usual "significant shift" level).
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from scipy import stats

from core.reference import (
    CategoricalReference,
    NumericReference,
    Reference,
    bin_frequencies,
    category_frequencies,
)

PSI_THRESHOLD = 0.2
PSI_EPSILON = 1e-4


class FeatureDrift(BaseModel):
    """Drift of one feature."""

    feature: str
    kind: str = Field(description="numeric or categorical")
    psi: float = Field(description="Population stability index against the reference.")
    ks_statistic: float | None = Field(None, description="Two-sample KS statistic (numeric only).")
    ks_pvalue: float | None = Field(None, description="KS p-value (numeric only).")
    drifted: bool = Field(description="Whether PSI exceeds the threshold.")


class DriftReport(BaseModel):
    """The drift of one window of data against the reference."""

    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    computed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    reference_rows: int
    current_rows: int
    threshold: float
    features: list[FeatureDrift]
    model_version: str | None = None
    source: str = "dataframe"
    window_start: datetime | None = None
    window_end: datetime | None = None

    @property
    def drifted_features(self) -> list[str]:
        """Names of the features whose PSI exceeds the threshold."""
        return [f.feature for f in self.features if f.drifted]

    @property
    def max_psi(self) -> float:
        """The largest PSI over all features."""
        return max((f.psi for f in self.features), default=0.0)

    @property
    def mean_psi(self) -> float:
        """The mean PSI over all features (the overall score)."""
        return float(np.mean([f.psi for f in self.features])) if self.features else 0.0

    @property
    def drifted(self) -> bool:
        """Whether at least one feature drifted."""
        return bool(self.drifted_features)


def psi(expected: list[float] | np.ndarray, actual: list[float] | np.ndarray) -> float:
    """Population stability index ``sum((a - e) * ln(a / e))``, empty bins floored at 1e-4."""
    exp = np.clip(np.asarray(expected, dtype="float64"), PSI_EPSILON, None)
    act = np.clip(np.asarray(actual, dtype="float64"), PSI_EPSILON, None)
    return float(np.sum((act - exp) * np.log(act / exp)))


def _numeric(name: str, ref: NumericReference, values: pd.Series, threshold: float) -> FeatureDrift:
    arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    arr = arr[np.isfinite(arr)]
    score = psi(ref.frequencies, bin_frequencies(arr, ref.bins))
    statistic: float | None = None
    pvalue: float | None = None
    if arr.size and ref.sample:
        result = stats.ks_2samp(arr, np.asarray(ref.sample, dtype="float64"))
        statistic, pvalue = float(result.statistic), float(result.pvalue)
    return FeatureDrift(
        feature=name,
        kind="numeric",
        psi=score,
        ks_statistic=statistic,
        ks_pvalue=pvalue,
        drifted=score > threshold,
    )


def _categorical(
    name: str, ref: CategoricalReference, values: pd.Series, threshold: float
) -> FeatureDrift:
    live = category_frequencies(values)
    categories = sorted(set(ref.frequencies) | set(live))
    score = psi(
        [ref.frequencies.get(c, 0.0) for c in categories], [live.get(c, 0.0) for c in categories]
    )
    return FeatureDrift(feature=name, kind="categorical", psi=score, drifted=score > threshold)


def compute_drift(
    reference: Reference, current: pd.DataFrame, threshold: float = PSI_THRESHOLD
) -> DriftReport:
    """Compare ``current`` raw features (not modified) with the training ``reference``.

    Args:
        reference: the champion's ``reference.json`` document.
        current: recent rows with the raw feature columns (missing columns are skipped).
        threshold: PSI above which a feature counts as drifted.

    Returns:
        The :class:`DriftReport` (features in reference order).

    Raises:
        ValueError: when ``current`` has no rows.
    """
    if current.empty:
        raise ValueError("no current rows to compare with the reference")
    features: list[FeatureDrift] = []
    for name, ref in reference.features.items():
        if name not in current.columns:
            continue
        if isinstance(ref, NumericReference):
            features.append(_numeric(name, ref, current[name], threshold))
        else:
            features.append(_categorical(name, ref, current[name], threshold))
    for item in features:
        if not math.isfinite(item.psi):  # pragma: no cover - guarded by the epsilon floor
            raise ValueError(f"PSI of {item.feature} is not finite")
    return DriftReport(
        reference_rows=reference.n_rows,
        current_rows=len(current),
        threshold=threshold,
        features=features,
    )


def drift_documents(report: DriftReport) -> list[dict[str, object]]:
    """Elasticsearch documents of a report: one per feature plus one overall (deterministic ids)."""
    common: dict[str, object] = {
        "@timestamp": report.computed_at.isoformat(),
        "window": {
            "start": report.window_start.isoformat() if report.window_start else None,
            "end": report.window_end.isoformat() if report.window_end else None,
            "rows": report.current_rows,
        },
        "reference": {"rows": report.reference_rows},
        "model": {"version": report.model_version or ""},
    }
    docs: list[dict[str, object]] = []
    for item in report.features:
        docs.append(
            {
                **common,
                "_id": f"{report.run_id}-{item.feature}",
                "drift": {
                    "run_id": report.run_id,
                    "feature": item.feature,
                    "feature_kind": item.kind,
                    "psi": item.psi,
                    "ks_statistic": item.ks_statistic,
                    "ks_pvalue": item.ks_pvalue,
                    "drifted": item.drifted,
                    "threshold": report.threshold,
                    "is_overall": False,
                    "source": report.source,
                },
            }
        )
    docs.append(
        {
            **common,
            "_id": f"{report.run_id}-overall",
            "drift": {
                "run_id": report.run_id,
                "feature": "_overall",
                "psi": report.mean_psi,
                "max_psi": report.max_psi,
                "drifted_features": len(report.drifted_features),
                "drifted": report.drifted,
                "threshold": report.threshold,
                "is_overall": True,
                "source": report.source,
            },
        }
    )
    return docs
