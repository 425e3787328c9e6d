"""Batch scoring logic behind the Batch page: read, validate, chunk, merge (no Streamlit here).

The CSV may use the modeldata or the BigML spelling; :func:`core.schema.validate_frame`
normalises it and reports every bad row before anything is sent. Valid rows go to
``POST /predict/batch`` as JSON in chunks (so a large file shows progress and stays under the API's
batch limit); the scored file is the
uploaded table with the results appended, invalid rows keeping their validation message.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL, FEATURES, ValidationReport, validate_frame
from ui.client import ApiClient

CHUNK_ROWS = 1000
RESULT_COLUMNS = ("churn_probability", "churn_label", "prediction_id", "model_version", "issues")


class CsvReadError(ValueError):
    """The upload is not a readable CSV."""


def read_csv(content: bytes) -> pd.DataFrame:
    """Parse an uploaded CSV (any known spelling); raise :class:`CsvReadError` if unreadable."""
    if not content.strip():
        raise CsvReadError("the file is empty")
    try:
        return pd.read_csv(io.BytesIO(content), skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CsvReadError(f"not a readable CSV: {exc}") from exc


def issues_table(report: ValidationReport) -> pd.DataFrame:
    """Every issue as a row; ``row`` is the 1-based data row (``None``: the whole column)."""
    return pd.DataFrame(
        [
            {
                "row": issue.row + 1 if issue.row is not None else None,
                "column": issue.column,
                "reason": issue.reason,
            }
            for issue in report.issues
        ],
        columns=["row", "column", "reason"],
    )


def records(report: ValidationReport) -> list[dict[str, Any]]:
    """The valid rows as JSON-ready customers (integers as ints, categories as strings)."""
    frame = report.frame.loc[report.valid_rows, [spec.name for spec in FEATURES]]
    out: list[dict[str, Any]] = [
        {str(k): v for k, v in row.items()}
        for row in frame.astype(object).to_dict(orient="records")
    ]
    for row in out:
        for spec in FEATURES:
            value = row[spec.name]
            if spec.kind == "integer":
                row[spec.name] = int(value)
            elif spec.kind == "number":
                row[spec.name] = float(value)
    return out


def chunks(items: list[dict[str, Any]], size: int = CHUNK_ROWS) -> Iterator[list[dict[str, Any]]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True)
class BatchResult:
    """The scored table and its summary."""

    frame: pd.DataFrame
    scored: int
    skipped: int
    model_version: str

    def to_csv(self) -> bytes:
        """The scored table as CSV bytes for the download button."""
        return self.frame.to_csv(index=False).encode("utf-8")


def score(
    api: ApiClient,
    original: pd.DataFrame,
    report: ValidationReport,
    on_progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> BatchResult:
    """Score the valid rows in chunks and append the results to a copy of the uploaded table.

    Args:
        api: the API client (``ApiError`` propagates to the caller).
        original: the table as uploaded (its columns and spelling are kept in the output).
        report: the validation report of ``original``.
        on_progress: called with (rows done, rows total) after each chunk.
        chunk_rows: rows per ``POST /predict/batch`` call.
    """
    todo = records(report)
    probabilities: list[float] = []
    labels: list[str] = []
    ids: list[str] = []
    version = ""
    for part in chunks(todo, chunk_rows):
        answer = api.predict_batch(part)
        results = sorted(answer.get("results", []), key=lambda r: int(r.get("row", 0)))
        if len(results) != len(part):
            raise ValueError(f"the API scored {len(results)} of {len(part)} rows")
        version = str(answer.get("model_version", version))
        probabilities += [float(r["churn_probability"]) for r in results]
        labels += [str(r.get("label", "")) for r in results]
        ids += [str(r.get("prediction_id", "")) for r in results]
        if on_progress is not None:
            on_progress(len(probabilities), len(todo))
    out = original.reset_index(drop=True).copy()
    valid = np.asarray(report.valid_rows, dtype=bool)
    out["churn_probability"] = pd.Series(np.nan, index=out.index, dtype="float64")
    out["churn_label"] = pd.Series(None, index=out.index, dtype="object")
    out["prediction_id"] = pd.Series(None, index=out.index, dtype="object")
    out.loc[valid, "churn_probability"] = probabilities
    out.loc[valid, "churn_label"] = labels
    out.loc[valid, "prediction_id"] = ids
    out["model_version"] = version
    problems: dict[int, list[str]] = {}
    for issue in report.issues:
        if issue.row is not None:
            problems.setdefault(issue.row, []).append(f"{issue.column}: {issue.reason}")
    out["issues"] = ["; ".join(problems.get(i, [])) for i in range(len(out))]
    return BatchResult(
        out, scored=int(valid.sum()), skipped=int((~valid).sum()), model_version=version
    )


def template_csv() -> bytes:
    """A two-row example file (a loyal customer and a churner) in the modeldata spelling."""
    return pd.DataFrame([EXAMPLE_LOYAL, EXAMPLE_CHURNER]).to_csv(index=False).encode("utf-8")


def validate(content: bytes) -> tuple[pd.DataFrame, ValidationReport]:
    """Read and validate an upload (raises :class:`CsvReadError`)."""
    original = read_csv(content)
    return original, validate_frame(original)
