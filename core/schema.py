"""The single definition of the 19 raw customer features and the churn target.

Everything else is derived from :data:`FEATURES`: the pydantic :class:`Customer` model (API
requests, Streamlit form), the vectorised DataFrame validator (training data, batch uploads,
drift), and the normaliser that accepts the BigML CSV spelling course projects use
(``Account length``, ``Area code`` as ``415``, ``International plan`` ``Yes``/``No``, ``Churn``
``True``/``False``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

FeatureKind = Literal["category", "integer", "number"]

US_STATES: tuple[str, ...] = (
    "AK", "AL", "AR", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA", "HI", "IA", "ID", "IL", "IN",
    "KS", "KY", "LA", "MA", "MD", "ME", "MI", "MN", "MO", "MS", "MT", "NC", "ND", "NE", "NH", "NJ",
    "NM", "NV", "NY", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VA", "VT", "WA",
    "WI", "WV", "WY",
)  # fmt: skip
AREA_CODES: tuple[str, ...] = ("area_code_408", "area_code_415", "area_code_510")
YES_NO: tuple[str, ...] = ("no", "yes")

TARGET = "churn"
POSITIVE_LABEL = "yes"


@dataclass(frozen=True)
class FeatureSpec:
    """One raw feature: its type, unit, allowed values or range, meaning and examples.

    Attributes:
        name: canonical column name (the R ``modeldata::mlc_churn`` spelling).
        kind: ``category``, ``integer`` or ``number``.
        description: what the value means, for docs, forms and error messages.
        unit: unit of measure (empty for categories).
        allowed: allowed values of a category.
        minimum: smallest allowed value of a numeric feature.
        maximum: largest allowed value of a numeric feature.
        churner: value in the documented example of a customer who churns.
        loyal: value in the documented example of a customer who stays.
        bigml: column name in the BigML ``churn-bigml`` CSV.
    """

    name: str
    kind: FeatureKind
    description: str
    churner: str | int | float
    loyal: str | int | float
    bigml: str
    unit: str = ""
    allowed: tuple[str, ...] = field(default_factory=tuple)
    minimum: float | None = None
    maximum: float | None = None

    @property
    def is_numeric(self) -> bool:
        """Whether the feature is an integer or a real number."""
        return self.kind != "category"


def _usage(
    period: str, label: str, churner: tuple[float, int, float], loyal: tuple[float, int, float]
) -> list[FeatureSpec]:
    """Minutes, calls and charge of one calling period (day, evening, night, international)."""
    bigml = f"Total {period}"
    return [
        FeatureSpec(
            f"total_{period}_minutes",
            "number",
            f"Total {label} minutes in the billing period.",
            churner[0],
            loyal[0],
            f"{bigml} minutes",
            "minutes",
            minimum=0,
            maximum=1000,
        ),
        FeatureSpec(
            f"total_{period}_calls",
            "integer",
            f"Number of {label} calls in the billing period.",
            churner[1],
            loyal[1],
            f"{bigml} calls",
            "calls",
            minimum=0,
            maximum=500,
        ),
        FeatureSpec(
            f"total_{period}_charge",
            "number",
            f"Total charge for {label} calls in the billing period.",
            churner[2],
            loyal[2],
            f"{bigml} charge",
            "USD",
            minimum=0,
            maximum=200,
        ),
    ]


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("state", "category", "US state of the customer's address (two-letter code).",
                "NJ", "KS", "State", allowed=US_STATES),
    FeatureSpec("account_length", "integer", "How long the account has been active.",
                88, 128, "Account length", "days", minimum=0, maximum=400),
    FeatureSpec("area_code", "category", "Telephone area code of the customer.",
                "area_code_415", "area_code_415", "Area code", allowed=AREA_CODES),
    FeatureSpec("international_plan", "category", "Whether the customer has the intl plan.",
                "yes", "no", "International plan", allowed=YES_NO),
    FeatureSpec("voice_mail_plan", "category", "Whether the customer has the voice-mail plan.",
                "no", "yes", "Voice mail plan", allowed=YES_NO),
    FeatureSpec("number_vmail_messages", "integer", "Number of voice-mail messages.",
                0, 25, "Number vmail messages", "messages", minimum=0, maximum=100),
    *_usage("day", "daytime", (235.1, 98, 39.97), (265.1, 110, 45.07)),
    *_usage("eve", "evening", (251.8, 79, 21.4), (197.4, 99, 16.78)),
    *_usage("night", "night-time", (285.9, 76, 12.87), (244.7, 91, 11.01)),
    *_usage("intl", "international", (7.2, 2, 1.94), (10.0, 3, 2.7)),
    FeatureSpec("number_customer_service_calls", "integer", "Calls made to customer service.",
                4, 1, "Customer service calls", "calls", minimum=0, maximum=30),
)  # fmt: skip

FEATURE_NAMES: tuple[str, ...] = tuple(spec.name for spec in FEATURES)
NUMERIC_FEATURES: tuple[str, ...] = tuple(s.name for s in FEATURES if s.is_numeric)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(s.name for s in FEATURES if not s.is_numeric)
SPECS: dict[str, FeatureSpec] = {spec.name: spec for spec in FEATURES}

# Both examples are real rows of data/raw/churn.csv: the churner is a holdout row labelled "yes"
# (international plan, only 2 international calls, heavy usage, 4 service calls; its state MD shown
# as NJ, state carries no signal), the loyal one is the first row, labelled "no".
EXAMPLE_CHURNER: dict[str, Any] = {spec.name: spec.churner for spec in FEATURES}
EXAMPLE_LOYAL: dict[str, Any] = {spec.name: spec.loyal for spec in FEATURES}


# ---------------------------------------------------------------------------------------------
# Normalisation of the spellings found in the wild
# ---------------------------------------------------------------------------------------------
def _key(column: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", column.strip().lower()).strip("_")


COLUMN_ALIASES: dict[str, str] = {
    **{_key(spec.bigml): spec.name for spec in FEATURES},
    **{_key(spec.name): spec.name for spec in FEATURES},
    "churn": TARGET,
}
_TRUTHY = {"yes", "true", "true.", "1", "y", "t"}
_FALSY = {"no", "false", "false.", "0", "n", "f"}


def normalise_yes_no(value: Any) -> Any:
    """Map ``Yes``/``True``/``1`` to ``yes`` and ``No``/``False``/``0`` to ``no``; keep the rest."""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    text = str(value).strip().lower()
    if text in _TRUTHY:
        return "yes"
    if text in _FALSY:
        return "no"
    return value


def normalise_area_code(value: Any) -> Any:
    """Map ``415``/``"415"``/``415.0`` to ``area_code_415``; keep the rest."""
    if isinstance(value, (bool, np.bool_)):
        return value
    text = str(value).strip()
    if re.fullmatch(r"\d{3}(\.0+)?", text):
        return f"area_code_{text[:3]}"
    return text


def _map_unique(column: pd.Series, normalise: Callable[[Any], Any]) -> pd.Series:
    """Apply ``normalise`` to each distinct value once (not once per row); missing values stay."""
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    if len(uniques) == 0:
        return column.copy()
    mapped = np.array([normalise(value) for value in uniques], dtype=object)
    values = np.where(codes >= 0, mapped[codes], column.to_numpy(dtype=object))
    return pd.Series(values, index=column.index, name=column.name, dtype=object)


def _normalise_state(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def normalise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with canonical column names and category spellings.

    Accepts the modeldata spelling unchanged and the BigML spelling (``Account length``,
    ``Area code`` as ``415``, ``Yes``/``No`` plans, ``Churn`` ``True``/``False``). Columns it does
    not know are kept as they are so the validator can report them.

    Args:
        frame: a raw table as read from a CSV.

    Returns:
        A new DataFrame; the input is not modified.
    """
    renamed = frame.rename(columns=lambda c: COLUMN_ALIASES.get(_key(str(c)), c))
    out = renamed.copy()
    for name in ("international_plan", "voice_mail_plan", TARGET):
        if name in out.columns:
            out[name] = _map_unique(out[name], normalise_yes_no)
    if "area_code" in out.columns:
        out["area_code"] = _map_unique(out["area_code"], normalise_area_code)
    if "state" in out.columns:
        out["state"] = _map_unique(out["state"], _normalise_state)
    return out


