"""History: stored predictions with filters, volume and churn rate over time, and feedback."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import pandas as pd
import streamlit as st

from core.schema import FEATURE_NAMES
from ui.client import ApiClient, ApiError
from ui.components import keyed_client, fetch, pct, show_api_error, time_chart

PAGE_ROWS = 500
SAVED = "history_feedback_saved"
LIMITS = (100, 500, 1000, 2000, 5000)


def _versions(api: ApiClient) -> list[str]:
    try:
        return [str(v.get("version")) for v in api.model_versions() if v.get("version") is not None]
    except ApiError:
        return []  # the filter still works as "all"; the main fetch below reports the outage


def _load(api: ApiClient, limit: int, filters: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Fetch up to ``limit`` predictions page by page (newest first as the API orders them)."""
    items: list[dict[str, Any]] = []
    total = 0
    while len(items) < limit:
        size = min(PAGE_ROWS, limit - len(items))
        page = api.predictions(limit=size, offset=len(items), **filters)
        batch = [i for i in page.get("items", []) if isinstance(i, dict)]
        total = int(page.get("total", len(batch)))
        items += batch
        if len(batch) < size or len(items) >= total:
            break
    return items, total


def _filters() -> tuple[int, dict[str, Any]]:
    api = keyed_client()
    today = datetime.now(timezone.utc).date()
    cols = st.columns([2, 1, 1, 1])
    period = cols[0].date_input(
        "Period (UTC)", value=(today - timedelta(days=7), today), key="history_period"
    )
    label = cols[1].selectbox(
        "Predicted label",
        ["all", "yes", "no"],
        key="history_label",
        format_func=lambda v: {"all": "All", "yes": "Churn", "no": "Stay"}[v],
    )
    version = cols[2].selectbox("Model version", ["all", *_versions(api)], key="history_version")
    limit = cols[3].selectbox("Rows to load", LIMITS, index=1, key="history_limit")
    start, end = _period_bounds(period, today)
    filters: dict[str, Any] = {
        "since": start.isoformat(),
        "until": end.isoformat(),
        "label": None if label == "all" else label,
        "model_version": None if version == "all" else version,
    }
    return int(limit), filters


def _period_bounds(period: Any, today: date) -> tuple[datetime, datetime]:
    """The [since, until) datetimes of a date-range picker value (a single date = that day)."""
    if isinstance(period, (tuple, list)):
        first = period[0] if period else today
        last = period[1] if len(period) > 1 else first
    else:
        first = last = period or today
    since = datetime.combine(first, time.min, tzinfo=timezone.utc)
    until = datetime.combine(last, time.min, tzinfo=timezone.utc) + timedelta(days=1)
    return since, until


