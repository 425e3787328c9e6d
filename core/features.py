"""Feature engineering: the first step of the one sklearn ``Pipeline`` used to train AND to serve.

Two stages, both exact and pandas-free after the first:

1. **Encoding** (:func:`encode_frame`, :func:`encode_records`): the 19 raw fields become one
   ``float64`` row in :data:`RAW_COLUMNS` order (= :data:`core.schema.FEATURE_NAMES`); each category
   is replaced by its index in the schema's allowed values (:data:`CATEGORY_CODES`, e.g. ``no`` → 0,
   ``yes`` → 1; unknown → NaN).
2. **Derivation** (:meth:`ChurnFeatures.transform_array`): plain numpy on that raw matrix (each
   minutes/charge pair reconciled into one usage, then column selection and sums), giving the
   model's input in the fixed order of ``feature_names_out_``.

``ChurnFeatures.transform`` accepts either a DataFrame with the raw columns (it encodes it first) or
an already encoded 2-D array, so a fast serving path can encode one record with
:func:`encode_records` and call ``transform_array`` + the model without any pandas overhead.

**Collinear minutes and charges.** In this data every charge is the minutes times a fixed tariff
(0.17 USD/min by day, 0.085 evening, 0.045 night, 0.27 international, rounded to the cent), so each
pair is one quantity measured twice. Given both, a tree model uses one of the two and gives the
other zero importance, and which one is arbitrary. The feature step therefore merges each pair into
one **usage** feature, ``total_{period}_usage`` in minutes: the mean of the minutes and the charge
divided by the period's tariff (the median charge per minute of the training rows, learnt in
``fit``), or whichever of the two is present when the other is missing. Both raw fields move the
model's input equally, and ``total_charge`` is the sum of the reconciled charges
(``tariff × usage``). ``usage=False`` keeps the charges alone instead (the pipeline before usage
features; models fitted then keep transforming as they did).

``state`` (51 levels, ~100 rows each) and ``area_code`` are left out by default: they carry no churn
signal here, and a model using them overfits (and fails the state-invariance test).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from core.schema import CATEGORICAL_FEATURES, FEATURE_NAMES, SPECS

RAW_COLUMNS: tuple[str, ...] = FEATURE_NAMES
CATEGORY_CODES: dict[str, dict[str, int]] = {
    name: {value: code for code, value in enumerate(SPECS[name].allowed)}
    for name in CATEGORICAL_FEATURES
}
PERIODS: tuple[str, ...] = ("day", "eve", "night", "intl")

# Raw columns always passed through (in this order), then the optional groups below.
BASE_COLUMNS: tuple[str, ...] = (
    "account_length",
    "international_plan",
    "voice_mail_plan",
    "number_vmail_messages",
    *(f"total_{period}_calls" for period in PERIODS),
    "number_customer_service_calls",
)
MINUTE_COLUMNS: tuple[str, ...] = tuple(f"total_{period}_minutes" for period in PERIODS)
CHARGE_COLUMNS: tuple[str, ...] = tuple(f"total_{period}_charge" for period in PERIODS)
CALL_COLUMNS: tuple[str, ...] = tuple(f"total_{period}_calls" for period in PERIODS)
USAGE_COLUMNS: tuple[str, ...] = tuple(f"total_{period}_usage" for period in PERIODS)

_INDEX: dict[str, int] = {name: i for i, name in enumerate(RAW_COLUMNS)}
_MINUTES = np.asarray([_INDEX[name] for name in MINUTE_COLUMNS], dtype=np.intp)
_CHARGES = np.asarray([_INDEX[name] for name in CHARGE_COLUMNS], dtype=np.intp)


class FeatureParams(BaseModel):
    """Which engineered features the pipeline computes (all flags; order of output is fixed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    usage: bool = Field(
        True,
        description="Merge each minutes/charge pair into one usage feature (minutes); "
        "off: the charges alone.",
    )
    total_charge: bool = Field(True, description="Add total_charge = sum of the four charges.")
    minutes: bool = Field(
        False, description="Also keep the per-period minutes (duplicate charges; needs usage off)."
    )
    usage_totals: bool = Field(False, description="Add total_minutes and total_calls.")
    state: bool = Field(False, description="Keep the state as its integer code (0-50).")
    area_code: bool = Field(False, description="Keep the area code as its integer code (0-2).")

    @model_validator(mode="after")
    def _minutes_need_charges(self) -> FeatureParams:
        if self.usage and self.minutes:
            raise ValueError("minutes=True duplicates the usage features: set usage=False too")
        return self


def encode_frame(frame: pd.DataFrame) -> np.ndarray:
    """Encode a validated raw table into the ``float64`` matrix of :data:`RAW_COLUMNS`.

    Args:
        frame: table with (at least) the 19 canonical raw columns; other columns are ignored.

    Returns:
        A new ``(n, 19)`` array; categories are their :data:`CATEGORY_CODES`, unknown → NaN.
    """
    out = np.empty((len(frame), len(RAW_COLUMNS)), dtype=np.float64)
    for j, name in enumerate(RAW_COLUMNS):
        column = frame[name]
        if name in CATEGORY_CODES:
            codes = column.map(CATEGORY_CODES[name])
            out[:, j] = pd.to_numeric(codes, errors="coerce").to_numpy(dtype=np.float64)
        else:
            out[:, j] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    return out


def encode_records(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Encode validated records (dicts of the 19 canonical fields) without pandas.

    Args:
        records: e.g. ``Customer.model_dump()`` outputs.

    Returns:
        A new ``(n, 19)`` ``float64`` array, identical to :func:`encode_frame` on the same rows.
    """
    out = np.empty((len(records), len(RAW_COLUMNS)), dtype=np.float64)
    for i, record in enumerate(records):
        out[i] = [
            (
                CATEGORY_CODES[name].get(record[name], np.nan)
                if name in CATEGORY_CODES
                else float(record[name])
            )
            for name in RAW_COLUMNS
        ]
    return out


def feature_plan(params: FeatureParams) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The output columns: each is a name and the column indices summed to produce it.

    Indices point into the raw matrix after :func:`reconcile_usage` when ``params.usage`` (each
    minutes column then holds the period's usage, each charge column ``tariff × usage``), into the
    raw matrix itself otherwise. A single index is a pass-through; several indices are a total.
    Pass-throughs always come first (base columns, then usage or charges, minutes, state, area
    code), totals last, so the derivation is one column gather plus one sum per total.

    Args:
        params: the feature flags.

    Returns:
        ``((name, (index, ...)), ...)`` in output order.
    """
    plan: list[tuple[str, tuple[int, ...]]] = [(name, (_INDEX[name],)) for name in BASE_COLUMNS]
    if params.usage:
        plan += [
            (usage, (_INDEX[minutes],)) for usage, minutes in zip(USAGE_COLUMNS, MINUTE_COLUMNS)
        ]
    else:
        plan += [(name, (_INDEX[name],)) for name in CHARGE_COLUMNS]
    if params.minutes:
        plan += [(name, (_INDEX[name],)) for name in MINUTE_COLUMNS]
    if params.state:
        plan.append(("state", (_INDEX["state"],)))
    if params.area_code:
        plan.append(("area_code", (_INDEX["area_code"],)))
    if params.total_charge:
        plan.append(("total_charge", tuple(_INDEX[name] for name in CHARGE_COLUMNS)))
    if params.usage_totals:
        plan.append(("total_minutes", tuple(_INDEX[name] for name in MINUTE_COLUMNS)))
        plan.append(("total_calls", tuple(_INDEX[name] for name in CALL_COLUMNS)))
    return tuple(plan)


def fit_tariffs(raw: np.ndarray) -> np.ndarray:
    """Each period's tariff: the median charge per minute of the rows with minutes > 0.

    Args:
        raw: encoded training rows (``(n, 19)``, :data:`RAW_COLUMNS` order).

    Returns:
        The four tariffs in :data:`PERIODS` order (USD per minute).

    Raises:
        ValueError: when a period has no row with both values and minutes > 0.
    """
    minutes, charges = raw[:, _MINUTES], raw[:, _CHARGES]
    tariffs = np.empty(len(PERIODS), dtype=np.float64)
    for j, period in enumerate(PERIODS):
        usable = np.isfinite(minutes[:, j]) & np.isfinite(charges[:, j]) & (minutes[:, j] > 0)
        if not usable.any():
            raise ValueError(f"cannot fit the {period} tariff: no row with {period} minutes > 0")
        tariffs[j] = float(np.median(charges[usable, j] / minutes[usable, j]))
    return tariffs


def reconcile_usage(raw: np.ndarray, tariffs: np.ndarray) -> np.ndarray:
    """Merge each minutes/charge pair into one usage value (see the module docstring).

    Args:
        raw: encoded rows (``(n, 19)``, not modified).
        tariffs: the four fitted tariffs of :func:`fit_tariffs`.

    Returns:
        A new matrix where each minutes column holds the period's usage (the mean of the minutes
        and ``charge / tariff``, or the one present when the other is missing) and each charge
        column ``tariff × usage``.
    """
    out = np.array(raw, dtype=np.float64)
    minutes = out[:, _MINUTES]
    from_charge = out[:, _CHARGES] / tariffs
    usage = np.where(
        np.isnan(minutes),
        from_charge,
        np.where(np.isnan(from_charge), minutes, 0.5 * (minutes + from_charge)),
    )
    out[:, _MINUTES] = usage
    out[:, _CHARGES] = usage * tariffs
    return out


class ChurnFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Raw 19 columns → the model's numeric ``float64`` matrix (see the module docstring).

    The constructor arguments mirror :class:`FeatureParams` (plain bools, so sklearn's
    ``get_params``/``clone`` and skops persistence work without custom types). ``fit`` learns the
    four tariffs (``tariffs_``) when ``usage`` is on, nothing otherwise.
    """

    # Objects saved before the usage features existed have no ``usage`` attribute: they were
    # charges-only (and have no ``tariffs_``), which this class-level value says.
    usage = False

    def __init__(
        self,
        usage: bool = True,
        total_charge: bool = True,
        minutes: bool = False,
        usage_totals: bool = False,
        state: bool = False,
        area_code: bool = False,
    ) -> None:
        self.usage = usage
        self.total_charge = total_charge
        self.minutes = minutes
        self.usage_totals = usage_totals
        self.state = state
        self.area_code = area_code

    def params(self) -> FeatureParams:
        """The constructor arguments as a :class:`FeatureParams`."""
        return FeatureParams(
            usage=self.usage,
            total_charge=self.total_charge,
            minutes=self.minutes,
            usage_totals=self.usage_totals,
            state=self.state,
            area_code=self.area_code,
        )

    def fit(self, x: pd.DataFrame | np.ndarray, y: Any = None) -> ChurnFeatures:
        """Fix the output plan and, with ``usage``, learn the four tariffs from ``x``.

        Args:
            x: raw table or encoded array.
            y: ignored.

        Returns:
            ``self``.

        Raises:
            ValueError: on a wrong width, or (``usage``) a period without minutes > 0.
        """
        del y
        # sklearn convention: fitted attributes (trailing underscore) are set in fit, not __init__.
        # pylint: disable=attribute-defined-outside-init
        self._check_width(x)
        params = self.params()
        plan = feature_plan(params)
        if params.usage:
            raw = encode_frame(x) if isinstance(x, pd.DataFrame) else np.asarray(x, np.float64)
            self.tariffs_ = fit_tariffs(raw)
        elif hasattr(self, "tariffs_"):  # refitted without usage
            del self.tariffs_
        self.n_features_in_ = len(RAW_COLUMNS)
        self.feature_names_in_ = np.asarray(RAW_COLUMNS, dtype=object)
        self.feature_names_out_ = np.asarray([name for name, _ in plan], dtype=object)
        self.passthrough_ = np.asarray([idx[0] for _, idx in plan if len(idx) == 1], dtype=np.intp)
        self.totals_ = [np.asarray(idx, dtype=np.intp) for _, idx in plan if len(idx) > 1]
        return self

    def transform(self, x: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Raw table (or encoded ``(n, 19)`` array) → model input matrix.

        Args:
            x: a DataFrame with the canonical raw columns, or the output of :func:`encode_frame`.

        Returns:
            A new ``(n, len(feature_names_out_))`` ``float64`` array.
        """
        check_is_fitted(self, "feature_names_out_")
        self._check_width(x)
        raw = encode_frame(x) if isinstance(x, pd.DataFrame) else np.asarray(x, dtype=np.float64)
        return self.transform_array(raw)

    def transform_array(self, raw: np.ndarray) -> np.ndarray:
        """The derivation on an encoded ``(n, 19)`` ``float64`` array (pure numpy, no checks).

        Args:
            raw: encoded raw values in :data:`RAW_COLUMNS` order (not modified).

        Returns:
            A new ``float64`` array in ``feature_names_out_`` order.
        """
        tariffs = getattr(self, "tariffs_", None)
        data = raw if tariffs is None else reconcile_usage(raw, tariffs)
        gathered = data[:, self.passthrough_]
        if not self.totals_:
            return gathered
        totals = [data[:, idx].sum(axis=1)[:, None] for idx in self.totals_]
        return np.concatenate([gathered, *totals], axis=1)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns, in order (sklearn's feature-names protocol)."""
        del input_features
        check_is_fitted(self, "feature_names_out_")
        return np.asarray(self.feature_names_out_, dtype=object)

    @staticmethod
    def _check_width(x: pd.DataFrame | np.ndarray) -> None:
        if isinstance(x, pd.DataFrame):
            missing = [name for name in RAW_COLUMNS if name not in x.columns]
            if missing:
                raise ValueError(f"missing raw column(s): {', '.join(missing)}")
        elif np.ndim(x) != 2 or np.shape(x)[1] != len(RAW_COLUMNS):
            raise ValueError(
                f"expected an encoded (n, {len(RAW_COLUMNS)}) array, got shape {np.shape(x)}"
            )


def build_features(params: FeatureParams | None = None) -> ChurnFeatures:
    """The feature step of the pipeline.

    Args:
        params: which engineered features to compute (default: :class:`FeatureParams`).

    Returns:
        An unfitted :class:`ChurnFeatures`.
    """
    params = params or FeatureParams()
    return ChurnFeatures(**params.model_dump())
