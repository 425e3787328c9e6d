"""Retrain: start a retrain with the API key, follow its progress live, see the gate's decision."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.tables import FILE_TYPES
from ui.client import ApiError
from ui.components import KEY_STATE, keyed_client, num, show_api_error

STATE_JOB = "retrain_job"
TERMINAL = frozenset({"succeeded", "failed"})
POLL_SECONDS = 1.0


def _start() -> None:
    st.subheader("Start a retrain")
    st.caption(
        "Trains a challenger on the stored data (or on an uploaded table), evaluates it on the "
        "holdout and promotes it only if the gate accepts it. Needs the API's admin key. An "
        "upload is checked whole before the job starts: every reason it cannot be trained on "
        "is shown."
    )
    upload = st.file_uploader(
        "Optional training table with a churn column (CSV/TSV, workbook)",
        type=list(FILE_TYPES),
        key="retrain_file",
    )
    drop = st.checkbox(
        "Train on the valid rows only (drop invalid rows instead of refusing the file)",
        key="retrain_drop_invalid",
    )
    if not st.button("Start retrain", type="primary", key="retrain_start"):
        return
    if not st.session_state.get(KEY_STATE):
        st.warning("Retraining needs the admin key (API_KEY): enter it in the sidebar (API key).")
        return
    csv = upload.getvalue() if upload is not None else None
    name = upload.name if upload is not None else "data.csv"
    try:
        job_id = keyed_client().start_retrain(csv, name, drop_invalid_rows=drop)
    except ApiError as err:
        if err.status == 409:
            st.warning(f"A retrain is already running: {err.message}")
        else:
            show_api_error(err, "start the retrain", retry=False)
        return
    st.session_state[STATE_JOB] = job_id


def _decision(result: dict[str, Any]) -> None:
    st.subheader("Gate decision")
    promoted = result.get("promoted")
    reason = str(result.get("reason") or "no reason given")
    if promoted is None:
        st.info(f"Trained, but no promotion gate ran. {reason}")
    elif promoted:
        st.success(f"Promoted to champion. {reason}", icon=":material/check_circle:")
    else:
        st.warning(f"Not promoted; the champion stays. {reason}", icon=":material/block:")
    metric = str(result.get("gate_metric") or "score")
    cols = st.columns(4)
    version = result.get("model_version", result.get("version"))
    cols[0].metric("New version", str(version) if version is not None else "—")
    cols[1].metric(f"New model {metric}", num(result.get("challenger_score"), 4))
    cols[2].metric(f"Champion {metric}", num(result.get("champion_score"), 4))
    cols[3].metric("Rows compared", num(result.get("compared_rows"), 0))
    st.caption(_compared(result))
    with st.expander("Full result"):
        st.json(result)


def _compared(result: dict[str, Any]) -> str:
    """What the two scores were measured on, and the new model's figures on its own holdout."""
    own = (
        f"On its own holdout the new model has F1 {num(result.get('f1'), 4)} and ROC AUC "
        f"{num(result.get('roc_auc'), 4)}."
    )
    rows = result.get("compared_rows")
    if rows is None:
        return own
    excluded = int(result.get("excluded_rows") or 0)
    left_out = f" ({excluded} rows a model was trained on were left out)" if excluded else ""
    return (
        f"Both scores are on the same {rows} holdout rows, {result.get('compared_churners')} of "
        f"them churners, that neither model was trained on{left_out}. {own}"
    )


def _status(job_id: str) -> None:
    """Show the job; when it is over, rerun the page once so polling stops."""
    try:
        job = keyed_client().retrain_status(job_id)
    except ApiError as err:
        show_api_error(err, "read the retrain status")
        return
    status = str(job.get("status", "unknown"))
    progress = [p for p in job.get("progress") or [] if isinstance(p, dict)]
    fraction = float(progress[-1].get("fraction", 0.0)) if progress else 0.0
    step = str(progress[-1].get("step", "")) if progress else "queued"
    if status == "succeeded":
        fraction = 1.0
    st.markdown(f"**Job** `{job_id}` — status **{status}**")
    st.progress(min(max(fraction, 0.0), 1.0), text=f"{step} ({fraction:.0%})")
    if progress:
        with st.expander("Steps", expanded=status not in TERMINAL):
            st.dataframe(pd.DataFrame(progress), hide_index=True, key="retrain_steps")
    if status == "failed":
        st.error(f"The retrain failed: {job.get('error') or 'no error message'}")
    result = job.get("result")
    if status == "succeeded" and isinstance(result, dict):
        _decision(result)
    if status in TERMINAL and st.session_state.get("retrain_polling"):
        st.session_state["retrain_polling"] = False
        st.rerun()  # the whole page, so the polling fragment below is drawn without run_every


def main() -> None:
    """Draw the page."""
    st.title("Retrain")
    _start()
    with st.expander("Follow another job"):
        typed = st.text_input("Job id", key="retrain_job_input").strip()
        if st.button("Follow", key="retrain_follow") and typed:
            st.session_state[STATE_JOB] = typed
            st.session_state["retrain_polling"] = True
    job_id = st.session_state.get(STATE_JOB)
    if not job_id:
        return
    st.subheader("Progress")
    polling = st.session_state.setdefault("retrain_polling", True)
    if st.session_state.get("retrain_last_job") != job_id:
        st.session_state["retrain_last_job"] = job_id
        st.session_state["retrain_polling"] = polling = True
    st.fragment(run_every=POLL_SECONDS if polling else None)(_status)(job_id)


main()