def _frame(items: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per prediction: what was answered, then the customer's 19 fields."""
    columns = ["created_at", "churn_probability", "label", "actual", "model_version", "latency_ms"]
    frame = pd.DataFrame(items)
    if "probability" in frame.columns and "churn_probability" not in frame.columns:
        frame = frame.rename(columns={"probability": "churn_probability"})
    for name in [*columns, "id", "features"]:
        if name not in frame.columns:
            frame[name] = None
    # naive UTC: what the charts and the table show (the column is labelled UTC)
    frame["created_at"] = pd.to_datetime(
        frame["created_at"], utc=True, errors="coerce"
    ).dt.tz_convert(None)
    frame["churn_probability"] = pd.to_numeric(frame["churn_probability"], errors="coerce")
    customers = pd.DataFrame(
        [f if isinstance(f, dict) else {} for f in frame["features"]], index=frame.index
    )
    customers = customers[[name for name in FEATURE_NAMES if name in customers.columns]]
    return pd.concat([frame[["id", *columns]], customers], axis=1)


def _choice(row: Any) -> str:
    """How one prediction reads in the feedback picker: time to the second, score, label, the
    customer at a glance, and the *end* of its id (UUIDv7 ids made in the same millisecond share
    their first characters, never their last)."""
    customer = []
    for name, unit in (("state", ""), ("account_length", " d"), ("total_day_minutes", " day min")):
        value = getattr(row, name, None)
        if value is not None and not pd.isna(value):
            customer.append(f"{value:g}{unit}" if isinstance(value, float) else f"{value}{unit}")
    return (
        f"{row.created_at:%Y-%m-%d %H:%M:%S} · p={row.churn_probability:.3f} · {row.label} · "
        f"{', '.join(customer)} · …{str(row.id)[-8:]}"
    )


def _charts(frame: pd.DataFrame) -> None:
    span = frame["created_at"].max() - frame["created_at"].min()
    freq, unit = ("h", "hour") if span <= pd.Timedelta(days=3) else ("D", "day")
    grouped = (
        frame.assign(
            bucket=frame["created_at"].dt.floor(freq),
            churn=(frame["label"] == "yes").astype(float),
        )
        .groupby("bucket")
        .agg(predictions=("id", "size"), churn_rate=("churn", "mean"))
        .reset_index()
    )
    cols = st.columns(2)
    with cols[0]:
        st.markdown(f"**Predictions per {unit}**")
        st.altair_chart(
            time_chart(grouped, "bucket", ["predictions"], title="predictions", bar=True)
        )
    with cols[1]:
        st.markdown(f"**Predicted churn rate per {unit}**")
        st.altair_chart(time_chart(grouped, "bucket", ["churn_rate"], title="churn rate"))


def _feedback(frame: pd.DataFrame) -> None:
    st.subheader("Enter the true outcome")
    st.caption("Feedback turns into live accuracy on the Monitoring page.")
    options = frame["id"].dropna().astype(str).tolist()
    if not options:
        return
    shown = {str(r.id): _choice(r) for r in frame.itertuples() if r.id is not None}
    with st.form("history_feedback_form"):
        cols = st.columns([3, 1, 1])
        prediction_id = cols[0].selectbox(
            "Prediction", options, key="history_feedback_id", format_func=lambda i: shown.get(i, i)
        )
        actual = cols[1].radio(
            "Actually churned?", ["yes", "no"], key="history_feedback_actual", horizontal=True
        )
        sent = cols[2].form_submit_button("Save feedback", key="history_feedback_submit")
    if sent and prediction_id:
        try:
            keyed_client().feedback(str(prediction_id), str(actual))
        except ApiError as err:
            show_api_error(err, "save the feedback", retry=False)
        else:  # reload the page so the table and the figures above show the saved outcome
            st.session_state[SAVED] = (
                f"Saved: prediction …{str(prediction_id)[-8:]} actually churned = {actual}."
            )
            st.rerun()
    if SAVED in st.session_state:
        st.success(st.session_state.pop(SAVED))


def main() -> None:
    """Draw the page."""
    st.title("Prediction history")
    limit, filters = _filters()
    api = keyed_client()
    loaded = fetch("load the predictions", lambda: _load(api, limit, filters))
    if loaded is None:
        return
    items, total = loaded
    if not items:
        st.info("No prediction matches these filters yet. Score a customer on the Predict page.")
        return
    frame = _frame(items)
    cols = st.columns(4)
    cols[0].metric("Matching predictions", f"{total:,}")
    cols[1].metric("Loaded", f"{len(frame):,}")
    cols[2].metric("Predicted churn rate", pct((frame["label"] == "yes").mean()))
    with_feedback = frame["actual"].notna()
    agree = (frame.loc[with_feedback, "actual"] == frame.loc[with_feedback, "label"]).mean()
    labelled = int(with_feedback.sum())
    cols[3].metric(
        "Accuracy on feedback",
        f"{pct(agree)} (n = {labelled})" if labelled else "—",
        help=f"{labelled} loaded prediction(s) have feedback: the sample size of this figure",
    )
    _charts(frame)
    st.dataframe(
        frame,
        hide_index=True,
        key="history_table",
        column_config={
            "churn_probability": st.column_config.ProgressColumn(
                "churn probability", min_value=0.0, max_value=1.0, format="percent"
            ),
            "created_at": st.column_config.DatetimeColumn("time (UTC)"),
        },
    )
    _feedback(frame)


main()
