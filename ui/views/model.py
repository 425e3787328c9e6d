"""Model: champion vs challenger, training curves and plots, versions, promote/rollback."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.settings import get_settings
from ui.client import ApiClient, ApiError
from ui.components import KEY_STATE, keyed_client, fetch_or_stop, num, show_api_error
from ui.links import mlflow_run, mlflow_version

METRICS = ("f1", "precision", "recall", "roc_auc", "pr_auc", "accuracy", "brier", "threshold")
LOWER_IS_BETTER = frozenset({"brier"})


def _with_alias(versions: list[dict[str, Any]], alias: str) -> dict[str, Any] | None:
    for item in versions:
        if alias in (item.get("aliases") or []):
            return item
    return None


def _metrics_table(columns: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Metrics side by side, one column per model, plus the challenger's delta when both exist."""
    table = pd.DataFrame(
        {name: [_metric(metrics, m) for m in METRICS] for name, metrics in columns.items()},
        index=list(METRICS),
    )
    if len(columns) == 2:
        first, second = list(columns)
        table["Δ (challenger − champion)"] = table[second] - table[first]
    return table


def _metric(metrics: dict[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _champion_card(model: dict[str, Any]) -> None:
    cols = st.columns(5)
    cols[0].metric("Champion version", str(model.get("version", "—")))
    cols[1].metric("Family", str(model.get("family") or "—"))
    cols[2].metric("Threshold", num(model.get("threshold"), 3))
    cols[3].metric("Inference path", str(model.get("compiled") or "—"))
    cols[4].metric("F1 (holdout)", num((model.get("metrics") or {}).get("f1"), 3))
    digest = str(model.get("data_sha256") or "")
    st.caption(
        f"Registered model `{model.get('name', 'churn-model')}` · trained "
        f"{model.get('trained_at', '—')} · data sha256 `{digest[:12] or '—'}`"
    )
    if model.get("degraded"):
        st.warning(f"Serving in degraded mode: {model.get('reason') or 'no reason given'}")


def _curves(api: ApiClient, versions: dict[str, str]) -> None:
    frames = []
    for role, version in versions.items():
        try:
            points = api.model_curve(version)
        except ApiError as err:
            st.info(f"No training curve for v{version} ({role}): {err.message}")
            continue
        for point in points:
            for split in ("train_loss", "valid_loss"):
                if point.get(split) is not None:
                    frames.append(
                        {
                            "step": point.get("step"),
                            "loss": float(point[split]),
                            "series": f"v{version} {split.removesuffix('_loss')}",
                        }
                    )
    if frames:
        st.line_chart(
            pd.DataFrame(frames),
            x="step",
            y="loss",
            color="series",
            x_label="boosting step / epoch",
        )


def _plots(api: ApiClient, versions: list[str], default: str | None) -> None:
    if not versions:
        return
    index = versions.index(default) if default in versions else 0
    version = st.selectbox("Version", versions, index=index, key="model_plot_version")
    try:
        plots = api.model_plots(version)
    except ApiError as err:
        st.info(f"No plots for v{version}: {err.message} (`{err.url}`)")
        return
    if not plots:
        st.info(f"The run of v{version} logged no figures.")
        return
    cols = st.columns(2)
    for i, plot in enumerate(plots):
        name = str(plot.get("name", ""))
        with cols[i % 2]:
            try:
                st.image(api.model_plot(version, name), caption=str(plot.get("title") or name))
            except ApiError as err:
                st.caption(f"{name}: {err.message}")


def decision_text(gate: dict[str, Any]) -> str:
    """What happened to a version, from its record (``GateRecord`` of the API): the gate's
    decision, and a manual promotion or a rollback when there was one."""
    parts = []
    if gate.get("decision"):
        parts.append(f"{gate['decision']} by the gate")
    if (gate.get("promotion") or {}).get("forced") == "true":
        parts.append("promoted by hand")
    rollback = gate.get("rollback") or {}
    if rollback.get("restored") == "true":
        parts.append("restored by a rollback")
    if rollback.get("demoted") == "true":
        parts.append("demoted by a rollback")
    return "; ".join(parts) or "—"


def _versions_table(versions: list[dict[str, Any]]) -> None:
    rows = []
    for item in versions:
        metrics = item.get("metrics") or {}
        gate = item.get("gate") or {}
        rows.append(
            {
                "version": str(item.get("version")),
                "aliases": ", ".join(item.get("aliases") or []),
                "created_at": item.get("created_at"),
                "f1": _metric(metrics, "f1"),
                "roc_auc": _metric(metrics, "roc_auc"),
                "decision": decision_text(gate),
                "reason": gate.get("reason") or "",
                "run_id": item.get("run_id"),
                "mlflow": mlflow_run(get_settings(), item.get("run_id")),
            }
        )
    frame = pd.DataFrame(rows)
    if frame["mlflow"].isna().all():  # no MLFLOW_PUBLIC_URL: no link column
        frame = frame.drop(columns="mlflow")
    st.dataframe(
        frame,
        hide_index=True,
        key="model_versions_table",
        column_config={"mlflow": st.column_config.LinkColumn("MLflow run", display_text="open")},
    )


def _mlflow_links(champion_version: str | None, run_id: str | None) -> None:
    """Links to the champion's run and registered version in MLflow (none without
    ``MLFLOW_PUBLIC_URL``)."""
    settings = get_settings()
    links = {
        "MLflow: champion run": mlflow_run(settings, run_id),
        "MLflow: champion model version": mlflow_version(settings, champion_version),
    }
    shown = {title: url for title, url in links.items() if url}
    for column, (title, url) in zip(st.columns(max(len(shown), 1) + 2), shown.items()):
        column.link_button(title, url, key=f"model_{title.split()[-1]}_link")


def _admin(api: ApiClient, versions: list[str], champion: str | None) -> None:
    st.caption(
        "Promotion moves the `champion` alias and hot-swaps the served model; rollback restores "
        "the previous champion. Both need the admin key (API_KEY), entered in the sidebar."
    )
    others = [v for v in versions if v != champion] or versions
    cols = st.columns([2, 1, 1])
    target = cols[0].selectbox("Version to promote", others, key="model_promote_version")
    promote = cols[1].button("Promote", key="model_promote", type="primary")
    rollback = cols[2].button("Rollback", key="model_rollback")
    if not (promote or rollback):
        return
    if not st.session_state.get(KEY_STATE):
        st.warning("Promote and rollback need the admin key (API_KEY): enter it in the sidebar.")
        return
    try:
        if promote:
            api.promote(str(target))
            st.success(f"Version {target} is now the champion.")
        else:
            answer = api.rollback()
            st.success(f"Rolled back; champion is now v{answer.get('version', '?')}.")
    except ApiError as err:
        show_api_error(err, "promote" if promote else "roll back", retry=False)


def main() -> None:
    """Draw the page."""
    st.title("Model")
    api = keyed_client()
    model = fetch_or_stop("read the served model", api.model)
    _champion_card(model)
    versions = fetch_or_stop("list the model versions", api.model_versions)

    champion_version = str(model.get("version")) if model.get("version") is not None else None
    champion = _with_alias(versions, "champion") or {"metrics": model.get("metrics") or {}}
    _mlflow_links(champion_version, champion.get("run_id"))
    challenger = _with_alias(versions, "challenger")
    if challenger is not None and str(challenger.get("version")) == champion_version:
        challenger = None

    st.subheader("Champion vs challenger")
    columns = {f"champion v{champion_version}": champion.get("metrics") or {}}
    roles = {"champion": champion_version} if champion_version else {}
    if challenger is not None:
        columns[f"challenger v{challenger.get('version')}"] = challenger.get("metrics") or {}
        roles["challenger"] = str(challenger.get("version"))
        gate = challenger.get("gate") or {}
        if gate.get("decision"):
            st.caption(
                f"Gate decision on the challenger: {gate['decision']} — {gate.get('reason', '')}"
            )
    else:
        st.caption("No challenger at the moment (the last candidate was promoted or rejected).")
    st.dataframe(
        _metrics_table(columns).style.format("{:.4f}", na_rep="—"), key="model_metrics_table"
    )

    all_versions = [str(v.get("version")) for v in versions if v.get("version") is not None]
    tabs = st.tabs(["Training curves", "Plots", "Versions", "Promote / rollback"])
    with tabs[0]:
        _curves(api, {role: v for role, v in roles.items() if v})
    with tabs[1]:
        _plots(api, all_versions, champion_version)
    with tabs[2]:
        _versions_table(versions)
    with tabs[3]:
        _admin(api, all_versions, champion_version)


main()
