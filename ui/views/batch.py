"""Batch: upload a table (CSV/TSV, workbook, JSON; any spelling), see what was read and per-row
issues, score, download with every uploaded column kept."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core.tables import FILE_TYPES, Table, TableError
from ui.batch_scoring import (
    ROW_NUMBERING,
    BatchResult,
    file_issues,
    issues_table,
    score,
    template_csv,
    validate,
)
from ui.client import ApiError
from ui.components import keyed_client, num, pct, show_api_error

#: The scored columns, shown first in the preview (the file keeps the upload's order).
RESULT_COLUMNS = ("churn_probability", "churn_label", "issues", "prediction_id", "model_version")

STATE_RESULT = "batch_result"
STATE_PENDING = "batch_pending"


def _score(original_name: str, digest: str, table: Table) -> None:
    """Score with a progress bar; keep the result in session state for this file."""
    progress = st.progress(0.0, text="Scoring…")

    def on_progress(done: int, total: int) -> None:
        progress.progress(done / max(total, 1), text=f"Scored {done:,} of {total:,} rows")

    try:
        result = score(keyed_client(), table, on_progress)
    except ApiError as err:
        progress.empty()
        show_api_error(err, "score the file")
        return
    except ValueError as err:
        progress.empty()
        st.error(f"Scoring failed: {err}")
        return
    progress.progress(1.0, text=f"Scored {result.scored:,} rows")
    st.session_state[STATE_RESULT] = (digest, original_name, result)
    st.session_state.pop(STATE_PENDING, None)


def _histogram(probabilities: pd.Series, threshold: float | None) -> Any:
    """Churn probabilities in 20 bins of 5 %, with the model's threshold as a vertical rule."""
    import altair as alt  # pylint: disable=import-outside-toplevel  # loaded with a result only

    data = pd.DataFrame({"churn_probability": probabilities.astype(float)})
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X(
                "churn_probability:Q",
                bin=alt.Bin(extent=[0, 1], step=0.05),
                title="churn probability",
                axis=alt.Axis(format="%"),
            ),
            y=alt.Y("count():Q", title="customers"),
        )
    )
    if threshold is None:
        return bars.properties(height=220)
    rule = (
        alt.Chart(pd.DataFrame({"threshold": [threshold]}))
        .mark_rule(color="#d62728", strokeWidth=2)
        .encode(x="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", format=".1%")])
    )
    return (bars + rule).properties(height=220)


def _labelled(report: dict[str, Any]) -> None:
    """The API's report of the labelled rows: figures with n and intervals, confusion matrix."""
    quality = report.get("quality") or {}
    n = int(quality.get("n") or 0)
    st.subheader("Quality on the labelled rows the model never trained on")
    st.caption(
        f"From the API, on the {n:,} labelled rows the model never trained on "
        f"({int(report.get('seen') or 0):,} it was trained on left out). {report.get('note', '')}"
    )
    if not report.get("enough_rows"):
        st.warning("Too few rows to judge the model on: read the intervals, not the figures.")
    level = f"{float(quality.get('confidence') or 0.95):.0%}".replace("%", " %")
    cols = st.columns(4)
    for col, (name, title, of) in zip(
        cols,
        (
            ("f1", "F1", "churners or predicted to churn"),
            ("precision", "Precision", "predicted to churn"),
            ("recall", "Recall", "churners"),
            ("accuracy", "Accuracy", "rows"),
        ),
    ):
        figure = quality.get(name) or {}
        col.metric(title, pct(figure.get("value")))
        low, high = figure.get("low"), figure.get("high")
        interval = f"{level} CI {pct(low)}–{pct(high)}" if low is not None else "no interval"
        size = figure.get("n")  # each proportion's own denominator (the API gives it)
        col.caption(f"{interval} · n = {int(n if size is None else size):,} {of}")
    confusion = report.get("confusion") or {}
    matrix = pd.DataFrame(
        {
            "predicted churn": [
                confusion.get("true_positives"),
                confusion.get("false_positives"),
            ],
            "predicted stay": [
                confusion.get("false_negatives"),
                confusion.get("true_negatives"),
            ],
        },
        index=["churned", "stayed"],
    )
    st.markdown("**Confusion matrix** (rows: true outcome)")
    st.dataframe(matrix, key="batch_confusion")


