"""The UI asks who you are: pages behind a role say which key they need instead of showing data.

The fake API enforces the real API's role table (tests/ui/conftest.py), so these pages meet the
401/403 answers the real API would send.
"""

from __future__ import annotations

from api.auth import Role
from core.settings import get_settings
from tests.ui.conftest import assert_clean, texts


def test_the_key_field_is_a_password_in_the_sidebar(open_page, fake_api):
    at = open_page("predict")
    field = at.sidebar.text_input(key="api_key")
    assert field.label == "API key" and field.proto.type == field.proto.PASSWORD
    assert field.value == ""  # the UI holds no key of its own
    del fake_api


def test_history_without_a_key_names_the_reader_key_and_shows_no_customer(open_page, fake_api):
    at = open_page("history", key=None)
    assert_clean(at)
    assert "READER_KEY" in at.warning[0].value and "sidebar" in at.warning[0].value
    assert "dev-api-key" not in at.warning[0].value  # ENV=test: no make-run hint
    assert not at.dataframe
    assert fake_api.keys_seen and set(fake_api.keys_seen) == {None}


def test_on_ones_own_machine_the_refusal_names_make_runs_admin_key(
    open_page, fake_api, monkeypatch
):
    """ENV=dev (make run): the user is the operator, so the refusal says which key make run
    serves with instead of "ask the operator" alone."""
    monkeypatch.setenv("ENV", "dev")
    get_settings.cache_clear()
    at = open_page("history", key=None)
    assert "`dev-api-key`" in at.warning[0].value and "make run" in at.warning[0].value
    del fake_api


def test_history_with_the_reader_key_shows_data_but_feedback_needs_the_writer_key(
    open_page, fake_api
):
    at = open_page("history", key="reader-key")
    assert_clean(at)
    assert at.dataframe
    at.button(key="history_feedback_submit").click().run()
    assert_clean(at)
    assert "WRITER_KEY" in at.warning[0].value and "may not" in at.warning[0].value
    assert fake_api.called("feedback")


def test_the_key_typed_once_serves_every_page(open_page, fake_api):
    at = open_page("predict", key=None)
    at.sidebar.text_input(key="api_key").set_value("reader-key").run()
    at.switch_page("views/monitoring.py").run()
    assert_clean(at)
    assert "Live quality" in texts(at) or at.metric
    assert not [w for w in at.warning if "READER_KEY" in w.value]
    assert fake_api.keys_seen[-1] == "reader-key"


def test_monitoring_without_a_key_says_what_is_needed(open_page, fake_api):
    at = open_page("monitoring", key=None)
    assert_clean(at)
    assert any("READER_KEY" in w.value for w in at.warning)
    assert not at.metric
    del fake_api


def test_model_page_shows_the_champion_but_the_registry_needs_a_key(open_page, fake_api):
    at = open_page("model", key=None)
    assert_clean(at)
    assert "Champion version: 2" in texts(at)
    assert "READER_KEY" in at.warning[0].value
    del fake_api


def test_predict_is_open_unless_the_api_has_a_predict_key(open_page, fake_api):
    at = open_page("predict")
    at.button(key="preset_churner").click().run()
    at.button(key="predict_submit").click().run()
    assert_clean(at)
    assert fake_api.called("predict") and not at.warning

    fake_api.keys[Role.PREDICT] = "predict-key"
    # another customer (the same values again would re-show the prediction already made)
    at.number_input(key="f_number_customer_service_calls").set_value(1)
    at.button(key="predict_submit").click().run()
    assert_clean(at)
    assert "PREDICT_KEY" in texts(at)
    at.sidebar.text_input(key="api_key").set_value("predict-key").run()
    at.button(key="predict_submit").click().run()
    assert_clean(at)
    assert "PREDICT_KEY" not in texts(at)
    assert fake_api.keys_seen[-1] == "predict-key"
