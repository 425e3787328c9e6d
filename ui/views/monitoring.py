"""Monitoring: estimated and realized model quality, traffic and latency, drift, host metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from core.schema import SPECS
from core.settings import get_settings
from ui.client import ApiClient, ApiError
from ui.components import keyed_client, fetch, num, pct, show_api_error, time_chart
from ui.form import label
from ui.links import kibana_dashboard

WINDOWS = {1: "last hour", 6: "last 6 hours", 24: "last 24 hours", 168: "last 7 days"}


def _optional(what: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """A section whose data may not exist yet: a 404 is a hint, not an error."""
    try:
        return call()
    except ApiError as err:
        if err.status == 404:
            st.info(err.message[:1].upper() + err.message[1:])
        else:
            show_api_error(err, what)
        return None


FIGURES = (("f1", "F1"), ("precision", "Precision"), ("recall", "Recall"), ("accuracy", "Accuracy"))


def _interval(figure: dict[str, Any] | None, confidence: float) -> str:
    """``95 % CI 70.1 %–93.2 %``; says so when the figure is undefined (0/0) or has no interval."""
    if not figure or figure.get("value") is None:
        return "undefined (0/0)"
    if figure.get("low") is None or figure.get("high") is None:
        return "no interval"
    level = f"{confidence:.0%}".replace("%", " %")
    return f"{level} CI {pct(figure['low'])}–{pct(figure['high'])}"


def _when(stamp: Any) -> str:
    """``2025-01-03 12:00 UTC`` from an ISO time; ``—`` when missing or unreadable."""
    found = pd.to_datetime(stamp, utc=True, errors="coerce") if stamp else pd.NaT
    return "—" if pd.isna(found) else f"{found:%Y-%m-%d %H:%M} UTC"


def _cells(found: dict[str, Any] | None, name: str) -> tuple[str, str]:
    """The value and interval of one figure, as text (``—`` when there is nothing)."""
    if found is None:
        return "—", "—"
    figure = found.get(name) or {}
    return pct(figure.get("value")), _interval(figure, float(found.get("confidence") or 0.95))


def _side(column: Any, title: str, found: dict[str, Any] | None, rows: str, missing: str) -> None:
    """One side of the comparison: the F1 with its interval and sample size."""
    if found is None:
        column.metric(title, "—")
        column.caption(missing)
        return
    f1 = found.get("f1") or {}
    column.metric(title, pct(f1.get("value")))
    column.caption(
        f"{_interval(f1, float(found.get('confidence') or 0.95))} · n = {int(found['n']):,} {rows}"
    )


def _kibana(key: str) -> None:
    """A link to the Kibana dashboard of this section (nothing without ``KIBANA_URL``)."""
    url = kibana_dashboard(get_settings(), key)
    if url:
        st.link_button(f"Kibana: {key.replace('-', ' ')} dashboard", url, key=f"kibana_{key}")


def _live(api: ApiClient) -> None:
    st.subheader("Model quality: estimated and realized")
    _kibana("model-metrics")
    live = fetch("read the live quality", api.live_metrics)
    if live is None:
        return
    window = live.get("window") or {}
    hours = float(window.get("hours") or 0)
    span = f"{hours / 24:g} days" if hours % 24 == 0 else f"{hours:g} hours"
    # The realized side counts every labelled prediction; only the estimate may read fewer.
    limited = (
        f" The estimate uses the newest {int(window.get('estimated_on') or 0):,} of them."
        if window.get("limited")
        else ""
    )
    st.caption(
        f"Predictions of the last {span} ({_when(window.get('start'))} to "
        f"{_when(window.get('end'))}): "
        f"{int(window.get('predictions') or 0):,}, of which "
        f"{int(window.get('labelled') or 0):,} with feedback.{limited}"
    )
    estimated, realized = live.get("estimated"), live.get("realized")
    cols = st.columns(2)
    _side(
        cols[0],
        "Estimated F1 (CBPE, before labels)",
        estimated,
        "predictions",
        "No prediction in this window.",
    )
    _side(
        cols[1],
        "Realized F1 (from feedback)",
        realized,
        "labelled",
        "No feedback yet: enter true outcomes on the History page.",
    )
    table = pd.DataFrame(
        [
            {
                "metric": title,
                **dict(zip(("estimated", "estimated interval"), _cells(estimated, name))),
                **dict(zip(("realized", "realized interval"), _cells(realized, name))),
            }
            for name, title in FIGURES
        ]
    )
    st.dataframe(table, hide_index=True, key="monitoring_quality_table")
    st.caption(
        "Estimated: confidence-based performance estimation (CBPE) from the calibrated "
        "probabilities of every prediction in the window; the interval is where the realized "
        "value should fall once labels arrive. Realized: the served labels against the true "
        "outcomes fed back, with Wilson score intervals. A figure is — when it is undefined "
        "(e.g. precision with no churn predicted)."
    )


def _latencies(summary: dict[str, Any]) -> None:
    """Latency p50/p95 of single predictions (ms) and of batches (ms per row), apart: a batch's
    rows would otherwise swamp the single predictions."""
    kinds = summary.get("latency_by_kind")
    if not kinds:  # the Elasticsearch summary does not split them
        latency = summary.get("latency_ms") or {}
        both = st.columns(2)
        both[0].metric("Latency p50", f"{num(latency.get('p50'), 2)} ms")
        both[1].metric("Latency p95", f"{num(latency.get('p95'), 2)} ms")
        return
    cols = st.columns(4)
    for i, (kind, title, unit) in enumerate(
        (("single", "Single", "ms"), ("batch", "Batch", "ms/row"))
    ):
        found = kinds.get(kind) or {}
        cols[2 * i].metric(f"{title} latency p50", f"{num(found.get('p50'), 2)} {unit}")
        cols[2 * i + 1].metric(f"{title} latency p95", f"{num(found.get('p95'), 2)} {unit}")
    single, batch = kinds.get("single") or {}, kinds.get("batch") or {}
    st.caption(
        f"Single: n = {int(single.get('requests') or 0):,} predictions, server time of each. "
        f"Batch: n = {int(batch.get('requests') or 0):,} batch requests, time per row of each "
        "(a batch counts once, however many rows it holds)."
    )


def _traffic(api: ApiClient) -> None:
    st.subheader("Traffic and latency")
    _kibana("predictions")
    hours = st.columns(4)[0].selectbox(
        "Window", list(WINDOWS), index=2, key="monitoring_hours", format_func=WINDOWS.__getitem__
    )
    summary = fetch("read the traffic summary", lambda: api.monitoring_summary(int(hours)))
    if summary is None:
        return
    cols = st.columns(2)
    cols[0].metric("Predictions", f"{int(summary.get('count') or 0):,}")
    cols[1].metric("Predicted churn rate", pct(summary.get("churn_rate")))
    _latencies(summary)
    by_hour = pd.DataFrame(summary.get("by_hour") or [])
    if by_hour.empty:
        st.caption("No prediction in this window.")
        return
    by_hour["hour"] = pd.to_datetime(by_hour["hour"], utc=True, errors="coerce").dt.tz_localize(
        None
    )
    charts = st.columns(3)
    with charts[0]:
        st.markdown("**Predictions per hour**")
        st.altair_chart(time_chart(by_hour, "hour", ["count"], title="predictions", bar=True))
    with charts[1]:
        st.markdown("**Predicted churn rate per hour**")
        st.altair_chart(time_chart(by_hour, "hour", ["churn_rate"], title="churn rate"))
    with charts[2]:
        st.markdown("**Latency per hour (ms)**")
        latency = by_hour.rename(columns={"latency_p50_ms": "p50", "latency_p95_ms": "p95"})
        latency_cols = [c for c in ("p50", "p95") if c in latency.columns]
        if latency_cols:
            st.altair_chart(time_chart(latency, "hour", latency_cols, title="ms"))


TESTS = {
    "ks": "Kolmogorov-Smirnov",
    "z": "z-test",
    "fisher": "Fisher exact",
    "chi2": "chi-squared",
    "chi2_monte_carlo": "chi-squared (Monte Carlo)",
}


def _feature_label(name: Any) -> str:
    """The schema's label of a feature (as the form shows it); the raw name if unknown."""
    return label(SPECS[name]) if name in SPECS else str(name)


