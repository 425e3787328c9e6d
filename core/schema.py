"""The single definition of the 19 raw customer features and the churn target.

Everything else is derived from :data:`FEATURES`: the pydantic :class:`Customer` model (API
requests, Streamlit form), the vectorised DataFrame validator (training data, batch uploads,
drift), and the normaliser that accepts the BigML CSV spelling course projects use
(``Account length``, ``Area code`` as ``415``, ``International plan`` ``Yes``/``No``, ``Churn``
``True``/``False``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

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
NEGATIVE_LABEL = "no"


def predicted_churn(probability: Any, threshold: float | np.ndarray) -> Any:
    """The decision rule, the only one: churn when the probability reaches the threshold (the
    served label, the metrics, the performance estimate; light, so the UI can use it too).

    Args:
        probability: one churn probability, or an array of them.
        threshold: the model's decision threshold (:func:`core.evaluate.choose_threshold`), or
            one per probability.

    Returns:
        A bool (array of bools, same shape) saying churn.
    """
    return probability >= threshold


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
_FEATURE_SET: frozenset[str] = frozenset(FEATURE_NAMES)

# Both examples are real rows of data/raw/churn.csv: the churner is a holdout row labelled "yes"
# (international plan, only 2 international calls, heavy usage, 4 service calls; its state MD shown
# as NJ, state carries no signal), the loyal one is the first row, labelled "no".
EXAMPLE_CHURNER: dict[str, Any] = {spec.name: spec.churner for spec in FEATURES}
EXAMPLE_LOYAL: dict[str, Any] = {spec.name: spec.loyal for spec in FEATURES}


# ---------------------------------------------------------------------------------------------
# Normalisation of the spellings found in the wild: ONE normaliser of field names and values,
# used for tables (normalise_frame) and for single records (the Customer model) alike.
# ---------------------------------------------------------------------------------------------
def _key(column: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", column.strip().lower()).strip("_")


COLUMN_ALIASES: dict[str, str] = {
    **{_key(spec.bigml): spec.name for spec in FEATURES},
    **{_key(spec.name): spec.name for spec in FEATURES},
    "churn": TARGET,
}
KNOWN_FIELDS: frozenset[str] = frozenset((*FEATURE_NAMES, TARGET))
# What people type for yes/no (English, French, Excel's and pandas' booleans, BigML's "True.").
_TRUTHY = frozenset({"yes", "y", "true", "true.", "t", "1", "1.0", "vrai", "oui"})
_FALSY = frozenset({"no", "n", "false", "false.", "f", "0", "0.0", "faux", "non"})


def _any_case(word: str) -> str:
    """``word`` as an ECMA-262 pattern matching it in any case (JSON Schema has no ``(?i)``)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in word)


#: A yes/no input as :func:`normalise_yes_no` accepts it, as a JSON schema (a request body's
#: documentation): these spellings in any case and with surrounding spaces, JSON booleans, 1/0.
YES_NO_INPUT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {
            "type": "string",
            "pattern": rf"^\s*({'|'.join(_any_case(w) for w in sorted(_TRUTHY | _FALSY))})\s*$",
            "examples": sorted(_TRUTHY | _FALSY),
        },
        {"type": "boolean"},
        {"type": "integer", "enum": [0, 1]},
    ]
}
_AREA_CODE = re.compile(r"(?:area[ _-]?code[ _-]?)?(\d{3})(?:\.0+)?", re.IGNORECASE)


def canonical_column(column: object) -> str | None:
    """The schema field a column name stands for, in any case and spacing, or ``None``.

    ``Account length``, ``account_length``, ``ACCOUNT LENGTH`` and ``account-length`` all give
    ``account_length``; ``Churn``/``churn`` give the target; anything else gives ``None``.
    """
    return COLUMN_ALIASES.get(_key(str(column)))


class DuplicateColumnsError(ValueError):
    """Two or more columns (or keys) spell the same field, e.g. ``Churn`` and ``churn``.

    Attributes:
        fields: canonical field name → the given names that all stand for it, in input order.
    """

    def __init__(self, fields: dict[str, tuple[str, ...]]) -> None:
        self.fields = fields
        parts = [
            " and ".join(repr(name) for name in names) + f" are both the field {field!r}"
            for field, names in fields.items()
        ]
        super().__init__("; ".join(parts) + ": keep one of each")


