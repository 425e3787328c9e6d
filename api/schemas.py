"""Request/response models of the API, in pairs, every field documented with an example.

The customer model itself comes from :mod:`core.schema` (the one feature schema); its examples are a
realistic churner and a loyal customer, so both show up in ``/docs``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from core import schema
from core.labelled import LabelledReport
from core.pipelines import TrainResult

if TYPE_CHECKING:
    CustomerIn = schema._CustomerBase  # pylint: disable=protected-access  # static view of Customer
else:
    CustomerIn = schema.Customer

Label = Literal["yes", "no"]
EXAMPLE_ID = "019ac5e2-3f6e-7c55-9a3e-2d1f2b7c8a41"
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


# --- errors --------------------------------------------------------------------------------------
class ErrorItem(BaseModel):
    """One problem with the input: where (loc / row + column) and why."""

    loc: list[str | int] = Field(
        default_factory=list, description="Path of the bad value.", examples=[["body", "state"]]
    )
    msg: str = Field("", description="What is wrong.", examples=["Input should be 'AK', ..."])
    type: str = Field("value_error", description="Machine-readable error type.")
    row: int | None = Field(None, description="0-based row of a batch, when row-level.")
    column: str | None = Field(None, description="Field/column at fault.", examples=["state"])
    reason: str = Field("", description="Same as msg (batch format).")


class ErrorResponse(BaseModel):
    """Error body: a message, or a list of field/row-level problems."""

    detail: str | list[ErrorItem] = Field(description="Message or list of problems.")
    request_id: str = Field(
        description="The caller's X-Request-ID or a new UUIDv7; a 500's log line names it."
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "Body or batch too large."},
    415: {"model": ErrorResponse, "description": "Wrong content type."},
    422: {"model": ErrorResponse, "description": "Invalid input, with field-level messages."},
}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or unknown X-API-Key."},
    403: {"model": ErrorResponse, "description": "The key's role may not do this."},
}
NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "No model loaded yet."},
}


def upload_schema(description: str) -> dict[str, Any]:
    """The OpenAPI schema of a multipart body with one file field named ``file``."""
    file = {"type": "string", "format": "binary", "description": description}
    return {"type": "object", "properties": {"file": file}}


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown id."},
}


# --- health --------------------------------------------------------------------------------------
class HealthResponse(BaseModel):
    """Liveness."""

    status: Literal["ok"] = Field(description="Always `ok` when the process answers.")


class ReadyResponse(BaseModel):
    """Readiness: model loaded and database reachable."""

    status: Literal["ready", "degraded", "not_ready"] = Field(
        description="`degraded`: serving a cached champion (MLflow unreachable); `not_ready`: no "
        "model or no database.",
        examples=["ready"],
    )
    reason: str | None = Field(None, description="Why it is degraded or not ready.")
    model_version: str | None = Field(None, description="Served model version.", examples=["3"])


# --- model ---------------------------------------------------------------------------------------
class ModelInfo(BaseModel):
    """The served champion."""

    name: str = Field(description="Registered model name.", examples=["churn-model"])
    version: str = Field(description="Registry version.", examples=["3"])
    alias: str = Field(description="Registry alias served.", examples=["champion"])
    family: str | None = Field(None, description="Model family.", examples=["hgb"])
    metrics: dict[str, Any] = Field(
        default_factory=dict,
        description="Holdout metrics of this version.",
        examples=[{"f1": 0.93, "roc_auc": 0.93}],
    )
    trained_at: str | None = Field(None, description="When it was trained (ISO 8601, UTC).")
    data_sha256: str | None = Field(None, description="SHA-256 of the training data file.")
    threshold: float = Field(description="Decision threshold on the churn probability.")
    compiled: Literal["onnx", "numpy", "sklearn"] = Field(
        description="Inference path: `onnx` = the trees compiled for ONNX Runtime (HGB); "
        "`numpy` = exact numpy evaluator (random forest, logistic regression); "
        "`sklearn` = fallback (model could not be compiled).",
        examples=["onnx"],
    )
    degraded: bool = Field(False, description="True when loaded from the local cache.")
    reason: str | None = Field(None, description="Why it is degraded.")
    generation: int = Field(0, description="Model generation counter (bumped on every swap).")


class GateRecord(BaseModel):
    """What the registry recorded on a version: the promotion gate's decision (when the gate
    judged it) and the manual promotions/rollbacks that touched it (``key -> value`` as tagged:
    ``forced``, ``reason``, ``previous_champion``, ``demoted``, ``restored``, ``at``)."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["promoted", "rejected", "not_enough_rows"] | None = Field(
        None,
        description="The gate's decision (`not_enough_rows`: too few holdout rows neither model "
        "was trained on to judge); None when the gate never judged this version.",
    )
    reason: str | None = Field(None, examples=["f1 0.9237 beats champion v2 0.9101 by >= 0.002"])
    metric: str | None = Field(None, description="Compared metric.", examples=["f1"])
    margin: str | None = Field(None, description="Required lead.", examples=["0.002"])
    challenger_score: str | None = Field(None, examples=["0.923700"])
    champion_score: str | None = Field(None, examples=["0.910100"])
    champion_version: str | None = Field(None, examples=["2"])
    compared_rows: str | None = Field(
        None,
        description="Holdout rows neither model was trained on: the ones compared.",
        examples=["1000"],
    )
    compared_churners: str | None = Field(
        None, description="Churners among them.", examples=["141"]
    )
    excluded_rows: str | None = Field(
        None,
        description="Holdout rows left out because a model was trained on them.",
        examples=["0"],
    )
    at: str | None = Field(None, description="When the gate decided (ISO 8601).")
    promotion: dict[str, str] = Field(default_factory=dict, description="Manual promotion.")
    rollback: dict[str, str] = Field(default_factory=dict, description="Rollback events.")

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> GateRecord:
        """From the registry's flat record (``decision``, ``promotion.forced``...)."""
        fields: dict[str, Any] = {"promotion": {}, "rollback": {}}
        for key, value in tags.items():
            group, _, name = key.partition(".")
            if name and group in ("promotion", "rollback"):
                fields[group][name] = value
            else:
                fields[key] = value
        return cls.model_validate(fields)


