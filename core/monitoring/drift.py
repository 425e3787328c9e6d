"""Data drift: live feature distributions against the champion's training reference.

:func:`compute_drift` is pure: the reference (``reference.json``, see :mod:`core.reference`) and a
DataFrame of raw features in, a :class:`DriftReport` out. Its verdict has a controlled false-alarm
rate: on a window of data from the training distribution, a report says ``drift`` with probability
at most ``alpha`` (5 % by default), whatever the window's size from :data:`MIN_ROWS` rows on.

**One test per feature, chosen by the feature's kind and the window's size** (the defaults of
Evidently's data-drift preset for small samples, with an exact p-value where the normal or
chi-squared approximation fails on few rows):

=====================  ====================================================================
feature                test (p-value)
=====================  ====================================================================
numeric                two-sample Kolmogorov-Smirnov against the reference's sample of
(real or integer)      training values (``scipy.stats.ks_2samp``: exact for small samples)
binary category        two-proportion z-test (``statsmodels`` ``proportions_ztest``) when
                       every expected count is at least 5 (Cochran's rule), else Fisher's
                       exact test (``scipy.stats.fisher_exact``)
category (3+ values)   Pearson's chi-squared test of homogeneity of the reference's and the
                       window's counts (``scipy.stats.chi2_contingency``) when every expected
                       count is at least 5, else the same statistic with a Monte Carlo p-value
                       over tables with the same margins (1,999 seeded draws; exact level)
=====================  ====================================================================

Integer features (call counts) have ties, for which the KS p-value is conservative: the real
false-alarm rate is lower than computed, never higher (the price is some power, measured by
``make bench-drift``'s service-calls shift).

**Nineteen features are tested at once**, so the p-values are adjusted with Holm's step-down
method (Holm 1979, ``statsmodels`` ``multipletests``): a feature drifts when its adjusted p-value
is at most ``alpha``, and the probability that *any* feature of an in-distribution window drifts
(the family-wise error rate, i.e. the report's false alarm) is at most ``alpha`` whatever the
dependence between features (minutes and charges move together).

**Large windows** (more than :data:`LARGE_WINDOW` rows): there the tests flag shifts too small to
matter, so a feature must also have moved by at least :data:`DISTANCE_THRESHOLD` (Evidently's
large-sample rule: the Wasserstein distance in units of the reference's standard deviation for
numeric features, the Jensen-Shannon distance for categories). This can only remove alarms.

**Small windows**: below :data:`MIN_ROWS` rows the report's verdict is ``not_enough_rows``; no
feature is tested and nothing alarms.

The population stability index (PSI, on the reference's bins or categories) and the distance are
reported for every feature as descriptive figures; neither decides on its own.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from scipy import stats
from scipy.spatial.distance import jensenshannon
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportions_ztest

from core.reference import (
    CategoricalReference,
    NumericReference,
    Reference,
    bin_frequencies,
    category_frequencies,
)

#: The family-wise false-alarm rate of a report (Holm-adjusted p-values are compared with it).
ALPHA = 0.05
#: Fewer rows than this: no verdict (``not_enough_rows``).
MIN_ROWS = 50
#: More rows than this: a drifting feature must also move by :data:`DISTANCE_THRESHOLD`.
LARGE_WINDOW = 1000
#: Evidently's threshold for the normed Wasserstein and the Jensen-Shannon distance.
DISTANCE_THRESHOLD = 0.1
#: Cochran's rule: the chi-squared (and z) approximation needs every expected count >= 5.
MIN_EXPECTED = 5.0
#: Monte Carlo tables for a sparse chi-squared test (p-values resolve to 1 / 2,000 = 0.0005,
#: below Holm's smallest threshold 0.05 / 19 = 0.0026).
MONTE_CARLO_TABLES = 1999
PSI_EPSILON = 1e-4

Verdict = Literal["drift", "no_drift", "not_enough_rows"]
TestName = Literal["ks", "z", "fisher", "chi2", "chi2_monte_carlo"]


class FeatureDrift(BaseModel):
    """Drift of one feature."""

    feature: str
    kind: str = Field(description="numeric or categorical")
    rows: int = Field(description="Non-missing window values of this feature.")
    test: TestName | None = Field(None, description="The test run (None: not enough rows).")
    statistic: float | None = Field(None, description="The test's statistic.")
    p_value: float | None = Field(None, description="The test's p-value.")
    p_value_adjusted: float | None = Field(
        None, description="Holm-adjusted p-value over the features tested together."
    )
    distance: float = Field(
        description="Normed Wasserstein (numeric) or Jensen-Shannon distance (categorical)."
    )
    psi: float = Field(description="Population stability index against the reference.")
    drifted: bool = Field(
        description="Adjusted p-value <= alpha (in windows over 1,000 rows also distance >= 0.1)."
    )


class DriftReport(BaseModel):
    """The drift of one window of data against the reference."""

    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    computed_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    reference_rows: int
    current_rows: int
    alpha: float = Field(description="Family-wise false-alarm rate of the verdict.")
    min_rows: int = Field(description="Fewest rows that get a verdict.")
    features: list[FeatureDrift]
    model_version: str | None = None
    source: str = "dataframe"
    window_start: datetime | None = None
    window_end: datetime | None = None

    @property
    def verdict(self) -> Verdict:
        """``drift``, ``no_drift`` or ``not_enough_rows`` (no feature could be tested)."""
        if self.current_rows < self.min_rows or all(f.test is None for f in self.features):
            return "not_enough_rows"
        return "drift" if self.drifted_features else "no_drift"

    @property
    def drifted_features(self) -> list[str]:
        """Names of the features that drifted."""
        return [f.feature for f in self.features if f.drifted]

    @property
    def drifted(self) -> bool:
        """Whether the verdict is ``drift``."""
        return self.verdict == "drift"

    @property
    def min_p_value_adjusted(self) -> float | None:
        """The smallest adjusted p-value (None when nothing was tested)."""
        values = [f.p_value_adjusted for f in self.features if f.p_value_adjusted is not None]
        return min(values) if values else None

    @property
    def max_psi(self) -> float:
        """The largest PSI over all features."""
        return max((f.psi for f in self.features), default=0.0)

    @property
    def mean_psi(self) -> float:
        """The mean PSI over all features."""
        return float(np.mean([f.psi for f in self.features])) if self.features else 0.0


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """Population stability index ``sum((a - e) * ln(a / e))``, empty bins floored at 1e-4."""
    exp = np.clip(np.asarray(expected, dtype="float64"), PSI_EPSILON, None)
    act = np.clip(np.asarray(actual, dtype="float64"), PSI_EPSILON, None)
    return float(np.sum((act - exp) * np.log(act / exp)))


class _Tested(BaseModel):
    """A feature's test before the adjustment."""

    test: TestName
    statistic: float
    p_value: float