def _compute_drift(api: ApiClient) -> None:
    """The "Compute drift now" action (admin key): one run of the drift job in the API."""
    if not st.button(
        "Compute drift now",
        key="monitoring_drift_now",
        help="Run the drift job (as `make drift`) on the recent predictions; needs the admin key.",
    ):
        return
    try:
        with st.spinner("Computing drift on the recent predictions…"):
            found = api.compute_drift()
    except ApiError as err:
        if err.status == 409:
            st.info(f"Nothing to compare yet: {err.message}")
        else:
            show_api_error(err, "compute drift", retry=False)
        return
    st.toast(f"Drift computed on {found.get('current_rows', '—')} recent rows.")


def _drift(api: ApiClient) -> None:
    st.subheader("Data drift per feature")
    _kibana("drift")
    _compute_drift(api)
    drift = _optional("read the drift report", api.monitoring_drift)
    if drift is None:
        return
    features = pd.DataFrame(drift.get("features") or [])
    if features.empty:
        st.info("No drift report yet (it needs recent predictions: **Compute drift now**).")
        return
    features["feature"] = features["feature"].map(_feature_label)
    for name in ("psi", "p_value_adjusted", "test", "drifted"):
        if name not in features.columns:
            features[name] = None
    for name in ("psi", "p_value_adjusted"):
        features[name] = pd.to_numeric(features[name], errors="coerce")
    features["test"] = features["test"].map(TESTS)
    features["drifted"] = features["drifted"].fillna(False).astype(bool)
    features = features.sort_values(["p_value_adjusted", "psi"], ascending=[True, False])
    rows, alpha = drift.get("current_rows", "—"), drift.get("threshold")
    st.caption(
        f"Computed {drift.get('computed_at', '—')} on {rows} recent rows against "
        f"{drift.get('reference_rows', '—')} training rows. Each feature is tested against the "
        "training data (Kolmogorov-Smirnov for numbers, z or Fisher for yes/no, chi-squared for "
        "categories); a feature drifts when its p-value, adjusted for the features tested "
        f"together (Holm), is at most {num(alpha, 2)}, so a report on unchanged data alarms at "
        f"most {pct(alpha)} of the time. PSI is shown for reference only."
    )
    verdict = drift.get("verdict")
    drifted = features.loc[features["drifted"], "feature"].astype(str).tolist()
    if verdict == "not_enough_rows":
        st.info(
            f"Not enough rows for a verdict: {rows} recent rows, at least "
            f"{drift.get('min_rows', '—')} needed."
        )
    elif drifted:
        st.warning(f"Drift detected in {len(drifted)} feature(s): {', '.join(drifted)}")
    else:
        st.success("No feature has drifted.")
    cols = st.columns([3, 2])
    with cols[0]:
        st.altair_chart(_psi_chart(features))
    with cols[1]:
        st.dataframe(
            features[["feature", "test", "p_value_adjusted", "psi", "drifted"]],
            hide_index=True,
            key="monitoring_drift_table",
            column_config={
                "p_value_adjusted": st.column_config.NumberColumn("adjusted p", format="%.3g"),
                "psi": st.column_config.NumberColumn("PSI", format="%.3f"),
            },
        )