class ModelVersionInfo(BaseModel):
    """One registered version."""

    version: str = Field(description="Registry version.", examples=["3"])
    aliases: list[str] = Field(default_factory=list, examples=[["champion"]])
    metrics: dict[str, Any] = Field(default_factory=dict, description="Holdout metrics.")
    created_at: str | None = Field(None, description="Registration time (ISO 8601).")
    run_id: str | None = Field(None, description="MLflow run id.")
    gate: GateRecord = Field(
        default_factory=GateRecord, description="Gate decision and manual promotions/rollbacks."
    )


class CurvePointOut(BaseModel):
    """One point of a training curve."""

    step: float = Field(description="Boosting iteration / learning-curve step.", examples=[50])
    train_loss: float | None = Field(None, description="Log-loss on the training part.")
    valid_loss: float | None = Field(None, description="Log-loss on the validation part.")


class TrainingCurve(BaseModel):
    """The training curve of a version."""

    version: str = Field(examples=["3"])
    points: list[CurvePointOut]


class PlotInfo(BaseModel):
    """One figure logged with a version."""

    name: str = Field(description="Figure name (use in the URL).", examples=["roc_curve"])
    title: str = Field(description="Human title.", examples=["ROC curve (holdout)"])


class PromoteRequest(BaseModel):
    """Force a version to champion."""

    model_config = STRICT
    version: str = Field(
        min_length=1, max_length=16, pattern=r"^[0-9]+$", description="Version.", examples=["2"]
    )
    reason: str = Field("manual promotion via API", max_length=500, description="Recorded why.")


class ModelActionResponse(BaseModel):
    """Result of promote/rollback/reload."""

    status: Literal["ok"] = "ok"
    action: Literal["promote", "rollback", "reload"] = Field(description="What was done.")
    version: str | None = Field(None, description="Champion version after the action.")
    generation: int = Field(description="New model generation; every worker reloads.")


# --- predict -------------------------------------------------------------------------------------
class PredictionResponse(BaseModel):
    """One churn prediction."""

    prediction_id: str = Field(description="Id to send feedback for.", examples=[EXAMPLE_ID])
    churn_probability: float = Field(
        ge=0, le=1, description="Probability that the customer churns.", examples=[0.91]
    )
    label: Label = Field(description="`yes` when probability ≥ threshold.", examples=["yes"])
    churn: bool = Field(description="Same as label, as a boolean.", examples=[True])
    threshold: float = Field(description="Decision threshold used.", examples=[0.42])
    model_version: str = Field(description="Model version that answered.", examples=["3"])
    latency_ms: float = Field(description="Server-side scoring time, ms.", examples=[0.05])
    passthrough: dict[str, Any] = Field(
        default_factory=dict,
        description="The fields sent that are not features (an id, the label...), unchanged.",
        examples=[{"customer_id": "C-1042"}],
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="Fields not in the schema (passed through, never an error).",
        examples=[["not in the schema, passed through unchanged: 'customer_id'"]],
    )


