"""Batch scoring logic behind the Batch page: read, validate, chunk, merge (no Streamlit here).

The upload is read by :func:`core.tables.read_table`, the reader the API and the CLI use: CSV/TSV
in any separator, decimal mark and encoding, workbooks and JSON; names and values in any known
spelling; every bad row is reported before anything is sent. Valid rows go to
``POST /predict/batch`` as JSON in chunks (so a large file shows progress and stays under the API's
batch limit); the scored file is the uploaded table as read (every column kept, ids included) with
the results appended, invalid rows keeping their validation message, written back with the
upload's separator and decimal mark.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL, FEATURES, ValidationReport
from core.tables import Dialect, Table, read_table, with_results, write_like
from ui.client import ApiClient

CHUNK_ROWS = 1000


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
    dialect: Dialect = Dialect("text", "UTF-8", ",", ".")

    def to_csv(self) -> bytes:
        """The scored table as CSV bytes for the download button (see
        :func:`core.tables.write_like`: the upload's separator and decimal mark)."""
        return write_like(self.frame, self.dialect)


def score(
    api: ApiClient,
    table: Table,
    on_progress: Callable[[int, int], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> BatchResult:
    """Score the valid rows in chunks and append the results to a copy of the uploaded table.

    Args:
        api: the API client (``ApiError`` propagates to the caller).
        table: the upload as read (its columns, ids and spelling are kept in the output).
        on_progress: called with (rows done, rows total) after each chunk.
        chunk_rows: rows per ``POST /predict/batch`` call.
    """
    report = table.report
    todo = records(report)
    probabilities: list[float] = []
    labels: list[str] = []
    ids: list[str] = []
    version = ""
    for part in chunks(todo, chunk_rows):
        answer = api.predict_batch(part)
        answered = sorted(answer.get("results", []), key=lambda r: int(r.get("row", 0)))
        if len(answered) != len(part):
            raise ValueError(f"the API scored {len(answered)} of {len(part)} rows")
        version = str(answer.get("model_version", version))
        probabilities += [float(r["churn_probability"]) for r in answered]
        labels += [str(r.get("label", "")) for r in answered]
        ids += [str(r.get("prediction_id", "")) for r in answered]
        if on_progress is not None:
            on_progress(len(probabilities), len(todo))
    valid = np.asarray(report.valid_rows, dtype=bool)
    results: dict[str, Any] = {
        "churn_probability": np.full(len(valid), np.nan),
        "churn_label": np.full(len(valid), None, dtype=object),
        "prediction_id": np.full(len(valid), None, dtype=object),
        "model_version": version,
    }
    results["churn_probability"][valid] = probabilities
    results["churn_label"][valid] = labels
    results["prediction_id"][valid] = ids
    problems: dict[int, list[str]] = {}
    for issue in report.issues:
        if issue.row is not None:
            problems.setdefault(issue.row, []).append(f"{issue.column}: {issue.reason}")
    results["issues"] = ["; ".join(problems.get(i, [])) for i in range(len(valid))]
    out = with_results(table.source, results)
    return BatchResult(
        out,
        scored=int(valid.sum()),
        skipped=int((~valid).sum()),
        model_version=version,
        dialect=table.dialect,
    )


def template_csv() -> bytes:
    """A two-row example file (a loyal customer and a churner) in the modeldata spelling."""
    return pd.DataFrame([EXAMPLE_LOYAL, EXAMPLE_CHURNER]).to_csv(index=False).encode("utf-8")


def validate(content: bytes, filename: str | None = None) -> Table:
    """Read and validate an upload (raises :class:`core.tables.TableError`)."""
    return read_table(content, filename=filename)
