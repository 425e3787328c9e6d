"""Monitoring page: estimated and realized quality, traffic/latency, drift, host, Kibana link,
partial outages."""

from __future__ import annotations

from core.settings import get_settings
from tests.ui.conftest import FAKE_URL, assert_clean, link_buttons, metric, texts
from ui.client import ApiError


def test_all_sections(open_page, fake_api):
    at = open_page("monitoring")
    assert_clean(at)
    assert metric(at, "Estimated F1 (CBPE, before labels)") == "87.1 %"
    assert metric(at, "Realized F1 (from feedback)") == "88.9 %"
    body = texts(at)
    assert "95 % CI 66.7 %–100.0 % · n = 42 predictions" in body
    assert "95 % CI 57.1 %–100.0 % · n = 12 labelled" in body
    assert (
        "Predictions of the last 7 days (2024-12-27 00:00 UTC to 2025-01-03 00:00 UTC): 42, "
        "of which 12 with feedback." in body
    )
    quality = at.dataframe[0].value
    assert quality["metric"].tolist() == ["F1", "Precision", "Recall", "Accuracy"]
    accuracy = quality.set_index("metric").loc["Accuracy"].to_dict()
    assert accuracy == {
        "estimated": "96.2 %",
        "estimated interval": "95 % CI 90.5 %–100.0 %",
        "realized": "91.7 %",
        "realized interval": "95 % CI 64.6 %–98.5 %",
    }
    assert (metric(at, "Single latency p50"), metric(at, "Single latency p95")) == (
        "0.81 ms",
        "2.50 ms",
    )
    assert (metric(at, "Batch latency p50"), metric(at, "Batch latency p95")) == (
        "0.05 ms/row",
        "0.07 ms/row",
    )
    assert "Single: n = 30 predictions" in body and "Batch: n = 2 batch requests" in body
    assert metric(at, "Predicted churn rate") == "14.3 %"
    # the schema's labels, as every other page shows the features
    assert "Drift detected in 1 feature(s): Total day minutes (minutes)" in at.warning[0].value
    assert "adjusted for the features tested together (Holm), is at most 0.05" in texts(at)
    assert "alarms at most 5.0 % of the time. PSI is shown for reference only." in texts(at)
    drift = at.dataframe[1].value  # after the quality table
    # strongest evidence first
    assert drift["feature"].tolist() == ["Total day minutes (minutes)", "State"]
    assert drift["test"].tolist() == ["Kolmogorov-Smirnov", "chi-squared (Monte Carlo)"]
    assert drift["drifted"].tolist() == [True, False]
    assert (metric(at, "CPU"), metric(at, "RAM"), metric(at, "Disk")) == (
        "37.5 %",
        "61.0 %",
        "44.2 %",
    )
    assert "sampled 2025-01-03 00:00 UTC by the host agent" in texts(at)
    assert not at.get("link_button"), "no Kibana link without KIBANA_URL"


def test_host_sampled_live_when_no_agent_runs(open_page, fake_api):
    fake_api.host_source = "live"
    at = open_page("monitoring")
    assert_clean(at)
    assert "sampled 2025-01-03 00:00 UTC live by the API (no host agent is running)" in texts(at)


def test_compute_drift_now_with_the_admin_key(open_page, fake_api):
    at = open_page("monitoring", key="good-key")
    at.button(key="monitoring_drift_now").click().run()
    assert_clean(at)
    assert fake_api.called("compute_drift") == [("good-key",)]
    # the page shows the report the run stored, read after it
    names = [n for n, _ in fake_api.calls]
    assert names.index("compute_drift") < len(names) - 1 - names[::-1].index("monitoring_drift")
    assert "Computed 2025-01-04T00:00:00Z" in texts(at)


def test_compute_drift_now_refused_to_a_reader(open_page, fake_api):
    at = open_page("monitoring")  # the reader key
    at.button(key="monitoring_drift_now").click().run()
    assert_clean(at)
    assert fake_api.called("compute_drift") == [("reader-key",)]
    assert any("API_KEY" in w.value for w in at.warning), [w.value for w in at.warning]
    assert "Computed 2025-01-03T00:00:00Z" in texts(at), texts(at)  # the last report shown


def test_compute_drift_with_nothing_to_compare_is_a_hint(open_page, fake_api):
    fake_api.fail["compute_drift"] = ApiError(
        f"{FAKE_URL}/monitoring/drift", 409, "no data to compare: no recent predictions"
    )
    at = open_page("monitoring", key="good-key")
    at.button(key="monitoring_drift_now").click().run()
    assert_clean(at)
    assert "Nothing to compare yet: no data to compare: no recent predictions" in texts(at)