class Driver(BaseModel):
    """How much one feature moved this prediction."""

    feature: str = Field(
        description="Raw feature name.", examples=["number_customer_service_calls"]
    )
    value: str | int | float = Field(description="Its value for this customer.", examples=[4])
    contribution: float = Field(
        description="Change in churn probability against a typical customer's value "
        "(positive = pushes towards churn).",
        examples=[0.21],
    )


class ExplainResponse(BaseModel):
    """Why the model scores a customer as it does. Not a prediction: nothing is stored (the
    prediction itself is ``POST /predict``'s)."""

    churn_probability: float = Field(
        ge=0, le=1, description="Probability that the customer churns.", examples=[0.91]
    )
    label: Label = Field(description="`yes` when probability ≥ threshold.", examples=["yes"])
    churn: bool = Field(description="Same as label, as a boolean.", examples=[True])
    threshold: float = Field(description="Decision threshold used.", examples=[0.42])
    model_version: str = Field(description="Model version that answered.", examples=["3"])
    drivers: list[Driver] = Field(description="Features by absolute contribution, largest first.")


class BatchResult(BaseModel):
    """One scored row of a batch."""

    row: int = Field(description="0-based row index in the input.", examples=[0])
    prediction_id: str = Field(description="Prediction id.", examples=[EXAMPLE_ID])
    churn_probability: float = Field(ge=0, le=1, examples=[0.91])
    label: Label = Field(examples=["yes"])
    passthrough: dict[str, Any] = Field(
        default_factory=dict,
        description="The row's columns that are not features (ids, the label...), unchanged; "
        "present when the table has such columns.",
        examples=[{"phone number": "382-4657"}],
    )


def _read_as() -> Any:
    return Field(
        description="What was detected: format, separator, decimal mark, encoding (or sheet).",
        examples=["read as ;-separated, decimal comma, cp1252"],
    )


def _warnings() -> Any:
    return Field(
        default_factory=list,
        description="What is worth knowing but not an error: columns passed through, a guessed "
        "encoding, empty rows ignored.",
        examples=[["not in the schema, passed through unchanged: 'phone number'"]],
    )


class BatchResponse(BaseModel):
    """A scored batch, and what its label column says about the model (when it has one)."""

    model_version: str = Field(description="Model version that answered.", examples=["3"])
    threshold: float = Field(
        description="Decision threshold of that model: a row is labelled churn at or above it.",
        examples=[0.42],
    )
    read_as: str = _read_as()
    warnings: list[str] = _warnings()
    results: list[BatchResult] = Field(description="One result per input row, in order.")
    labelled: LabelledReport | None = Field(
        None,
        description="Only when the batch has a label column (`churn`, or `Churn` True/False as "
        "in the BigML file): precision, recall, F1, accuracy, ROC-AUC, PR-AUC and Brier score "
        "with 95 % intervals (`quality`) on the labelled rows the model never trained on, how "
        "many labelled rows it had already seen (`seen`, left out), and whether the rest are "
        "enough to judge it (`enough_rows`). With `Accept: text/csv`, the same object is the "
        "`X-Labelled-Quality` header (compact JSON).",
    )
    feedback_recorded: int = Field(
        0,
        description="Outcomes stored as feedback with this batch's predictions "
        "(`record_feedback=true`; also the `X-Feedback-Recorded` header).",
        examples=[0],
    )


class IssueOut(BaseModel):
    """One validation issue of an uploaded table."""

    row: int | None = Field(description="0-based row (null: the whole column).", examples=[3])
    column: str = Field(description="Column at fault.", examples=["area_code"])
    reason: str = Field(description="Why.", examples=["unknown value 'x'"])


class ValidateResponse(BaseModel):
    """Validation report of an uploaded CSV."""

    rows: int = Field(description="Rows read.", examples=[100])
    valid_rows: int = Field(description="Rows without any issue.", examples=[98])
    issues: list[IssueOut] = Field(description="Every issue found.")
    read_as: str = _read_as()
    warnings: list[str] = _warnings()


# --- stored predictions & feedback ---------------------------------------------------------------
class PredictionRecord(BaseModel):
    """A stored prediction."""

    id: str = Field(examples=[EXAMPLE_ID])
    created_at: datetime = Field(description="When it was answered (UTC).")
    request_id: str = Field(description="Request id.")
    model_version: str = Field(examples=["3"])
    probability: float = Field(ge=0, le=1, examples=[0.91])
    label: Label = Field(examples=["yes"])
    threshold: float = Field(examples=[0.42])
    latency_ms: float = Field(examples=[0.05])
    features: dict[str, Any] = Field(description="The 19 raw fields.")
    actual: Label | None = Field(None, description="True outcome, once fed back.")
    feedback_at: datetime | None = Field(None, description="When the outcome was fed back.")


