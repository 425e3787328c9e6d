"""Batch: upload a table (CSV/TSV, workbook, JSON; any spelling), see what was read and per-row
issues, score, download with every uploaded column kept."""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from core.tables import FILE_TYPES, Table, TableError
from ui.batch_scoring import BatchResult, issues_table, score, template_csv, validate
from ui.client import ApiError
from ui.components import keyed_client, pct, show_api_error

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


def _show_result(name: str, result: BatchResult) -> None:
    frame = result.frame
    scored = frame["churn_probability"].notna()
    cols = st.columns(4)
    cols[0].metric("Rows scored", f"{result.scored:,}")
    cols[1].metric("Rows skipped (invalid)", f"{result.skipped:,}")
    cols[2].metric("Predicted churners", f"{int((frame['churn_label'] == 'yes').sum()):,}")
    cols[3].metric(
        "Mean churn probability",
        pct(frame.loc[scored, "churn_probability"].mean() if scored.any() else None),
    )
    st.caption(f"Model version {result.model_version}")
    st.dataframe(frame.head(100), hide_index=True, key="batch_preview_scored")
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
    if report.issues:
        issues = issues_table(report)
        whole = issues[issues["row"].isna()]
        if not whole.empty:
            st.error(
                "The file cannot be scored: "
                + "; ".join(f"{r.column}: {r.reason}" for r in whole.itertuples())
            )
        else:
            st.warning(
                f"{len(issues):,} issue(s) in {len(original) - valid:,} row(s); those rows are "
                "skipped and keep their reason in the `issues` column of the scored file."
            )
        st.dataframe(
            issues.head(1000).astype({"row": "Int64"}), hide_index=True, key="batch_issues"
        )
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
