"""The monitor checked by simulation (``make bench-drift``): drift alarms and CBPE's error.

**Drift**: how often the monitor cries wolf, and how often it sees a real shift. Both rates are
measured on the bundled table with :func:`core.monitoring.drift.compute_drift`, exactly as
``make drift`` runs it:

* **Windows and references** (a documented resampling): for window ``i``, the table is split as
  training splits it (:func:`core.data.split_dataset`, seed ``seed + i``), the reference is built
  from that split's training rows (:func:`core.reference.build_reference`, as a champion's is), and
  the window is ``n`` rows drawn without replacement from the 1,800 rows that split left out (its
  validation and holdout rows). Every window is thus in-distribution yet never overlaps its
  reference, and windows are independent of each other given the table, so the share of alarms is
  a binomial proportion (reported with its Wilson 95 % interval). A single fixed reference with
  windows drawn from one 1,800-row pool would make large windows near copies of each other (at
  n = 1,000 two windows share 55 % of their rows), so its rate would rest on one draw of the
  reference; :func:`fixed_reference_rate` measures that case too (the seed-42 champion's
  reference), as the conditional figure a user of that champion sees.
* **False-alarm rate**: the share of in-distribution windows whose report says ``drift``.
* **Power**: the share of shifted windows whose report says ``drift``, for the shifts of
  :data:`SHIFTS` applied to the window's rows.

**CBPE** (:func:`core.evaluate.estimate_performance`): :func:`cbpe_replay` replays labelled rows
(the holdout) in windows and compares the estimate made from the probabilities alone with the F1
realized once the labels are known.

``statsmodels``' Holm adjustment runs a full ``gc.collect()`` on every call (0.3-0.5 s in a process
holding pandas, scikit-learn and a model); the simulation freezes the objects that exist before it
starts (``gc.freeze``) so each collection only scans the loop's own objects, and unfreezes them
at the end.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from core.data import SplitParams, split_dataset
from core.evaluate import estimate_performance
from core.monitoring.drift import ALPHA, compute_drift
from core.reference import build_reference
from core.schema import FEATURE_NAMES, predicted_churn

#: Window sizes of the benchmark (rows).
SIZES: tuple[int, ...] = (50, 100, 200, 500, 1000)
#: States of the "new mix of states" shift: the five most populous US states.
CAMPAIGN_STATES: tuple[str, ...] = ("CA", "FL", "IL", "NY", "TX")

Shift = Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]


def day_minutes_up(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Day minutes +25 %; the day charge follows (charge = tariff × minutes, to the cent)."""
    del rng
    return frame.assign(
        total_day_minutes=frame["total_day_minutes"] * 1.25,
        total_day_charge=(frame["total_day_charge"] * 1.25).round(2),
    )