class PredictionPage(BaseModel):
    """A page of stored predictions, newest first."""

    items: list[PredictionRecord]
    total: int = Field(description="Rows matching the filters.", examples=[1234])


class FeedbackRequest(BaseModel):
    """The true outcome of a prediction."""

    model_config = STRICT
    prediction_id: str = Field(
        min_length=1, max_length=36, description="Id from a prediction.", examples=[EXAMPLE_ID]
    )
    # the outcome as the data has it (True./false/1/oui...): the features' own yes/no rule
    actual: Annotated[
        Label,
        BeforeValidator(schema.normalise_yes_no),
        WithJsonSchema(schema.YES_NO_INPUT_SCHEMA, mode="validation"),  # what it accepts
    ] = Field(
        description="Did the customer churn? yes/no, or true/false, 1/0, oui/non (any case).",
        examples=["yes"],
    )


# --- monitoring ----------------------------------------------------------------------------------
class DriftFeature(BaseModel):
    """One feature of a drift report (core.monitoring.drift); new fields are null on older runs."""

    feature: str = Field(examples=["total_day_minutes"])
    kind: str | None = Field(None, description="numeric or categorical", examples=["numeric"])
    rows: int | None = Field(None, description="Non-missing window values.", examples=[500])
    test: str | None = Field(
        None,
        description="ks, z, fisher, chi2 or chi2_monte_carlo (null: not enough rows)",
        examples=["ks"],
    )
    statistic: float | None = Field(None, examples=[0.41])
    p_value: float | None = Field(None, examples=[1e-12])
    p_value_adjusted: float | None = Field(
        None, description="Holm-adjusted over the features tested together.", examples=[1.9e-11]
    )
    distance: float | None = Field(
        None, description="Normed Wasserstein or Jensen-Shannon distance.", examples=[0.83]
    )
    psi: float = Field(description="Population stability index (descriptive).", examples=[0.31])
    ks_statistic: float | None = Field(None, description="The KS test's statistic (KS only).")
    ks_pvalue: float | None = Field(None, description="The KS test's p-value (KS only).")
    drifted: bool = Field(description="Adjusted p-value <= threshold (the report's alpha).")


class DriftReport(BaseModel):
    """The newest drift run: its verdict and every feature's test."""

    run_id: str
    computed_at: str = Field(description="When it was computed (ISO 8601).")
    reference_rows: int = Field(description="Training rows of the reference.", examples=[3200])
    current_rows: int = Field(description="Rows of the window compared.", examples=[500])
    threshold: float = Field(
        description="Alpha: the report's family-wise false-alarm rate (0.2, a PSI level, on "
        "runs stored before the tests).",
        examples=[0.05],
    )
    min_rows: int | None = Field(None, description="Fewest rows with a verdict.", examples=[50])
    verdict: str = Field(description="drift, no_drift or not_enough_rows", examples=["drift"])
    model_version: str | None = None
    drifted: bool
    features: list[DriftFeature]


# --- retrain -------------------------------------------------------------------------------------
class RetrainAccepted(BaseModel):
    """A retrain was queued."""

    job_id: str = Field(description="Poll `GET /retrain/{job_id}`.", examples=[EXAMPLE_ID])
    rows: int | None = Field(
        None, description="Rows the job trains on (null: the stored data).", examples=[3333]
    )
    dropped_rows: int = Field(
        0, description="Invalid rows left out (with `drop_invalid_rows=true`).", examples=[0]
    )
    read_as: str | None = Field(None, description="What was detected in the uploaded file.")
    warnings: list[str] = _warnings()


class ProgressPoint(BaseModel):
    """One progress step of a retrain."""

    step: str = Field(examples=["train"])
    fraction: float = Field(ge=0, le=1, examples=[0.5])
    at: datetime = Field(description="When (UTC).")


class RetrainStatus(BaseModel):
    """Status of a retrain job."""

    job_id: str = Field(examples=[EXAMPLE_ID])
    status: Literal["queued", "running", "succeeded", "failed"] = Field(examples=["running"])
    progress: list[ProgressPoint] = Field(default_factory=list)
    result: TrainResult | None = Field(
        None, description="The training result with the gate's decision, scores and reason."
    )
    error: str | None = Field(None, description="Why it failed.")
    created_at: datetime
    updated_at: datetime
