"""History page: filters sent to the API, charts, feedback, API down."""

from __future__ import annotations

from tests.ui.conftest import assert_clean, metric


def test_lists_predictions_with_charts(open_page, fake_api):
    at = open_page("history")
    assert_clean(at)
    assert metric(at, "Matching predictions") == "10"
    assert metric(at, "Predicted churn rate") == "40.0 %"
    table = at.dataframe[0].value
    labelled = int(table["actual"].notna().sum())
    assert labelled > 0  # the figure shows its sample size
    assert metric(at, "Accuracy on feedback") == f"100.0 % (n = {labelled})"
    assert len(table) == 10 and table["churn_probability"].iloc[0] == 0.1
    assert len(at.get("vega_lite_chart")) == 2  # volume and churn rate over time
    filters = fake_api.called("predictions")[0][0]
    assert filters["since"] < filters["until"] and filters["limit"] == 500
    assert filters["label"] is None and filters["model_version"] is None


def test_filters_reach_the_api(open_page, fake_api):
    at = open_page("history")
    assert at.selectbox(key="history_version").options == ["all", "3", "2", "1"]
    at.selectbox(key="history_label").set_value("yes")
    at.selectbox(key="history_version").set_value("2").run()
    assert_clean(at)
    filters = fake_api.called("predictions")[-1][0]
    assert (filters["label"], filters["model_version"]) == ("yes", "2")
    assert metric(at, "Matching predictions") == "2"  # i in (0, 6): label yes and version 2


def test_feedback_is_sent(open_page, fake_api):
    at = open_page("history")
    at.selectbox(key="history_feedback_id").set_value("pred-0004")
    at.radio(key="history_feedback_actual").set_value("no")
    at.button(key="history_feedback_submit").click().run()
    assert_clean(at)
    assert fake_api.called("feedback") == [("pred-0004", "no")]
    assert "Saved" in at.success[0].value


def test_empty_history_says_so(open_page, fake_api):
    fake_api.predictions_items = []
    at = open_page("history")
    assert_clean(at)
    assert "No prediction matches" in at.info[0].value


def test_api_down(open_page, down_api):
    at = open_page("history")
    assert_clean(at)
    assert any(f"{down_api.base_url}/predictions" in e.value for e in at.error)
    assert at.button(key="retry_load_the_predictions") is not None


def test_rows_are_told_apart_and_show_the_customer(open_page, fake_api):
    """Ids made in the same millisecond share their first characters: the picker shows their
    end; the table shows each prediction's customer fields."""
    for i, item in enumerate(fake_api.predictions_items):
        item["id"] = f"019ac5e2-3f6e-7c55-9a3e-2d1f2b7c8a{i:02d}"
        item["created_at"] = "2025-01-02T10:00:00Z"
    at = open_page("history")
    assert_clean(at)
    picker = at.selectbox(key="history_feedback_id")
    labels = [picker.format_func(option) for option in picker.options]
    assert len(set(labels)) == len(labels) == 10
    table = at.dataframe[0].value
    assert {"state", "number_customer_service_calls"} <= set(table.columns)
    assert table["state"].tolist() == ["KS"] * 10


def test_the_table_shows_the_saved_feedback_at_once(open_page, fake_api):
    at = open_page("history")
    at.selectbox(key="history_feedback_id").set_value("pred-0004")
    at.radio(key="history_feedback_actual").set_value("yes")
    at.button(key="history_feedback_submit").click().run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert table.loc[table["id"] == "pred-0004", "actual"].tolist() == ["yes"]