def service_calls_up(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Two more customer-service calls for everyone."""
    del rng
    return frame.assign(number_customer_service_calls=frame["number_customer_service_calls"] + 2)


def new_state_mix(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """A campaign in five states: half the rows, at random, move to :data:`CAMPAIGN_STATES`."""
    moved = rng.random(len(frame)) < 0.5
    states = frame["state"].to_numpy(dtype=object).copy()
    states[moved] = rng.choice(np.asarray(CAMPAIGN_STATES, dtype=object), size=int(moved.sum()))
    return frame.assign(state=states)


SHIFTS: dict[str, Shift] = {
    "day_minutes_+25%": day_minutes_up,
    "service_calls_+2": service_calls_up,
    "state_mix_5_states_half": new_state_mix,
}


class Rate(BaseModel):
    """The share of windows whose report says ``drift``, with its Wilson 95 % interval."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(description="Rows per window.")
    windows: int
    alarms: int
    rate: float
    low: float
    high: float


def rate(n: int, alarms: int, windows: int) -> Rate:
    """A :class:`Rate` from counts (Wilson score interval, ``scipy.stats.binomtest``)."""
    interval = stats.binomtest(alarms, windows).proportion_ci(0.95, method="wilson")
    return Rate(
        n=n,
        windows=windows,
        alarms=alarms,
        rate=alarms / windows,
        low=float(interval.low),
        high=float(interval.high),
    )


@contextmanager
def _frozen_gc() -> Iterator[None]:
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def alarm_rate(
    frame: pd.DataFrame,
    n: int,
    windows: int,
    shift: Shift | None = None,
    seed: int = 0,
    alpha: float = ALPHA,
) -> Rate:
    """The share of ``n``-row windows (each against its own resampled reference) that alarm.

    Args:
        frame: the validated table (with ``churn``), e.g. the bundled data.
        n: rows per window (at most the rows a split leaves out of training).
        windows: how many windows.
        shift: applied to each window's rows (None: in-distribution, i.e. the false-alarm rate).
        seed: seed of the splits, the draws and the shifts.
        alpha: the report's family-wise false-alarm rate.

    Returns:
        The :class:`Rate`.
    """
    rng = np.random.default_rng(seed)
    alarms = 0
    with _frozen_gc():
        for i in range(windows):
            split = split_dataset(frame, SplitParams(seed=seed + i))
            reference = build_reference(split.train, seed=seed + i)
            unseen = pd.concat([split.valid, split.test])[list(FEATURE_NAMES)]
            window = unseen.iloc[rng.choice(len(unseen), size=n, replace=False)]
            if shift is not None:
                window = shift(window, rng)
            alarms += compute_drift(reference, window, alpha=alpha, seed=i).drifted
    return rate(n, alarms, windows)


def fixed_reference_rate(
    frame: pd.DataFrame, n: int, windows: int, seed: int = 0, alpha: float = ALPHA
) -> Rate:
    """False-alarm rate against one reference: the default split's training rows (the champion's).

    Windows are ``n`` rows drawn without replacement from the rows that split left out; they
    overlap more as ``n`` grows, so this rate is conditional on that one reference.
    """
    split = split_dataset(frame, SplitParams())
    reference = build_reference(split.train)
    unseen = pd.concat([split.valid, split.test])[list(FEATURE_NAMES)]
    rng = np.random.default_rng(seed)
    alarms = 0
    with _frozen_gc():
        for i in range(windows):
            window = unseen.iloc[rng.choice(len(unseen), size=n, replace=False)]
            alarms += compute_drift(reference, window, alpha=alpha, seed=i).drifted
    return rate(n, alarms, windows)


class CbpeReplay(BaseModel):
    """CBPE's F1 estimate against the realized F1 over replayed windows of one size."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(description="Rows per window.")
    windows: int
    mae: float = Field(description="Mean absolute error of the estimated F1.")
    bias: float = Field(description="Mean of estimated minus realized F1.")
    coverage: float = Field(description="Share of windows whose realized F1 is in the interval.")
    realized_sd: float = Field(description="Standard deviation of the realized F1.")


def cbpe_replay(
    probabilities: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    n: int,
    windows: int,
    seed: int = 0,
) -> CbpeReplay:
    """Replay labelled rows in ``windows`` random ``n``-row windows (without replacement).

    Each window's F1 is estimated from its probabilities alone
    (:func:`core.evaluate.estimate_performance`), then compared with the F1 of its labels.
    Windows whose realized F1 is undefined (no churner and no churn label) are skipped.

    Args:
        probabilities: churn probabilities of the labelled rows (e.g. the holdout).
        labels: their 0/1 labels.
        threshold: the model's decision threshold.
        n: rows per window.
        windows: how many windows.
        seed: seed of the draws.

    Returns:
        The :class:`CbpeReplay`.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    rng = np.random.default_rng(seed)
    errors, realized, covered = [], [], []
    for i in range(windows):
        rows = rng.choice(p.size, size=n, replace=False)
        churn = predicted_churn(p[rows], threshold)
        tp = int((churn & y[rows]).sum())
        wrong = int((churn ^ y[rows]).sum())
        if 2 * tp + wrong == 0:
            continue
        f1 = 2 * tp / (2 * tp + wrong)
        estimate = estimate_performance(p[rows], threshold, seed=i).f1
        if estimate.value is None or estimate.low is None or estimate.high is None:
            continue
        errors.append(estimate.value - f1)
        realized.append(f1)
        covered.append(estimate.low <= f1 <= estimate.high)
    error = np.asarray(errors)
    return CbpeReplay(
        n=n,
        windows=len(errors),
        mae=float(np.abs(error).mean()),
        bias=float(error.mean()),
        coverage=float(np.mean(covered)),
        realized_sd=float(np.std(realized)),
    )