# ---------------------------------------------------------------------------------------------
# Pydantic model of one customer
# ---------------------------------------------------------------------------------------------
def _field(spec: FeatureSpec) -> tuple[Any, Any]:
    unit = f" Unit: {spec.unit}." if spec.unit else ""
    if spec.kind == "category":
        allowed = ", ".join(spec.allowed)
        annotation: Any = Literal[spec.allowed]
        desc = f"{spec.description} Allowed: {allowed}."
        return annotation, Field(description=desc, examples=[spec.churner, spec.loyal])
    annotation = int if spec.kind == "integer" else float
    desc = f"{spec.description}{unit} Range: {spec.minimum:g} to {spec.maximum:g}."
    return annotation, Field(
        description=desc,
        ge=spec.minimum,
        le=spec.maximum,
        examples=[spec.churner, spec.loyal],
        json_schema_extra={"unit": spec.unit},
    )


class _CustomerBase(BaseModel):
    """Common configuration: unknown fields and NaN/Infinity are rejected."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        frozen=True,
        json_schema_extra={"examples": [EXAMPLE_CHURNER, EXAMPLE_LOYAL]},
    )

    @field_validator("international_plan", "voice_mail_plan", mode="before", check_fields=False)
    @classmethod
    def _yes_no(cls, value: Any) -> Any:
        return normalise_yes_no(value) if isinstance(value, (str, bool)) else value

    @field_validator("area_code", mode="before", check_fields=False)
    @classmethod
    def _area(cls, value: Any) -> Any:
        return normalise_area_code(value) if isinstance(value, (str, int)) else value

    @field_validator("state", mode="before", check_fields=False)
    @classmethod
    def _state(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


Customer: type[_CustomerBase] = create_model(  # type: ignore[call-overload]
    "Customer",
    __base__=_CustomerBase,
    __doc__="One telecom customer: the 19 raw features the churn model scores.",
    **{spec.name: _field(spec) for spec in FEATURES},
)


# ---------------------------------------------------------------------------------------------
# Vectorised DataFrame validation
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Issue:
    """One problem found in a table: the row (``None`` for the whole column), column and reason."""

    row: int | None
    column: str
    reason: str

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row is not None else "all rows"
        return f"{self.column} ({where}): {self.reason}"


@dataclass(frozen=True)
class ValidationReport:
    """The result of :func:`validate_frame`.

    Attributes:
        frame: the normalised table with typed columns (invalid cells as NaN / None).
        issues: every problem found, row by row.
        valid_rows: boolean mask of rows without any issue.
    """

    frame: pd.DataFrame
    issues: tuple[Issue, ...]
    valid_rows: np.ndarray

    @property
    def ok(self) -> bool:
        """True when there is no issue at all."""
        return not self.issues

    def summary(self, limit: int = 20) -> str:
        """A human-readable list of the first ``limit`` issues."""
        lines = [str(issue) for issue in self.issues[:limit]]
        if len(self.issues) > limit:
            lines.append(f"... and {len(self.issues) - limit} more")
        return "\n".join(lines)


class SchemaError(ValueError):
    """Raised when a table does not satisfy the schema; carries the full report."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(f"{len(report.issues)} schema issue(s):\n{report.summary()}")
        self.report = report


