"""Small building blocks shared by the pages: API error display with retry, formatting, charts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from core.schema import predicted_churn
from core.settings import DEV_API_KEY, get_settings
from ui import client
from ui.client import ApiClient, ApiError

T = TypeVar("T")
log = logging.getLogger("churnops.ui")
#: Session-state key of the user's API key (the sidebar's password field).
KEY_STATE = "api_key"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def keyed_client() -> ApiClient:
    """The API client, sending the key the user typed in the sidebar (none: no key)."""
    return client.get_client().with_key(str(st.session_state.get(KEY_STATE) or "").strip())


def api_key_sidebar() -> None:
    """The sidebar's password field for the user's API key: kept in this browser session only,
    sent as ``X-API-Key``. The UI holds no key of its own."""
    st.sidebar.text_input(
        "API key",
        type="password",
        key=KEY_STATE,
        help="Your key for this API (reader: history and monitoring; writer: feedback; admin: "
        "promote, rollback, retrain). Kept in this browser session only.",
    )


def show_api_error(err: ApiError, what: str, *, retry: bool = True) -> None:
    """Show a failed call as a clear message naming the URL tried, with a Retry button; a
    refusal (401/403) says which key is needed and where to enter it."""
    if err.refused:
        where = "ask the API's operator for one"
        if get_settings().env == "dev":  # make run on one's own machine: the operator is the user
            where += (
                f" (with `make run` and no key set, that is you: the admin key is "
                f"`{DEV_API_KEY}`, as `make run` prints; see README › Configuration)"
            )
        st.warning(
            f"To {what}, the API needs another key.\n\n**Reason:** {err.message}\n\n"
            f"Enter your key in the sidebar (**API key**); {where}.",
            icon=":material/key:",
        )
        return
    if err.unreachable:
        headline = f"The API is not reachable, so this page could not {what}."
    else:
        headline = f"The API answered HTTP {err.status} when trying to {what}."
    st.error(
        f"{headline}\n\n**Reason:** {err.message}\n\n**URL tried:** `{err.url}`",
        icon=":material/error:",
    )
    if err.unreachable:
        st.caption(
            "Start it with `make serve` (or `make run` for API + UI), or point the UI at it "
            "with the `API_URL` environment variable."
        )
    if retry:
        st.button("Retry", key=f"retry_{_slug(what)}", type="primary")


def fetch(what: str, call: Callable[[], T], *, retry: bool = True) -> T | None:
    """Run one API call; on :class:`ApiError` show it (with a retry) and return ``None``."""
    try:
        return call()
    except ApiError as err:
        log.warning("API call failed: %s", err)
        show_api_error(err, what, retry=retry)
        return None


def fetch_or_stop(what: str, call: Callable[[], T]) -> T:
    """Like :func:`fetch`, but stop the page when the call fails (nothing else can be shown)."""
    result = fetch(what, call)
    if result is None:
        st.stop()
    return result


def api_status_sidebar() -> str:
    """A one-line API status in the sidebar (short timeout so a down API never delays the page).

    Returns:
        ``ready``, ``degraded``, ``not_ready`` or ``down``.
    """
    api = client.get_client()
    try:
        ready = api.ready()
    except ApiError as err:
        st.sidebar.error(f"API down: `{err.url}`", icon=":material/cloud_off:")
        return "down"
    status = str(ready.get("status", "?"))
    version = ready.get("model_version")
    text = f"API {status}" + (f" · model v{version}" if version is not None else "")
    if status == "ready":
        st.sidebar.success(text, icon=":material/check_circle:")
    else:
        st.sidebar.warning(f"{text}: {ready.get('reason') or ''}", icon=":material/warning:")
    return status


@st.fragment(run_every=3)
def api_state_banner() -> None:
    """While the API is down or has no model yet (``make run`` is starting it, or training the
    first champion), say so at the top of every page, and reload the page once it is ready."""
    api = client.get_client()
    try:
        ready = api.ready()
    except ApiError as err:
        st.info(
            f"Waiting for the API at `{err.url}`: {err.message}. If `make run` is starting, this "
            "page reloads by itself when the API answers; otherwise start it with `make run`.",
            icon=":material/hourglass_top:",
        )
        return
    if ready.get("status") in ("ready", "degraded"):
        st.rerun()
    st.info(
        f"The API is up but has no model yet ({ready.get('reason') or 'not ready'}). When "
        "`make run` starts from nothing it trains a first champion now (a minute or two); this "
        "page reloads by itself when the model is served.",
        icon=":material/hourglass_top:",
    )


def pct(value: Any, digits: int = 1) -> str:
    """Format a fraction as a percentage; ``—`` when missing."""
    if value is None:
        return "—"
    try:
        return f"{float(value) * 100:.{digits}f} %"
    except (TypeError, ValueError):
        return "—"


def num(value: Any, digits: int = 3) -> str:
    """Format a number with a fixed number of digits; ``—`` when missing."""
    if value is None:
        return "—"
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def probability_chart(probability: float, threshold: float) -> Any:
    """A horizontal bar of the churn probability on a 0–1 scale, with the decision threshold."""
    import altair as alt  # pylint: disable=import-outside-toplevel  # only Predict needs it
    import pandas as pd  # pylint: disable=import-outside-toplevel  # keeps the first paint fast

    colour = "#d62728" if predicted_churn(probability, threshold) else "#2ca02c"
    axis_title = f"churn probability (black mark: decision threshold {threshold:.1%})"
    bars = (
        alt.Chart(pd.DataFrame({"what": ["churn probability"], "p": [probability]}))
        .mark_bar(color=colour, size=28, opacity=0.8)
        .encode(
            x=alt.X(
                "p:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title=axis_title
            ),
            y=alt.Y("what:N", title=None, axis=None),
            tooltip=[alt.Tooltip("p:Q", format=".1%", title="probability")],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"what": ["churn probability"], "t": [threshold]}))
        .mark_tick(color="black", thickness=3, size=44, strokeDash=[5, 3])
        .encode(
            x="t:Q",
            y=alt.Y("what:N", title=None, axis=None),
            tooltip=[alt.Tooltip("t:Q", format=".1%", title="threshold")],
        )
    )
    return (bars + rule).properties(height=60)


def time_chart(frame: Any, x: str, y: list[str], *, title: str, bar: bool = False) -> Any:
    """Values over time; lines carry points so a single bucket is still visible."""
    import altair as alt  # pylint: disable=import-outside-toplevel  # loaded with a chart only

    fold: list[Any] = list(y)
    base = alt.Chart(frame).transform_fold(fold, as_=["series", "value"])
    mark = base.mark_bar() if bar else base.mark_line(point=True)
    encoding: dict[str, Any] = {
        "x": alt.X(f"{x}:T", title=None),
        "y": alt.Y("value:Q", title=title),
        "tooltip": [alt.Tooltip(f"{x}:T", format="%Y-%m-%d %H:%M"), "series:N", "value:Q"],
    }
    if len(y) > 1:
        encoding["color"] = alt.Color("series:N", legend=alt.Legend(orient="bottom", title=None))
    return mark.encode(**encoding).properties(height=220)