def _numeric_test(values: np.ndarray, sample: np.ndarray) -> _Tested:
    result = stats.ks_2samp(values, sample)
    return _Tested(test="ks", statistic=float(result.statistic), p_value=float(result.pvalue))


def _categorical_test(table: np.ndarray, binary: bool, seed: int) -> _Tested:
    """Reference and window counts (a ``(2, k)`` table of non-empty categories) → the test."""
    if table.shape[1] < 2:  # one category seen in both: nothing can differ
        return _Tested(test="z" if binary else "chi2", statistic=0.0, p_value=1.0)
    expected = stats.contingency.expected_freq(table)
    sparse = bool((expected < MIN_EXPECTED).any())
    if table.shape[1] == 2:
        if sparse:
            fisher = stats.fisher_exact(table)
            return _Tested(
                test="fisher", statistic=float(fisher.statistic), p_value=float(fisher.pvalue)
            )
        z_stat, p_value = proportions_ztest(table[:, 0], table.sum(axis=1))
        return _Tested(test="z", statistic=float(z_stat), p_value=float(p_value))
    if sparse:
        method = stats.MonteCarloMethod(
            n_resamples=MONTE_CARLO_TABLES, rng=np.random.default_rng(seed)
        )
        result = stats.chi2_contingency(table, correction=False, method=method)
        return _Tested(
            test="chi2_monte_carlo",
            statistic=float(result.statistic),
            p_value=float(result.pvalue),
        )
    result = stats.chi2_contingency(table, correction=False)
    return _Tested(test="chi2", statistic=float(result.statistic), p_value=float(result.pvalue))


def _numeric(
    ref: NumericReference, values: pd.Series, min_rows: int
) -> tuple[int, float, float, _Tested | None]:
    arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
    arr = arr[np.isfinite(arr)]
    sample = np.asarray(ref.sample, dtype="float64")
    score = psi(ref.frequencies, bin_frequencies(arr, ref.bins))
    if not arr.size:
        return 0, score, 0.0, None
    distance = float(stats.wasserstein_distance(arr, sample)) / (ref.std or 1.0)
    tested = _numeric_test(arr, sample) if arr.size >= min_rows else None
    return int(arr.size), score, distance, tested


