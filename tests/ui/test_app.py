"""The app shell: navigation, the sidebar API status, the catch-all error handler."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.ui.conftest import APP, assert_clean

PAGES = ("predict", "batch", "history", "model", "monitoring", "retrain")
TITLES = {
    "predict": "Predict churn for one customer",
    "batch": "Batch scoring",
    "history": "Prediction history",
    "model": "Model",
    "monitoring": "Monitoring",
    "retrain": "Retrain",
}


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_against_the_api(open_page, fake_api, page):
    at = open_page(page)
    assert_clean(at)
    assert at.title[0].value == TITLES[page]
    assert "API ready · model v2" in at.sidebar.success[0].value
    # the API's own docs, at the address the UI reaches the API (API_URL)
    assert "[API docs](http://127.0.0.1:8000/docs)" in [m.value for m in at.sidebar.markdown]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_survives_the_api_being_down(open_page, down_api, page):
    at = open_page(page)
    assert_clean(at)
    assert at.title[0].value == TITLES[page]
    if page in ("history", "model", "monitoring"):  # the pages that call the API on load
        assert any(down_api.base_url in e.value for e in at.error), "the page names the URL tried"
    assert f"`{down_api.base_url}/ready`" in at.sidebar.error[0].value


def test_not_ready_api_is_shown_in_the_sidebar(open_page, fake_api, monkeypatch):
    monkeypatch.setattr(
        fake_api,
        "ready",
        lambda: {"status": "not_ready", "reason": "no champion", "model_version": None},
    )
    at = open_page("predict")
    assert_clean(at)
    assert "API not_ready: no champion" in at.sidebar.warning[0].value
    # the main area says what is going on (make run trains a first champion meanwhile)
    assert any("has no model yet (no champion)" in i.value for i in at.info)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_says_the_api_is_not_there_yet(open_page, down_api, page):
    at = open_page(page)
    assert_clean(at)
    assert any(f"Waiting for the API at `{down_api.base_url}/ready`" in i.value for i in at.info)


def test_unexpected_error_is_a_message_not_a_traceback(fake_api, monkeypatch, settings):
    def broken(customer: dict) -> dict:
        raise RuntimeError("boom")

    monkeypatch.setattr(fake_api, "predict", broken)
    at = AppTest.from_file(str(APP), default_timeout=30).run()  # the default page, via app.py
    at.button(key="predict_submit").click().run()
    assert not at.exception
    assert "Unexpected error on this page" in at.error[0].value
    assert "boom" not in at.error[0].value
    assert at.button(key="retry_unexpected") is not None