def _check_numeric(spec: FeatureSpec, raw: pd.Series) -> tuple[pd.Series, list[Issue]]:
    values = pd.to_numeric(raw, errors="coerce").astype("float64")
    issues: list[Issue] = []
    finite = np.isfinite(values.to_numpy())
    missing = raw.isna().to_numpy()
    for row in np.flatnonzero(missing):
        issues.append(Issue(int(row), spec.name, "missing value"))
    for row in np.flatnonzero(~finite & ~missing):
        issues.append(Issue(int(row), spec.name, f"not a number: {raw.iloc[row]!r}"))
    arr = values.to_numpy()
    with np.errstate(invalid="ignore"):
        low = finite & (arr < (-np.inf if spec.minimum is None else spec.minimum))
        high = finite & (arr > (np.inf if spec.maximum is None else spec.maximum))
        fractional = finite & (arr != np.round(arr)) if spec.kind == "integer" else finite & False
    for row in np.flatnonzero(low | high):
        issues.append(
            Issue(int(row), spec.name, f"{arr[row]:g} outside [{spec.minimum:g}, {spec.maximum:g}]")
        )
    for row in np.flatnonzero(fractional):
        issues.append(Issue(int(row), spec.name, f"{arr[row]:g} is not an integer"))
    bad = ~finite | low | high | fractional
    return values.where(~bad), issues