def _categorical(
    ref: CategoricalReference, values: pd.Series, min_rows: int, seed: int
) -> tuple[int, float, float, _Tested | None]:
    counts = values.dropna().astype(str).value_counts()
    rows = int(counts.sum())
    live = category_frequencies(values)
    categories = sorted(set(ref.frequencies) | set(live))
    expected = [ref.frequencies.get(c, 0.0) for c in categories]
    actual = [live.get(c, 0.0) for c in categories]
    score = psi(expected, actual)
    if not rows:
        return 0, score, 0.0, None
    distance = float(jensenshannon(expected, actual))
    if rows < min_rows:
        return rows, score, distance, None
    table = np.array(
        [
            [round(ref.frequencies.get(c, 0.0) * ref.count) for c in categories],
            [int(counts.get(c, 0)) for c in categories],
        ],
        dtype=np.int64,
    )
    table = table[:, table.sum(axis=0) > 0]
    return rows, score, distance, _categorical_test(table, len(categories) <= 2, seed)


def compute_drift(
    reference: Reference,
    current: pd.DataFrame,
    alpha: float = ALPHA,
    min_rows: int = MIN_ROWS,
    seed: int = 0,
) -> DriftReport:
    """Compare ``current`` raw features (not modified) with the training ``reference``.

    The method (tests by feature kind and size, Holm's adjustment, the large-window distance rule,
    the minimum window) is described in the module docstring.

    Args:
        reference: the champion's ``reference.json`` document.
        current: recent rows with the raw feature columns (missing columns are skipped).
        alpha: family-wise false-alarm rate of the report.
        min_rows: fewest rows (per feature, non-missing) that get a test.
        seed: seed of the Monte Carlo p-values (the same data always gives the same report).

    Returns:
        The :class:`DriftReport` (features in reference order).

    Raises:
        ValueError: when ``current`` has no rows or ``alpha`` is not in (0, 1).
    """
    if current.empty:
        raise ValueError("no current rows to compare with the reference")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    measured: list[tuple[str, str, tuple[int, float, float, _Tested | None]]] = []
    for name, ref in reference.features.items():
        if name not in current.columns:
            continue
        if isinstance(ref, NumericReference):
            measured.append((name, "numeric", _numeric(ref, current[name], min_rows)))
        else:
            measured.append((name, "categorical", _categorical(ref, current[name], min_rows, seed)))
    tested = [m[2][3] for m in measured if m[2][3] is not None]
    adjusted = iter(multipletests([t.p_value for t in tested], method="holm")[1] if tested else [])
    large = len(current) > LARGE_WINDOW
    features: list[FeatureDrift] = []
    for name, kind, (rows, score, distance, test) in measured:
        if not math.isfinite(score):  # pragma: no cover - guarded by the epsilon floor
            raise ValueError(f"PSI of {name} is not finite")
        p_adjusted = float(next(adjusted)) if test is not None else None
        drifted = p_adjusted is not None and p_adjusted <= alpha
        if large:
            drifted = drifted and distance >= DISTANCE_THRESHOLD
        features.append(
            FeatureDrift(
                feature=name,
                kind=kind,
                rows=rows,
                test=test.test if test else None,
                statistic=test.statistic if test else None,
                p_value=test.p_value if test else None,
                p_value_adjusted=p_adjusted,
                distance=distance,
                psi=score,
                drifted=drifted,
            )
        )
    return DriftReport(
        reference_rows=reference.n_rows,
        current_rows=len(current),
        alpha=alpha,
        min_rows=min_rows,
        features=features,
    )


def feature_row(report: DriftReport, item: FeatureDrift) -> dict[str, object]:
    """The stored fields of one feature (Elasticsearch ``drift.*`` and the SQLite row alike).

    ``threshold`` is the level the adjusted p-values are compared with (``alpha``);
    ``ks_statistic``/``ks_pvalue`` repeat the KS test's figures under the names the first stored
    documents used (None for other tests).
    """
    is_ks = item.test == "ks"
    return {
        "feature": item.feature,
        "kind": item.kind,
        "rows": item.rows,
        "test": item.test,
        "statistic": item.statistic,
        "p_value": item.p_value,
        "p_value_adjusted": item.p_value_adjusted,
        "distance": item.distance,
        "psi": item.psi,
        "ks_statistic": item.statistic if is_ks else None,
        "ks_pvalue": item.p_value if is_ks else None,
        "drifted": item.drifted,
        "threshold": report.alpha,
        "verdict": report.verdict,
        "min_rows": report.min_rows,
    }


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
        row = feature_row(report, item)
        row["feature_kind"] = row.pop("kind")
        docs.append(
            {
                **common,
                "_id": f"{report.run_id}-{item.feature}",
                "drift": {
                    "run_id": report.run_id,
                    **row,
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
                "p_value_adjusted": report.min_p_value_adjusted,
                "drifted_features": len(report.drifted_features),
                "drifted": report.drifted,
                "threshold": report.alpha,
                "verdict": report.verdict,
                "min_rows": report.min_rows,
                "is_overall": True,
                "source": report.source,
            },
        }
    )
    return docs
