"""Monitoring page: live accuracy, traffic/latency, drift, host, Kibana link, partial outages."""

from __future__ import annotations

from core.settings import get_settings
from tests.ui.conftest import FAKE_URL, assert_clean, texts
from ui.client import ApiError


def _metric(at, name: str) -> str:
    return next(m.value for m in at.metric if m.label == name)


def test_all_sections(open_page, fake_api):
    at = open_page("monitoring")
    assert_clean(at)
    assert _metric(at, "With feedback") == "12"
    assert _metric(at, "Accuracy") == "91.7 %"
    assert _metric(at, "Latency p95") == "4.56 ms"
    assert _metric(at, "Predicted churn rate") == "14.3 %"
    assert "Drift detected in 1 feature(s): total_day_minutes" in at.warning[0].value
    assert "adjusted for the features tested together (Holm), is at most 0.05" in texts(at)
    assert "alarms at most 5.0 % of the time. PSI is shown for reference only." in texts(at)
    drift = at.dataframe[0].value
    assert drift["feature"].tolist() == ["total_day_minutes", "state"]  # strongest evidence first
    assert drift["test"].tolist() == ["Kolmogorov-Smirnov", "chi-squared (Monte Carlo)"]
    assert drift["drifted"].tolist() == [True, False]
    assert (_metric(at, "CPU"), _metric(at, "RAM"), _metric(at, "Disk")) == (
        "37.5 %",
        "61.0 %",
        "44.2 %",
    )
    assert not at.get("link_button"), "no Kibana link without KIBANA_URL"


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
    link = at.get("link_button")[0]
    assert link.proto.url == "http://kibana.example:5601/app/dashboards"


def test_one_section_down_keeps_the_others(open_page, fake_api):
    fake_api.fail["monitoring_drift"] = ApiError(f"{FAKE_URL}/monitoring/drift", 503, "ES down")
    at = open_page("monitoring")
    assert_clean(at)
    assert len(at.main.error) == 1 and "HTTP 503" in at.error[0].value
    assert f"`{FAKE_URL}/monitoring/drift`" in at.error[0].value
    assert _metric(at, "CPU") == "37.5 %"


def test_no_drift_run_yet_is_a_hint(open_page, fake_api):
    fake_api.fail["monitoring_drift"] = ApiError(
        f"{FAKE_URL}/monitoring/drift", 404, "no drift run yet: run `make drift`"
    )
    at = open_page("monitoring")
    assert_clean(at)
    assert not at.main.error
    assert "Nothing yet: no drift run yet: run `make drift`" in at.info[0].value


def test_api_down(open_page, down_api):
    at = open_page("monitoring")
    assert_clean(at)
    body = texts(at)
    for path in ("/metrics/live", "/monitoring/summary", "/monitoring/drift", "/monitoring/host"):
        assert f"{down_api.base_url}{path}" in body