def _show_result(name: str, result: BatchResult) -> None:
    frame = result.frame
    scored = frame["churn_probability"].notna()
    churners = int((frame["churn_label"] == "yes").sum())
    cols = st.columns(4)
    cols[0].metric("Rows scored", f"{result.scored:,}")
    cols[1].metric("Rows skipped (invalid)", f"{result.skipped:,}")
    cols[2].metric("Predicted to churn", pct(churners / result.scored if result.scored else None))
    cols[3].metric(
        "Mean churn probability",
        pct(frame.loc[scored, "churn_probability"].mean() if scored.any() else None),
    )
    threshold = "" if result.threshold is None else f", threshold {num(result.threshold, 3)}"
    st.caption(
        f"{churners:,} of n = {result.scored:,} scored rows predicted to churn · model version "
        f"{result.model_version}{threshold}"
    )
    st.markdown("**Churn probabilities** (red line: the threshold)")
    st.altair_chart(_histogram(frame.loc[scored, "churn_probability"], result.threshold))
    if result.labelled is not None:
        _labelled(result.labelled)
    elif result.labelled_missing:
        st.info(result.labelled_missing)
    first = [c for c in RESULT_COLUMNS if c in frame.columns]
    preview = frame[first + [c for c in frame.columns if c not in first]]
    st.dataframe(preview.head(100), hide_index=True, key="batch_preview_scored")
    st.download_button(
        "Download scored CSV",
        data=result.to_csv(),
        file_name=f"{Path(name).stem}-scored.csv",
        mime="text/csv",
        type="primary",
        key="batch_download",
        on_click="ignore",
    )


def main() -> None:
    """Draw the page."""
    st.title("Batch scoring")
    st.caption(
        "Upload customers as CSV/TSV (any separator, decimal mark and encoding: Excel's "
        "exports too), a workbook (.xlsx) or JSON, in the modeldata spelling (`account_length`, "
        "`area_code_415`) or the BigML one (`Account length`, `415`, `Yes`/`No`). Rows are "
        "checked before sending; other columns (ids...) come back unchanged in the scored file."
    )
    st.download_button(
        "Download a template CSV",
        data=template_csv(),
        file_name="churn-template.csv",
        mime="text/csv",
        key="batch_template",
        on_click="ignore",
    )
    upload = st.file_uploader("Customers table", type=list(FILE_TYPES), key="batch_file")
    if upload is None:
        st.session_state.pop(STATE_RESULT, None)
        return
    content = upload.getvalue()
    digest = hashlib.sha256(content).hexdigest()
    try:
        table = validate(content, upload.name)
    except TableError as err:
        st.error(f"Cannot read `{upload.name}`: {err}")
        return
    report, original = table.report, table.source
    st.caption(f"`{upload.name}`: {table.read_as}")
    for warning in table.warnings:
        st.warning(warning, icon=":material/info:")

    valid = int(report.valid_rows.sum())
    cols = st.columns(3)
    cols[0].metric("Rows", f"{len(original):,}")
    cols[1].metric("Valid rows", f"{valid:,}")
    cols[2].metric("Issues", f"{len(report.issues):,}")
    with st.expander("Preview of the upload", expanded=False):
        st.dataframe(original.head(20), hide_index=True, key="batch_preview_upload")
    whole = file_issues(report)
    if whole:  # not a customer table: one list of what is missing, no per-row table
        st.error(
            "The file cannot be scored (is it a customer table?):\n\n"
            + "\n".join(f"- {line}" for line in whole)
        )
        return
    issues = issues_table(report)
    if not issues.empty:
        where = (
            "those rows are skipped and keep their reason in the `issues` column of the scored "
            "file."
            if valid
            else "no row can be scored: fix the rows listed below and upload the file again."
        )
        st.warning(f"{len(issues):,} issue(s) in {len(original) - valid:,} row(s); {where}")
        st.caption(f"Row numbers: {ROW_NUMBERING}.")
        st.dataframe(issues.head(1000), hide_index=True, key="batch_issues")
    if valid == 0:
        return

    held = st.session_state.get(STATE_RESULT)
    if held is not None and held[0] != digest:
        st.session_state.pop(STATE_RESULT)
        held = None
    if st.button(f"Score {valid:,} valid rows", type="primary", key="batch_score"):
        st.session_state[STATE_PENDING] = digest
        held = None
    if held is None and st.session_state.get(STATE_PENDING) == digest:
        _score(upload.name, digest, table)  # kept pending on failure: Retry re-runs it
        held = st.session_state.get(STATE_RESULT)
    if held is not None:
        _show_result(held[1], held[2])


main()