@dataclass(frozen=True)
class ColumnMap:
    """How the columns of a table map onto the schema (see :func:`map_columns`).

    Attributes:
        renames: given name → canonical field name, for every known column.
        extra: the given names that are not schema fields, in input order.
    """

    renames: dict[str, str]
    extra: tuple[str, ...]


def map_columns(columns: Iterable[object]) -> ColumnMap:
    """Map given column names (or record keys) onto the schema's fields.

    Raises:
        DuplicateColumnsError: when two names stand for the same field.
    """
    renames: dict[str, str] = {}
    extra: list[str] = []
    seen: dict[str, list[str]] = {}
    for column in columns:
        name = str(column)
        field_name = canonical_column(name)
        if field_name is None:
            extra.append(name)
            continue
        seen.setdefault(field_name, []).append(name)
        renames[name] = field_name
    duplicates = {f: tuple(names) for f, names in seen.items() if len(names) > 1}
    if duplicates:
        raise DuplicateColumnsError(duplicates)
    return ColumnMap(renames, tuple(extra))


def normalise_yes_no(value: Any) -> Any:
    """Map yes/true/1/``True.``/vrai/oui (any case) to ``yes`` and their opposites to ``no``.

    Anything else (including a missing value) is returned unchanged, for the validator to report.
    """
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        text = str(value).strip().lower()
        if text in _TRUTHY:
            return "yes"
        if text in _FALSY:
            return "no"
    return value


def normalise_area_code(value: Any) -> Any:
    """Map ``415``/``"415"``/``415.0``/``Area code 415``/``AREA_CODE_415`` to ``area_code_415``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (str, int, float, np.integer, np.floating)
    ):
        return value
    text = str(value).strip()
    found = _AREA_CODE.fullmatch(text)
    return f"area_code_{found.group(1)}" if found else text


def normalise_state(value: Any) -> Any:
    """Upper-case a state code without surrounding spaces (``" nj"`` → ``NJ``)."""
    return value.strip().upper() if isinstance(value, str) else value


# Numbers need no normaliser: numeric text (" 184.5", "1e2", "128.0" for an integer) is parsed by
# pandas for tables and by pydantic for records alike; decimal commas are a property of a whole
# file, handled by core.tables when it reads one.
VALUE_NORMALISERS: dict[str, Callable[[Any], Any]] = {
    "state": normalise_state,
    "area_code": normalise_area_code,
    "international_plan": normalise_yes_no,
    "voice_mail_plan": normalise_yes_no,
    TARGET: normalise_yes_no,
}


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (list, tuple, dict, set))


_SCALAR_KINDS = frozenset(
    {"string", "floating", "integer", "mixed-integer-float", "boolean", "empty", "decimal"}
)


def non_scalar(column: pd.Series) -> np.ndarray:
    """Boolean mask of the cells holding a list, tuple, dict or set (e.g. from nested JSON)."""
    if column.dtype != object or pd.api.types.infer_dtype(column, skipna=True) in _SCALAR_KINDS:
        return np.zeros(len(column), dtype=bool)  # told in C, without a Python loop
    return np.fromiter((not _is_scalar(v) for v in column), dtype=bool, count=len(column))


def _map_unique(column: pd.Series, normalise: Callable[[Any], Any]) -> pd.Series:
    """Apply ``normalise`` to each distinct value once (not once per row); missing values,
    lists and objects stay as they are."""
    keep = non_scalar(column)
    scalars = column[~keep] if keep.any() else column
    codes, uniques = pd.factorize(scalars, use_na_sentinel=True)
    if len(uniques) == 0:
        return column.astype(object)
    mapped = np.array([normalise(value) for value in uniques], dtype=object)
    values = column.to_numpy(dtype=object).copy()
    positions = np.flatnonzero(~keep)
    known = codes >= 0
    values[positions[known]] = mapped[codes[known]]
    return pd.Series(values, index=column.index, name=column.name, dtype=object)


def normalise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with canonical column names and value spellings.

    Column names in any case and spacing (modeldata, BigML, Kaggle) become the canonical ones;
    yes/no, area codes and state codes get their canonical spelling (:data:`VALUE_NORMALISERS`);
    numbers given as text keep their text (the validator parses them). Columns it does not know
    are kept as they are.

    Args:
        frame: a raw table as read from a file.

    Returns:
        A new DataFrame; the input is not modified.

    Raises:
        DuplicateColumnsError: when two columns stand for the same field.
    """
    columns = map_columns(frame.columns)
    out = frame.rename(columns=columns.renames)
    for name in columns.renames.values():
        if name in VALUE_NORMALISERS:
            out[name] = _map_unique(out[name], VALUE_NORMALISERS[name])
    return out


