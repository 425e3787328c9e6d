"""Predict: score one customer from a schema-generated form, with the drivers of the prediction."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.schema import SPECS
from ui.client import ApiError
from ui.components import keyed_client, fetch, num, pct, probability_chart
from ui.form import apply_preset, customer_form, current_values, init_state, label, validate

STATE_REQUEST = "predict_request"
STATE_RESULT = "predict_result"
STATE_EXPLAIN = "predict_explain"
STATE_SCORED_VALUES = "predict_scored_values"


def _submit() -> None:
    """Validate the form and queue the customer for scoring (shown after the rerun).

    Predict on the values already scored, with their answer on screen, is that same prediction:
    it stays shown and nothing is sent, so however many clicks (Streamlit folds clicks that come
    during a run into one rerun) one customer is one stored prediction. A field changed, or a
    call that failed, scores again.
    """
    if STATE_RESULT in st.session_state and current_values() == st.session_state.get(
        STATE_SCORED_VALUES
    ):
        return
    customer, errors, warnings = validate(current_values())
    st.session_state["predict_errors"] = errors
    st.session_state["predict_warnings"] = warnings
    st.session_state.pop(STATE_RESULT, None)
    st.session_state.pop(STATE_EXPLAIN, None)
    st.session_state[STATE_REQUEST] = customer
    st.session_state[STATE_SCORED_VALUES] = current_values()


def _score(customer: dict[str, Any]) -> None:
    """Call ``POST /predict`` then ``POST /predict/explain`` and keep both in session state."""
    api = keyed_client()
    result = fetch("score this customer", lambda: api.predict(customer))
    if result is None:
        return
    st.session_state[STATE_RESULT] = result
    try:
        st.session_state[STATE_EXPLAIN] = api.explain(customer)
    except ApiError as err:
        st.session_state[STATE_EXPLAIN] = {"error": f"{err.message} (`{err.url}`)"}


def _drivers(explain: dict[str, Any]) -> None:
    """The per-feature contributions of this prediction, largest first."""
    import altair as alt  # pylint: disable=import-outside-toplevel  # loaded only with a result
    import pandas as pd  # pylint: disable=import-outside-toplevel  # loaded only with a result

    st.subheader("What drives this prediction")
    st.caption(
        "How the drivers are computed: each bar is how much this customer's churn probability "
        "drops when that one field is set to the typical (loyal) customer's value instead "
        "(positive: the field pushes towards churn), largest effect first in the chart and the "
        "table alike. A field already at the typical value has nothing to swap, so the typical "
        "customer has no drivers and a customer close to it only near-zero ones. The model reads "
        "a period's minutes and charge together as one usage figure, so their effect is shared "
        "between them."
    )
    if "error" in explain:
        st.info(f"Drivers are not available: {explain['error']}")
        return
    drivers = [d for d in explain.get("drivers") or [] if isinstance(d, dict)]
    if not drivers:
        st.info(
            "No drivers: every field is at the typical customer's value, so no swap moves the "
            "probability."
        )
        return
    frame = pd.DataFrame(drivers)
    frame["contribution"] = pd.to_numeric(frame["contribution"], errors="coerce").fillna(0.0)
    frame["feature_label"] = [
        label(SPECS[f]) if f in SPECS else str(f) for f in frame["feature"].astype(str)
    ]
    frame["value"] = frame["value"].astype(str)
    frame["direction"] = [
        "towards churn" if c > 0 else "towards staying" for c in frame["contribution"]
    ]
    frame["magnitude"] = frame["contribution"].abs()
    frame = frame.sort_values("magnitude", ascending=False, kind="stable").head(10)
    chart = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("contribution:Q", title="contribution to the churn score"),
            # the table's order, given explicitly: largest effect first, whatever its sign
            y=alt.Y(
                "feature_label:N",
                sort=frame["feature_label"].tolist(),
                title=None,
                axis=alt.Axis(labelLimit=260),
            ),
            color=alt.Color(
                "direction:N",
                scale=alt.Scale(
                    domain=["towards churn", "towards staying"], range=["#d62728", "#2ca02c"]
                ),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            tooltip=["feature_label", "value", alt.Tooltip("contribution:Q", format="+.4f")],
        )
        .properties(height=alt.Step(26))
    )
    st.altair_chart(chart, width="stretch")
    st.dataframe(
        frame[["feature_label", "value", "contribution"]].rename(
            columns={"feature_label": "feature"}
        ),
        hide_index=True,
        key="predict_drivers_table",
    )


def _result(result: dict[str, Any], explain: dict[str, Any] | None) -> None:
    probability = float(result.get("churn_probability", 0.0))
    threshold = float(result.get("threshold", 0.5))
    churn = bool(result.get("churn", result.get("label") == "yes"))
    st.subheader("Result")
    cols = st.columns(4)
    cols[0].metric("Churn probability", pct(probability))
    cols[1].metric("Decision", "Will churn" if churn else "Will stay")
    cols[2].metric("Threshold", pct(threshold))
    cols[3].metric("Model version", str(result.get("model_version", "—")))
    st.altair_chart(probability_chart(probability, threshold), width="stretch")
    st.caption(
        f"Prediction `{result.get('prediction_id', '—')}` · server latency "
        f"{num(result.get('latency_ms'), 2)} ms."
    )
    if explain is not None:
        _drivers(explain)


def main() -> None:
    """Draw the page."""
    st.title("Predict churn for one customer")
    st.caption(
        "Defaults are a typical customer; hover the ? of a field for its meaning, unit and range."
    )
    init_state()
    presets = st.columns([1, 1, 4])
    presets[0].button(
        "Typical customer", key="preset_typical", on_click=apply_preset, args=("typical",)
    )
    presets[1].button(
        "Likely churner", key="preset_churner", on_click=apply_preset, args=("churner",)
    )
    errors: dict[str, str] = st.session_state.get("predict_errors") or {}
    # Not an st.form: every edit reruns the page, so a result is never shown for values that
    # are no longer the form's (a preset, an edited or emptied field hides it until Predict).
    with st.container(border=True):
        customer_form(errors)
        st.button("Predict churn", type="primary", key="predict_submit", on_click=_submit)

    for message in st.session_state.get("predict_warnings", []):
        st.warning(message)
    if errors:
        fields = ", ".join(label(SPECS[n]) if n in SPECS else n for n in errors)
        st.error(f"Nothing was scored: fix the {len(errors)} field(s) marked above ({fields}).")
        return
    customer = st.session_state.get(STATE_REQUEST)
    if customer is None:
        return
    if current_values() != st.session_state.get(STATE_SCORED_VALUES):
        st.info("The form changed since the last prediction: press **Predict churn** to score it.")
        return
    if STATE_RESULT not in st.session_state:
        _score(customer)
    result = st.session_state.get(STATE_RESULT)
    if result is not None:
        _result(result, st.session_state.get(STATE_EXPLAIN))


main()