def _check_category(spec: FeatureSpec, raw: pd.Series) -> tuple[pd.Series, list[Issue]]:
    allowed = set(spec.allowed)
    known = raw.isin(allowed).to_numpy()
    missing = raw.isna().to_numpy()
    issues = [Issue(int(row), spec.name, "missing value") for row in np.flatnonzero(missing)]
    shown = ", ".join(spec.allowed) if len(spec.allowed) <= 5 else "a two-letter US state code"
    issues += [
        Issue(int(row), spec.name, f"unknown value {raw.iloc[row]!r}; expected {shown}")
        for row in np.flatnonzero(~known & ~missing)
    ]
    return raw.where(known).astype("object"), issues


def validate_frame(
    frame: pd.DataFrame, *, require_target: bool = False, allow_extra: bool = True
) -> ValidationReport:
    """Normalise and check a table against the schema, reporting every bad row and column.

    Args:
        frame: raw table (modeldata or BigML spelling).
        require_target: whether the ``churn`` column must be present (training data).
        allow_extra: whether unknown columns are tolerated (they are dropped from the result).

    Returns:
        A :class:`ValidationReport` with the typed frame, the issues and the mask of valid rows.
    """
    data = normalise_frame(frame).reset_index(drop=True)
    issues: list[Issue] = []
    if data.empty:
        issues.append(Issue(None, "*", "the table has no rows"))
    expected = list(FEATURE_NAMES) + ([TARGET] if require_target else [])
    for name in expected:
        if name not in data.columns:
            issues.append(Issue(None, name, "missing column"))
    keep = [c for c in expected if c in data.columns] + (
        [TARGET] if TARGET in data.columns and not require_target else []
    )
    extra = [c for c in data.columns if c not in keep]
    if extra and not allow_extra:
        issues += [Issue(None, str(c), "unknown column") for c in extra]
    out = pd.DataFrame(index=data.index)
    bad = np.zeros(len(data), dtype=bool)
    for name in keep:
        spec = SPECS.get(name)
        if spec is None:  # the target
            spec = FeatureSpec(TARGET, "category", "Whether the customer churned.", "yes", "no",
                               "Churn", allowed=YES_NO)  # fmt: skip
        checker = _check_numeric if spec.is_numeric else _check_category
        column, found = checker(spec, data[name])
        out[name] = column
        issues += found
        for issue in found:
            if issue.row is not None:
                bad[issue.row] = True
    column_level = any(i.row is None for i in issues)
    valid = np.zeros(len(data), dtype=bool) if column_level else ~bad
    issues.sort(key=lambda i: (-1 if i.row is None else i.row, i.column))
    return ValidationReport(out, tuple(issues), valid)


def check_frame(frame: pd.DataFrame, *, require_target: bool = False) -> pd.DataFrame:
    """Validate a table and return its typed, normalised copy.

    Raises:
        SchemaError: listing every issue when the table is not valid.
    """
    report = validate_frame(frame, require_target=require_target)
    if not report.ok:
        raise SchemaError(report)
    return report.frame