def canonical_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """One record with the canonical key of every feature (the label and unknown keys kept as
    they are: they are passed through). Values are normalised by the :class:`Customer` model
    with the same :data:`VALUE_NORMALISERS` as tables.

    Raises:
        DuplicateColumnsError: when two keys stand for the same field.
    """
    renames = map_columns(data).renames
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = renames.get(key)
        out[key if name is None or name == TARGET else name] = value
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


class CustomerRecord(BaseModel):
    """What a validated customer offers: its features and its passthrough fields."""

    def features(self) -> dict[str, Any]:
        """The 19 canonical fields (what is scored and stored), without passthrough fields."""
        return {name: getattr(self, name) for name in FEATURE_NAMES}

    @property
    def passthrough(self) -> dict[str, Any]:
        """The fields that are not features (an id, the label...), unchanged, in input order."""
        return dict(self.model_extra or {})


class _CustomerBase(CustomerRecord):
    """Common configuration: names and values in any known spelling, NaN/Infinity rejected,
    unknown fields kept apart (:attr:`passthrough`)."""

    model_config = ConfigDict(
        extra="allow",
        allow_inf_nan=False,
        frozen=True,
        json_schema_extra={"examples": [EXAMPLE_CHURNER, EXAMPLE_LOYAL]},
    )

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        if isinstance(data, dict) and not _FEATURE_SET.issuperset(data):
            return canonical_keys(data)  # DuplicateColumnsError is a ValueError: a 422
        return data

    @field_validator(*VALUE_NORMALISERS, mode="before", check_fields=False)
    @classmethod
    def _values(cls, value: Any, info: ValidationInfo) -> Any:
        normalise = VALUE_NORMALISERS.get(info.field_name or "")
        return normalise(value) if normalise is not None and _is_scalar(value) else value


Customer: type[_CustomerBase] = create_model(  # type: ignore[call-overload]
    "Customer",
    __base__=_CustomerBase,
    __doc__="One telecom customer: the 19 raw features the churn model scores. Names and values "
    "may use the BigML/Kaggle spellings (`Account length`, area code `415`, plans `Yes`/`1`/"
    "`VRAI`); any other field (an id, the label) is not scored and comes back in `passthrough`.",
    **{spec.name: _field(spec) for spec in FEATURES},
)


# The 19 fields with pydantic-core's validation only: it accepts exactly the records whose every
# name and value is already canonical, which the normalisers above map to themselves.
class _CanonicalBase(CustomerRecord):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


_CanonicalCustomer: type[CustomerRecord] = create_model(  # type: ignore[call-overload]
    "CanonicalCustomer",
    __base__=_CanonicalBase,
    **{spec.name: _field(spec) for spec in FEATURES},
)


#: $ per minute of each calling period in the training data: in every row of
#: ``data/raw/churn.csv`` the charge is ``round(minutes * rate, 2)`` (a test checks it).
TARIFFS: dict[str, float] = {"day": 0.17, "eve": 0.085, "night": 0.045, "intl": 0.27}
#: A charge further than this from ``minutes * rate`` (in $, or this share of it if larger) is
#: reported: rounding explains 0.005 at most.
TARIFF_TOLERANCE = 0.10