def test_one_label_shows_n_1_and_a_wide_interval_never_a_bare_zero(open_page, fake_api):
    """With one feedback label (a customer who stayed, predicted to stay) the realized side says
    n = 1 with its wide interval; the figures that are 0/0 show —, not 0 %."""
    fake_api.live = {**fake_api.live, "window": {**fake_api.live["window"], "labelled": 1},
                     "realized": {"n": 1, "churners": 0, "confidence": 0.95,
                                  "accuracy": {"value": 1.0, "low": 0.2065493, "high": 1.0},
                                  "precision": {"value": None, "low": None, "high": None},
                                  "recall": {"value": None, "low": None, "high": None},
                                  "f1": {"value": None, "low": None, "high": None}}}  # fmt: skip
    at = open_page("monitoring")
    assert_clean(at)
    assert metric(at, "Realized F1 (from feedback)") == "—"
    assert "undefined (0/0) · n = 1 labelled" in texts(at)
    realized = at.dataframe[0].value.set_index("metric")
    assert realized.loc["Accuracy", "realized interval"] == "95 % CI 20.7 %–100.0 %"
    assert realized.loc["F1", "realized"] == "—"
    assert "0.0 %" not in realized["realized"].tolist()


def test_a_window_past_the_estimate_cap_says_the_estimate_read_the_newest(open_page, fake_api):
    """A busy window: the realized side is over every labelled prediction, the estimate over the
    newest it reads, and the page says which is which."""
    fake_api.live = {**fake_api.live,
                     "window": {**fake_api.live["window"], "predictions": 120_000,
                                "labelled": 9_000, "estimated_on": 50_000, "limited": True},
                     "estimated": {**fake_api.live["estimated"], "n": 50_000},
                     "realized": {**fake_api.live["realized"], "n": 9_000}}  # fmt: skip
    at = open_page("monitoring")
    assert_clean(at)
    body = texts(at)
    assert (
        "Predictions of the last 7 days (2024-12-27 00:00 UTC to 2025-01-03 00:00 UTC): 120,000, "
        "of which 9,000 with feedback. The estimate uses the newest 50,000 of them." in body
    )
    assert "95 % CI 66.7 %–100.0 % · n = 50,000 predictions" in body
    assert "95 % CI 57.1 %–100.0 % · n = 9,000 labelled" in body


def test_no_prediction_and_no_feedback_yet(open_page, fake_api):
    fake_api.live = {
        "window": {
            **fake_api.live["window"],
            "predictions": 0,
            "labelled": 0,
            "estimated_on": 0,
            "model_versions": [],
        },
        "realized": None,
        "estimated": None,
    }
    at = open_page("monitoring")
    assert_clean(at)
    assert metric(at, "Estimated F1 (CBPE, before labels)") == "—"
    assert metric(at, "Realized F1 (from feedback)") == "—"
    body = texts(at)
    assert "No prediction in this window." in body
    assert "No feedback yet: enter true outcomes on the History page." in body


def test_small_window_says_not_enough_rows(open_page, fake_api):
    """Below the minimum window the page gives no verdict, neither drift nor all-clear."""
    untested = {"test": None, "p_value": None, "p_value_adjusted": None, "drifted": False}
    fake_api.drift = {
        **fake_api.drift,
        "current_rows": 12,
        "verdict": "not_enough_rows",
        "drifted": False,
        "features": [{**f, **untested} for f in fake_api.drift["features"]],
    }
    at = open_page("monitoring")
    assert_clean(at)
    assert "Not enough rows for a verdict: 12 recent rows, at least 50 needed." in [
        i.value for i in at.info
    ]
    assert not at.warning
    assert "No feature has drifted." not in [s.value for s in at.success]


def test_window_is_sent(open_page, fake_api):
    at = open_page("monitoring")
    at.selectbox(key="monitoring_hours").set_value(168).run()
    assert fake_api.called("monitoring_summary")[-1] == (168,)
    assert_clean(at)


def test_kibana_link_when_configured(open_page, fake_api, monkeypatch):
    monkeypatch.setenv("KIBANA_URL", "http://kibana.example:5601/")
    get_settings.cache_clear()
    at = open_page("monitoring")
    assert_clean(at)
    links = link_buttons(at)
    view = "http://kibana.example:5601/app/dashboards#/view/churnops-"
    assert links == {
        "Kibana: model metrics dashboard": f"{view}model-metrics",
        "Kibana: predictions dashboard": f"{view}predictions",
        "Kibana: drift dashboard": f"{view}drift",
        "Kibana: host dashboard": f"{view}host",
    }


def test_one_section_down_keeps_the_others(open_page, fake_api):
    fake_api.fail["monitoring_drift"] = ApiError(f"{FAKE_URL}/monitoring/drift", 503, "ES down")
    at = open_page("monitoring")
    assert_clean(at)
    assert len(at.main.error) == 1 and "HTTP 503" in at.error[0].value
    assert f"`{FAKE_URL}/monitoring/drift`" in at.error[0].value
    assert metric(at, "CPU") == "37.5 %"


def test_no_drift_run_yet_is_a_hint(open_page, fake_api):
    fake_api.fail["monitoring_drift"] = ApiError(
        f"{FAKE_URL}/monitoring/drift", 404, "no drift run yet: run `make drift`"
    )
    at = open_page("monitoring")
    assert_clean(at)
    assert not at.main.error
    assert "No drift run yet: run `make drift`" in at.info[0].value


def test_api_down(open_page, down_api):
    at = open_page("monitoring")
    assert_clean(at)
    body = texts(at)
    for path in ("/metrics/live", "/monitoring/summary", "/monitoring/drift", "/monitoring/host"):
        assert f"{down_api.base_url}{path}" in body
