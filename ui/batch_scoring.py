"""Batch scoring logic behind the Batch page: read, validate, chunk, merge (no Streamlit here).

The upload is read by :func:`core.tables.read_table`, the reader the API and the CLI use: CSV/TSV
in any separator, decimal mark and encoding, workbooks and JSON; names and values in any known
spelling; every bad row is reported before anything is sent. Valid rows go to
``POST /predict/batch`` as JSON in chunks (so a large file shows progress and stays under the API's
batch limit); the scored file is the uploaded table as read (every column kept, ids included) with
the results appended, invalid rows keeping their validation message, written back with the
upload's separator and decimal mark.

A file with a label column is sent with its label (a ``churn`` field) in one request when it fits
the API's batch limit, so the API's report of the labelled rows (:mod:`core.labelled`, the one
implementation) covers the whole file; a larger labelled file is scored in chunks without it.

Rows are numbered as the API numbers them: 0 is the first data row (:data:`ROW_NUMBERING`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL, FEATURES, TARGET, YES_NO, ValidationReport
from core.tables import Dialect, Table, read_table, with_results, write_like
from ui.client import ApiClient

CHUNK_ROWS = 1000
#: The API's batch limit (``POST /predict/batch`` documents ``maxItems``): a labelled file up to
#: this size is sent in one request, so the API's labelled report covers all of it.
API_MAX_ROWS = 10_000
#: How the page numbers rows, as the API and :mod:`core.schema` do.
ROW_NUMBERING = "rows are numbered from 0 (the first data row, under the header), as the API does"


def issues_table(report: ValidationReport) -> pd.DataFrame:
    """The issues of single rows (``row``: 0-based, as the API numbers them; see
    :func:`file_issues` for those of the whole file)."""
    return pd.DataFrame(
        [
            {"row": issue.row, "column": issue.column, "reason": issue.reason}
            for issue in report.issues
            if issue.row is not None
        ],
        columns=["row", "column", "reason"],
    ).astype({"row": "Int64"})


def file_issues(report: ValidationReport) -> list[str]:
    """The issues of the whole file (no row), one line per reason naming every column, e.g.
    ``missing column: state, area_code``; empty when the file is a customer table."""
    columns: dict[str, list[str]] = {}
    for issue in report.issues:
        if issue.row is None and issue.column not in columns.setdefault(issue.reason, []):
            columns[issue.reason].append(issue.column)
    return [f"{reason}: {', '.join(names)}" for reason, names in columns.items()]


def records(report: ValidationReport, labels: pd.Series | None = None) -> list[dict[str, Any]]:
    """The valid rows as JSON-ready customers (integers as ints, categories as strings), with the
    label as a ``churn`` field when ``labels`` (the table's label column, one per row) is given."""
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
    if labels is not None:
        valid = np.asarray(report.valid_rows, dtype=bool)
        for row, outcome in zip(out, np.asarray(labels, dtype=object)[valid].tolist()):
            row[TARGET] = outcome if outcome in YES_NO else None
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
    threshold: float | None = None
    labelled: dict[str, Any] | None = None
    labelled_missing: str | None = None

    def to_csv(self) -> bytes:
        """The scored table as CSV bytes for the download button (see
        :func:`core.tables.write_like`: the upload's separator and decimal mark)."""
        return write_like(self.frame, self.dialect)


@dataclass
class _Sent:
    """What the API answered for the rows sent, in their order."""

    probabilities: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    version: str = ""
    threshold: float | None = None
    labelled: dict[str, Any] | None = None


def _send(
    api: ApiClient,
    todo: list[dict[str, Any]],
    size: int,
    on_progress: Callable[[int, int], None] | None,
) -> _Sent:
    """``POST /predict/batch`` the rows in chunks of ``size``; the answers merged in order."""
    sent = _Sent()
    for part in chunks(todo, size):
        answer = api.predict_batch(part)
        if answer.get("threshold") is not None:
            sent.threshold = float(answer["threshold"])
        sent.labelled = answer.get("labelled") or sent.labelled
        answered = sorted(answer.get("results", []), key=lambda r: int(r.get("row", 0)))
        if len(answered) != len(part):
            raise ValueError(f"the API scored {len(answered)} of {len(part)} rows")
        sent.version = str(answer.get("model_version", sent.version))
        sent.probabilities += [float(r["churn_probability"]) for r in answered]
        sent.labels += [str(r.get("label", "")) for r in answered]
        sent.ids += [str(r.get("prediction_id", "")) for r in answered]
        if on_progress is not None:
            on_progress(len(sent.probabilities), len(todo))
    return sent


def _labels(table: Table) -> tuple[pd.Series | None, bool, str | None]:
    """``(outcomes to send, in one request, why there will be no report)``: the label column
    when the table has one and its valid rows fit in one request of the API."""
    frame = table.labelled_frame()
    if TARGET not in frame.columns:
        return None, False, None
    valid = int(table.report.valid_rows.sum())
    if valid > API_MAX_ROWS:
        return (
            None,
            False,
            (
                f"The file has a label column, but its {valid:,} valid rows are more than the API "
                f"scores in one request ({API_MAX_ROWS:,}): no quality report."
            ),
        )
    return frame[TARGET], True, None


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
    outcomes, whole, missing = _labels(table)
    todo = records(report, outcomes)
    sent = _send(api, todo, len(todo) if whole else chunk_rows, on_progress)
    valid = np.asarray(report.valid_rows, dtype=bool)
    results: dict[str, Any] = {
        "churn_probability": np.full(len(valid), np.nan),
        "churn_label": np.full(len(valid), None, dtype=object),
        "prediction_id": np.full(len(valid), None, dtype=object),
        "model_version": sent.version,
    }
    results["churn_probability"][valid] = sent.probabilities
    results["churn_label"][valid] = sent.labels
    results["prediction_id"][valid] = sent.ids
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
        model_version=sent.version,
        dialect=table.dialect,
        threshold=sent.threshold,
        labelled=sent.labelled,
        labelled_missing=missing,
    )


def template_csv() -> bytes:
    """A two-row example file (a loyal customer and a churner) in the modeldata spelling."""
    return pd.DataFrame([EXAMPLE_LOYAL, EXAMPLE_CHURNER]).to_csv(index=False).encode("utf-8")


def validate(content: bytes, filename: str | None = None) -> Table:
    """Read and validate an upload (raises :class:`core.tables.TableError`)."""
    return read_table(content, filename=filename)