def usage_warnings(record: Mapping[str, Any]) -> list[str]:
    """Minutes and charges that disagree with the training data's tariffs (:data:`TARIFFS`).

    The model learned from customers whose charge is always minutes times the tariff; a pair that
    disagrees (a typing slip, another operator's prices) is still scored, and said.

    Args:
        record: one customer, canonical names (numbers or None).

    Returns:
        One line per disagreeing period, naming both fields and the expected charge; empty when
        all agree, or a value is missing or negative (out of range: validation says so, and an
        "expected -8.50" would only add noise).
    """
    found = []
    for period, rate in TARIFFS.items():
        minutes = record.get(f"total_{period}_minutes")
        charge = record.get(f"total_{period}_charge")
        if not isinstance(minutes, (int, float)) or not isinstance(charge, (int, float)):
            continue
        if minutes < 0 or charge < 0:
            continue
        expected = minutes * rate
        if abs(charge - expected) > max(TARIFF_TOLERANCE, TARIFF_TOLERANCE * expected):
            found.append(
                f"total_{period}_charge {charge:.2f} disagrees with total_{period}_minutes "
                f"{minutes:g} at {rate:g} $/min (expected {expected:.2f}): the model learned "
                "from customers whose charge is minutes times that tariff"
            )
    return found


def customer_from_json(raw: bytes | str) -> CustomerRecord:
    """One customer from JSON text, with the features and passthrough fields
    ``Customer.model_validate_json`` gives.

    A canonical record is validated by pydantic-core alone (no Python normaliser runs: they map
    canonical values to themselves); any other spelling, unknown field or bad value goes
    through :class:`Customer`, whose answer (or error) it is.

    Raises:
        pydantic.ValidationError: naming the field and the reason.
    """
    try:
        return _CanonicalCustomer.model_validate_json(raw)
    except ValidationError:
        return Customer.model_validate_json(raw)


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
    try:  # numbers, or numeric text as read from a file: converted in C
        values = raw.astype("float64")
    except (TypeError, ValueError):  # anything else: parsed cell by cell, bad cells NaN
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


_TARGET_SPEC = FeatureSpec(TARGET, "category", "Whether the customer churned.", "yes", "no",
                           "Churn", allowed=YES_NO)  # fmt: skip


def _describe(value: Any) -> str:
    kind = "an object" if isinstance(value, dict) else f"a {type(value).__name__}"
    return f"{kind} is not a single value: {str(value)[:60]}"


def validate_frame(frame: pd.DataFrame, *, require_target: bool = False) -> ValidationReport:
    """Normalise and check a table against the schema, reporting every bad row and column.

    Unknown columns are not checked and not returned (:mod:`core.tables` passes them through).
    The label is checked only when it is required: a table to score may carry a label in any
    spelling, or a broken one, and is scored all the same.

    Args:
        frame: raw table (column names and values in any spelling :func:`normalise_frame` knows).
        require_target: whether the ``churn`` column must be present and valid (training data).

    Returns:
        A :class:`ValidationReport` with the typed frame (the 19 features, then ``churn`` when
        required), the issues and the mask of valid rows.

    Raises:
        DuplicateColumnsError: when two columns stand for the same field.
    """
    data = normalise_frame(frame).reset_index(drop=True)
    issues: list[Issue] = []
    if data.empty:
        issues.append(Issue(None, "*", "the table has no rows"))
    expected = list(FEATURE_NAMES) + ([TARGET] if require_target else [])
    for name in expected:
        if name not in data.columns:
            issues.append(Issue(None, name, "missing column"))
    out = pd.DataFrame(index=data.index)
    bad = np.zeros(len(data), dtype=bool)
    for name in (c for c in expected if c in data.columns):
        spec = SPECS.get(name, _TARGET_SPEC)
        raw = data[name]
        nested = non_scalar(raw)
        if nested.any():  # a list or an object in a cell (nested JSON): reported, not parsed
            issues += [Issue(int(r), name, _describe(raw.iloc[r])) for r in np.flatnonzero(nested)]
            raw = raw.mask(nested)
        checker = _check_numeric if spec.is_numeric else _check_category
        column, found = checker(spec, raw)
        out[name] = column
        for issue in found:
            if issue.row is not None:
                if nested[issue.row]:
                    continue  # already reported as nested, not as missing
                bad[issue.row] = True
            issues.append(issue)
        bad |= nested
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