def _psi_chart(features: pd.DataFrame) -> Any:
    """PSI per feature (descriptive), largest first, coloured by the test's verdict."""
    import altair as alt  # pylint: disable=import-outside-toplevel  # loaded with a chart only

    data = features.assign(status=features["drifted"].map({True: "drifted", False: "stable"}))
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("psi:Q", title="PSI (descriptive)"),
            y=alt.Y(
                "feature:N",
                sort="-x",
                title=None,
                axis=alt.Axis(labelLimit=220, labelOverlap=False),
            ),
            color=alt.Color(
                "status:N",
                scale=alt.Scale(domain=["drifted", "stable"], range=["#d62728", "#1f77b4"]),
                legend=alt.Legend(orient="bottom", title="test verdict"),
            ),
            tooltip=[
                "feature",
                "test",
                alt.Tooltip("p_value_adjusted:Q", title="adjusted p", format=".3g"),
                alt.Tooltip("psi:Q", format=".3f"),
                "status",
            ],
        )
    )
    return bars.properties(height=alt.Step(22))


def _host(api: ApiClient) -> None:
    st.subheader("Host")
    _kibana("host")
    host = _optional("read the host metrics", api.monitoring_host)
    if host is None:
        return
    cols = st.columns(3)
    for col, (name, title) in zip(
        cols, (("cpu_percent", "CPU"), ("memory_percent", "RAM"), ("disk_percent", "Disk"))
    ):
        value = host.get(name)
        col.metric(title, f"{float(value):.1f} %" if value is not None else "—")
        if value is not None:
            col.progress(min(max(float(value) / 100.0, 0.0), 1.0))
    source = (
        "by the host agent"
        if host.get("source") == "agent"
        else "live by the API (no host agent is running)"
    )
    st.caption(f"Host `{host.get('host', '—')}` · sampled {_when(host.get('at'))} {source}")


def _sections() -> None:
    api = keyed_client()
    _live(api)
    _traffic(api)
    _drift(api)
    _host(api)


def main() -> None:
    """Draw the page."""
    st.title("Monitoring")
    cols = st.columns([4, 1])
    cols[0].caption("Read from the API (Elasticsearch when configured, SQLite otherwise).")
    auto = cols[1].toggle("Auto-refresh (10 s)", key="monitoring_autorefresh")
    if auto:
        st.fragment(run_every=10)(_sections)()
    else:
        _sections()


main()
