"""Scoring: one customer, its drivers, a batch (JSON or CSV, CSV out on request), CSV validation.

A batch with a label column (``churn``/``Churn`` in any spelling the schema accepts) is also
scored against it: the answer reports the model's quality on the labelled rows it never trained
on (:func:`core.labelled.labelled_report`), and ``record_feedback=true`` stores those labels as
the outcomes of the predictions just made (bulk feedback).

``POST /predict`` is the hot path: :mod:`api.fastlane` answers it in plain ASGI with
:func:`parse_customer` and :func:`answer` (the route here documents it); it scores through the
served model's compiled scorer, queues the row for the batched DB writer and returns pre-built JSON
(the response model documents it; re-validating our own output would only cost time).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.deps import ModelDep, RoleRoute, StateDep, WriterDep
from api.ids import new_id, new_ids, resolve_request_id
from api.schemas import (
    ERROR_RESPONSES,
    NOT_READY,
    BatchResponse,
    CustomerIn,
    ExplainResponse,
    PredictionResponse,
    ValidateResponse,
    upload_schema,
)
from api.tables import (
    issue_items,
    parse_json,
    read_request_table,
    unprocessable,
)
from core.schema import (
    EXAMPLE_CHURNER,
    EXAMPLE_LOYAL,
    FEATURE_NAMES,
    FEATURES,
    Customer,
    CustomerRecord,
    customer_from_json,
    usage_warnings,
)
from core.labelled import LabelledReport, SampleRule, labelled_report
from core.predict import ServedModel
from core.schema import TARGET, YES_NO
from core.settings import Settings
from core.store import BatchRows, PredictionWriter
from core.tables import (
    PLAIN_CSV,
    Table,
    passthrough_records,
    passthrough_warnings,
    scored_table,
    write_like,
)

router = APIRouter(prefix="/predict", tags=["predict"], route_class=RoleRoute)
INTEGERS = {spec.name: "int64" for spec in FEATURES if spec.kind == "integer"}

CUSTOMER_EXAMPLES: dict[str, Any] = {
    "churner": {
        "summary": "A customer who churns",
        "description": "International plan, heavy daytime use, 4 calls to customer service.",
        "value": EXAMPLE_CHURNER,
    },
    "loyal": {
        "summary": "A loyal customer",
        "description": "Voice-mail plan, moderate use, one call to customer service.",
        "value": EXAMPLE_LOYAL,
    },
}
CustomerBody = Annotated[CustomerIn, Body(openapi_examples=CUSTOMER_EXAMPLES)]
RESPONSES = ERROR_RESPONSES | NOT_READY
CSV_TABLE = {
    "type": "string",
    "description": "CSV/TSV with a header row (modeldata, BigML or Kaggle names, any separator, "
    "decimal mark and encoding; a `charset=` parameter is honoured).",
}
UPLOAD = upload_schema("CSV/TSV (any separator, decimal mark, encoding) or workbook (.xlsx).")
BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "maxItems": 10_000,
                    "minItems": 1,
                    "items": {"$ref": "#/components/schemas/Customer"},
                },
                "examples": {"two": {"value": [EXAMPLE_CHURNER, EXAMPLE_LOYAL]}},
            },
            "multipart/form-data": {"schema": {**UPLOAD, "required": ["file"]}},
            "text/csv": {"schema": CSV_TABLE},
        },
    }
}
CSV_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {**UPLOAD, "required": ["file"]}},
            "text/csv": {"schema": CSV_TABLE},
        },
    }
}


def _now() -> datetime:
    return datetime.now(UTC)


def _score(model: ServedModel, record: dict[str, Any]) -> tuple[float, str, float]:
    started = time.perf_counter()
    probability = model.score_one(record)
    latency_ms = (time.perf_counter() - started) * 1000.0
    return probability, model.label(probability), latency_ms


async def answer(
    model: ServedModel,
    writer: PredictionWriter,
    customer: CustomerRecord,
    request_id: str,
) -> dict[str, Any]:
    """Score one validated :class:`core.schema.Customer`, store it, return the response body (its
    fields that are not features come back unchanged in ``passthrough``).

    The body is returned once the row is stored (committed, or kept in the writer's spool): an
    answered prediction survives a killed process (see :mod:`core.store.writer`)."""
    record = customer.features()
    probability, label, latency_ms = _score(model, record)
    prediction_id = new_id()
    ticket = writer.submit(
        {
            "id": prediction_id,
            "created_at": _now(),
            "request_id": request_id,
            "model_version": model.version,
            "probability": probability,
            "label": label,
            "threshold": model.threshold,
            "latency_ms": latency_ms,
            "features": record,
            "actual": None,
            "feedback_at": None,
        }
    )
    await writer.stored(ticket)
    passthrough = customer.passthrough
    return {
        "prediction_id": prediction_id,
        "churn_probability": probability,
        "label": label,
        "churn": label == "yes",
        "threshold": model.threshold,
        "model_version": model.version,
        "latency_ms": round(latency_ms, 4),
        "passthrough": passthrough,
        "warnings": (passthrough_warnings(passthrough) if passthrough else [])
        + usage_warnings(record),
    }


def parse_customer(raw: bytes, content_type: str | None) -> CustomerRecord:
    """One :class:`core.schema.Customer` from a JSON body (BOM and declared charset honoured).

    Raises:
        RequestValidationError: naming the field and the reason.
    """
    parsed: CustomerRecord = parse_json(Customer, raw, content_type, customer_from_json)
    return parsed


PREDICT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/Customer"},
                "examples": CUSTOMER_EXAMPLES,
            }
        },
    }
}


@router.post("", response_model=PredictionResponse, responses=RESPONSES, openapi_extra=PREDICT_BODY)
async def predict() -> Response:
    """Score one customer: churn probability, label, threshold, model version, prediction id."""
    # The operation's documentation only: every POST /predict is answered by
    # api.fastlane.PredictFastLane in front of the routing (parse_customer, then answer), which
    # `make bench` measured at about twice the requests/s of this route on the same 2 workers.
    raise RuntimeError("POST /predict is answered by api.fastlane")  # pragma: no cover


def _drivers(model: ServedModel, record: dict[str, Any], top: int) -> list[dict[str, Any]]:
    """Per-feature contribution: p(customer) - p(customer with that feature set to typical)."""
    variants = []
    for name in FEATURE_NAMES:
        variant = dict(record)
        variant[name] = EXAMPLE_LOYAL[name]
        variants.append(variant)
    base = model.score_one(record)
    others = model.score_records(variants)
    drivers = [
        {"feature": name, "value": record[name], "contribution": float(base - others[i])}
        for i, name in enumerate(FEATURE_NAMES)
        if record[name] != EXAMPLE_LOYAL[name]
    ]
    drivers.sort(key=lambda d: -abs(d["contribution"]))
    return drivers[:top]


@router.post("/explain", response_model=ExplainResponse, responses=RESPONSES)
async def explain(customer: CustomerBody, model: ModelDep) -> Response:
    """The features that move one customer's churn probability most (nothing is stored)."""
    record = customer.features()
    probability = model.score_one(record)
    label = model.label(probability)
    body = {
        "churn_probability": probability,
        "label": label,
        "churn": label == "yes",
        "threshold": model.threshold,
        "model_version": model.version,
        "drivers": _drivers(model, record, top=len(FEATURE_NAMES)),
    }
    return Response(json.dumps(body), media_type="application/json")


@dataclass(frozen=True)
class ScoredBatch:
    """A scored batch: one result per row, the features as validated, and what its labels say."""

    results: pd.DataFrame
    features: pd.DataFrame
    labelled: LabelledReport | None
    feedback_recorded: int
    ticket: int  #: the writer's ticket of its last row (see PredictionWriter.stored)


def _outcomes(table: pd.DataFrame) -> list[str | None]:
    """The label column's outcome of each row (``yes``/``no``; None where there is none)."""
    return [value if value in YES_NO else None for value in table[TARGET].tolist()]


def _labelled(
    model: ServedModel, table: pd.DataFrame, probabilities: np.ndarray, settings: Settings
) -> LabelledReport | None:
    """The served model's quality on the labelled rows it never trained on (None: no labels)."""
    return labelled_report(
        table,
        probabilities,
        model.threshold,
        model.bundle.seen_rows,
        SampleRule.from_settings(settings),
    )


def _score_batch(
    model: ServedModel,
    source: Table,
    request_id: str,
    writer: PredictionWriter,
    settings: Settings,
    record_feedback: bool = False,
) -> ScoredBatch:
    report = source.report
    if not report.ok:
        raise unprocessable(issue_items(report))
    table = source.labelled_frame()
    if record_feedback and TARGET not in table.columns:
        reason = "record_feedback=true needs a label column (churn, or Churn in the BigML file)"
        item = {"row": None, "column": TARGET, "reason": reason, "msg": reason,
                "loc": ["query", "record_feedback"], "type": "value_error"}  # fmt: skip
        raise unprocessable([item])
    valid = table[list(FEATURE_NAMES)].astype(INTEGERS)
    started = time.perf_counter()
    probabilities = model.score_frame(valid)
    latency_ms = (time.perf_counter() - started) * 1000.0 / max(1, len(valid))
    labels = model.labels(probabilities)
    ids = new_ids(len(valid))
    actuals = _outcomes(table) if record_feedback else None
    # the rows (and their features' JSON) are built by the writer thread, off this request
    ticket = writer.submit_batch(
        BatchRows(
            common={
                "created_at": _now(),
                "request_id": request_id,
                "model_version": model.version,
                "threshold": model.threshold,
                "latency_ms": latency_ms,
            },
            ids=ids,
            probabilities=probabilities,
            labels=labels,
            features=valid,
            actuals=actuals,
            feedback_at=_now() if actuals is not None else None,
        )
    )
    out = pd.DataFrame(
        {
            "row": np.arange(len(valid)),
            "prediction_id": ids,
            "churn_probability": probabilities,
            "label": labels,
        }
    )
    recorded = 0 if actuals is None else sum(a is not None for a in actuals)
    return ScoredBatch(
        out, valid, _labelled(model, table, probabilities, settings), recorded, ticket
    )


def _wants_csv(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept.split(",")[0]


def scored_csv(valid: pd.DataFrame, table: Table, scored: pd.DataFrame) -> bytes:
    """The features as validated, the passthrough columns unchanged, then the results
    (:func:`core.tables.scored_table`), as plain CSV."""
    inputs = pd.concat([valid.reset_index(drop=True), table.passthrough], axis=1)
    frame = scored_table(
        inputs,
        scored["churn_probability"].to_numpy(),
        scored["label"].to_numpy(),
        prediction_id=scored["prediction_id"].to_numpy(),
    )
    return write_like(frame, PLAIN_CSV)


@router.post(
    "/batch",
    response_model=BatchResponse,
    responses=RESPONSES
    | {200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "model": BatchResponse}},
    openapi_extra=BATCH_BODY,
)
async def predict_batch(
    request: Request,
    model: ModelDep,
    writer: WriterDep,
    state: StateDep,
    record_feedback: Annotated[
        bool,
        Query(
            description="Record the label column's outcomes (churn yes/no, any accepted "
            "spelling) as the feedback of the predictions this batch stores (bulk feedback)."
        ),
    ] = False,
) -> Response:
    """Score up to 10,000 customers (JSON array, CSV/TSV/.xlsx upload); `Accept: text/csv` for
    CSV out.

    With a label column, also the model's quality on the labelled rows it never trained on
    (`labelled`; header `X-Labelled-Quality` with CSV out)."""
    started = time.perf_counter()
    table = await read_request_table(request)
    scored = await run_in_threadpool(
        _score_batch,
        model,
        table,
        resolve_request_id(request.headers.get("x-request-id")),
        writer,
        state.settings,
        record_feedback,
    )
    await writer.stored(scored.ticket)
    elapsed = f"{(time.perf_counter() - started) * 1000:.2f}"
    headers = {
        "X-Process-Time-Ms": elapsed,
        "X-Model-Version": model.version,
        "X-Read-As": table.read_as.encode("ascii", "backslashreplace").decode(),
        "X-Table-Warnings": json.dumps(list(table.warnings)),  # ASCII: JSON escapes the rest
    }
    headers |= _labelled_headers(scored)
    if _wants_csv(request):
        csv = await run_in_threadpool(scored_csv, scored.features, table, scored.results)
        return Response(csv, media_type="text/csv", headers=headers)
    return Response(
        _results_json(model, table, scored), media_type="application/json", headers=headers
    )


def _labelled_headers(scored: ScoredBatch) -> dict[str, str]:
    """What the labels say, for CSV out: the ``labelled`` object as compact JSON, and the count
    of outcomes recorded as feedback."""
    headers = {"X-Feedback-Recorded": str(scored.feedback_recorded)}
    if scored.labelled is not None:
        headers["X-Labelled-Quality"] = scored.labelled.model_dump_json()
    return headers


_RESULT = '{{"row":{},"prediction_id":"{}","churn_probability":{!r},"label":"{}"'


def _results_json(model: ServedModel, table: Table, scored: ScoredBatch) -> str:
    """The batch answer as JSON, probabilities with full precision (repr round-trips exactly);
    each result carries its row's passthrough columns when the table has any."""
    results = scored.results
    heads = map(
        _RESULT.format,
        range(len(results)),
        results["prediction_id"].tolist(),
        results["churn_probability"].tolist(),
        results["label"].tolist(),
    )
    if table.passthrough.shape[1]:
        tails = (
            f',"passthrough":{json.dumps(p, default=str)}}}' for p in passthrough_records(table)
        )
    else:
        tails = ("}" for _ in range(len(results)))
    items = ",".join(head + tail for head, tail in zip(heads, tails))
    meta = f'"read_as":{json.dumps(table.read_as)},"warnings":{json.dumps(list(table.warnings))}'
    labelled = "null" if scored.labelled is None else scored.labelled.model_dump_json()
    return (
        f'{{"model_version":{json.dumps(model.version)},"threshold":{float(model.threshold)!r},'
        f'{meta},"results":[{items}],'
        f'"labelled":{labelled},"feedback_recorded":{scored.feedback_recorded}}}'
    )


@router.post(
    "/validate",
    response_model=ValidateResponse,
    responses=ERROR_RESPONSES,
    openapi_extra=CSV_BODY,
)
async def validate(request: Request) -> ValidateResponse:
    """Check a table without scoring it: what was read, every bad row and column, and why."""
    table = await read_request_table(request)
    report = table.report
    issues = [
        {"row": issue.row, "column": issue.column, "reason": issue.reason}
        for issue in report.issues[:5000]
    ]
    return ValidateResponse.model_validate(
        {
            "rows": len(report.frame),
            "valid_rows": int(report.valid_rows.sum()),
            "issues": issues,
            "read_as": table.read_as,
            "warnings": list(table.warnings),
        }
    )
