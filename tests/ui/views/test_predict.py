"""Predict page: the schema-generated form, validation, result, drivers, API failures."""

from __future__ import annotations

import json

from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL, FEATURES, SPECS
from tests.ui.conftest import FAKE_URL, assert_clean, metric, texts
from ui.client import ApiError
from ui.form import help_text, label, validate


def test_form_is_generated_from_the_schema(open_page, fake_api):
    at = open_page("predict")
    assert_clean(at)
    for spec in FEATURES:
        widget = at.get_by_key(f"f_{spec.name}")  # widgets are driven by key
        assert widget is not None, spec.name
        assert widget.value == EXAMPLE_LOYAL[spec.name], spec.name
        assert widget.label == label(spec)
    assert at.number_input(key="f_account_length").label == "Account length (days)"
    assert "Range 0 to 400 days" in at.number_input(key="f_account_length").help
    assert at.selectbox(key="f_state").options[:2] == ["AK", "AL"]
    assert at.selectbox(key="f_area_code").options == ["408", "415", "510"]  # shown without prefix
    assert not fake_api.called("predict"), "nothing is sent before the user submits"


def test_submit_sends_the_form_and_shows_probability_threshold_version_drivers(open_page, fake_api):
    at = open_page("predict")
    at.radio(key="f_international_plan").set_value("yes")
    at.number_input(key="f_number_customer_service_calls").set_value(5)
    at.button(key="predict_submit").click().run()
    assert_clean(at)

    sent = fake_api.called("predict")[0][0]
    assert sent == {**EXAMPLE_LOYAL, "international_plan": "yes",
                    "number_customer_service_calls": 5}  # fmt: skip
    assert fake_api.called("explain")[0][0] == sent
    assert metric(at, "Churn probability") == "73.1 %"
    assert metric(at, "Decision") == "Will churn"
    assert metric(at, "Threshold") == "42.0 %"
    assert metric(at, "Model version") == "2"
    assert "What drives this prediction" in texts(at)
    drivers = at.dataframe[0].value
    assert drivers["feature"].tolist()[0] == label(SPECS["number_customer_service_calls"])
    assert drivers["contribution"].tolist() == [0.21, 0.15, -0.04]


def test_preset_churner_fills_every_field(open_page, fake_api):
    at = open_page("predict")
    at.button(key="preset_churner").click().run()
    for spec in FEATURES:
        assert at.get_by_key(f"f_{spec.name}").value == EXAMPLE_CHURNER[spec.name]
    at.button(key="predict_submit").click().run()
    assert fake_api.called("predict")[0][0] == EXAMPLE_CHURNER
    assert_clean(at)


def test_inconsistent_values_warn_but_still_score(open_page, fake_api):
    at = open_page("predict")
    at.radio(key="f_voice_mail_plan").set_value("no")
    at.number_input(key="f_number_vmail_messages").set_value(12)
    at.button(key="predict_submit").click().run()
    assert any("no voice-mail plan" in w.value for w in at.warning)
    assert fake_api.called("predict")
    assert_clean(at)


def test_validation_rejects_bad_values_before_sending():
    customer, errors, _ = validate(
        {**EXAMPLE_LOYAL, "account_length": 9999, "state": "ZZ", "total_day_minutes": None}
    )
    assert customer is None
    assert set(errors) == {"account_length", "state", "total_day_minutes"}
    assert errors["total_day_minutes"] == "required: enter a value"  # never taken as 0
    customer, errors, warnings = validate(dict(EXAMPLE_LOYAL))
    assert customer == EXAMPLE_LOYAL and not errors and not warnings
    assert "Allowed: 408, 415, 510" in help_text(SPECS["area_code"])


def _captions(at) -> list[str]:
    return [c.value for c in at.caption]


def test_a_bad_field_is_marked_and_the_previous_result_is_cleared(open_page, fake_api):
    """Negative minutes and an emptied field: a message under each, nothing sent, and the result
    of the previous (valid) click is no longer on screen as if it were current."""
    at = open_page("predict")
    at.button(key="predict_submit").click().run()
    assert metric(at, "Churn probability") == "73.1 %"
    at.number_input(key="f_total_day_minutes").set_value(-12.0)
    at.number_input(key="f_total_eve_calls").set_value(None)
    at.button(key="predict_submit").click().run()
    assert_clean(at)
    assert len(fake_api.called("predict")) == 1  # only the first, valid click
    assert "Churn probability" not in [m.label for m in at.metric]
    marked = [c for c in _captions(at) if ":material/error:" in c]
    assert len(marked) == 2 and any("required" in c for c in marked)
    assert any("greater than or equal to 0" in c for c in marked)
    assert "fix the 2 field(s) marked above" in at.error[0].value
    assert "Total day minutes (minutes)" in at.error[0].value


def test_predict_again_on_the_same_values_is_the_same_prediction(open_page, fake_api):
    """Three clicks on an unchanged form: one call, one stored prediction, its answer kept on
    screen; a changed field scores again, and so does a click after a failed call."""
    at = open_page("predict")
    for _ in range(3):
        at.button(key="predict_submit").click().run()
        assert metric(at, "Churn probability") == "73.1 %"
    assert len(fake_api.called("predict")) == 1
    at.number_input(key="f_number_customer_service_calls").set_value(4)
    at.button(key="predict_submit").click().run()
    assert len(fake_api.called("predict")) == 2
    fake_api.fail["predict"] = ApiError(f"{FAKE_URL}/predict", None, "cannot reach the API")
    at.number_input(key="f_number_customer_service_calls").set_value(5)
    at.button(key="predict_submit").click().run()
    del fake_api.fail["predict"]
    at.button(key="predict_submit").click().run()  # the same values, but nothing was answered
    assert len(fake_api.called("predict")) == 4
    assert metric(at, "Churn probability") == "73.1 %"
    assert_clean(at)


def test_api_down_shows_the_url_and_a_retry_that_works(open_page, fake_api):
    fake_api.fail["predict"] = ApiError(f"{FAKE_URL}/predict", None, "cannot reach the API")
    at = open_page("predict")
    at.button(key="predict_submit").click().run()
    assert_clean(at)
    message = at.error[0].value
    assert "not reachable" in message and f"`{FAKE_URL}/predict`" in message
    assert not at.metric or "Churn probability" not in [m.label for m in at.metric]

    del fake_api.fail["predict"]  # the API comes back
    at.button(key="retry_score_this_customer").click().run()
    assert_clean(at)
    assert metric(at, "Churn probability") == "73.1 %"
    assert len(fake_api.called("predict")) == 2


def test_real_client_against_a_dead_port_never_shows_a_traceback(open_page, down_api):
    at = open_page("predict")
    assert any(down_api.base_url in e.value for e in at.sidebar.error)  # sidebar status
    at.button(key="predict_submit").click().run()
    assert_clean(at)
    assert any(f"{down_api.base_url}/predict" in e.value for e in at.error)
    assert at.button(key="retry_score_this_customer") is not None


def test_explain_failure_keeps_the_prediction(open_page, fake_api):
    fake_api.fail["explain"] = ApiError(f"{FAKE_URL}/predict/explain", 404, "Not Found")
    at = open_page("predict")
    at.button(key="predict_submit").click().run()
    assert_clean(at)
    assert metric(at, "Churn probability") == "73.1 %"
    assert any("Drivers are not available" in i.value for i in at.info)


def test_drivers_chart_and_table_share_one_order(open_page, fake_api, monkeypatch):
    """Largest absolute effect first, in the table and in the chart, whatever the sign."""
    original = fake_api.explain

    def mixed(customer):
        answer = original(customer)
        answer["drivers"] = [
            {"feature": "total_day_minutes", "value": 120.0, "contribution": 0.05},
            {"feature": "international_plan", "value": "no", "contribution": -0.3},
            {"feature": "number_customer_service_calls", "value": 4, "contribution": 0.1},
        ]
        return answer

    monkeypatch.setattr(fake_api, "explain", mixed)
    at = open_page("predict")
    at.button(key="predict_submit").click().run()
    assert_clean(at)
    table = at.dataframe[0].value
    assert table["contribution"].tolist() == [-0.3, 0.1, 0.05]
    spec = json.loads(at.get("vega_lite_chart")[-1].proto.spec)
    # the chart's rows are the table's rows, top to bottom
    assert spec["encoding"]["y"]["sort"] == table["feature"].tolist()
    assert "one usage figure" in texts(at)
    assert "the typical customer has no drivers" in texts(at)  # the method, in one sentence


def test_the_typical_customer_has_no_drivers_and_says_why(open_page, fake_api, monkeypatch):
    original = fake_api.explain

    def typical(customer):
        return {**original(customer), "drivers": []}

    monkeypatch.setattr(fake_api, "explain", typical)
    at = open_page("predict")
    at.button(key="predict_submit").click().run()
    assert_clean(at)
    assert any("every field is at the typical customer's value" in i.value for i in at.info)


def test_a_result_is_never_shown_for_values_the_form_no_longer_holds(open_page, fake_api):
    """After a prediction, a preset or an edited field hides the result (it was for other
    values) until Predict is pressed again; going back to the scored values shows it again."""
    at = open_page("predict")
    at.button(key="predict_submit").click().run()
    assert metric(at, "Churn probability")
    at.number_input(key="f_number_customer_service_calls").set_value(7).run()
    assert not at.metric and any("form changed" in i.value for i in at.info)
    at.number_input(key="f_number_customer_service_calls").set_value(
        EXAMPLE_LOYAL["number_customer_service_calls"]
    ).run()
    assert metric(at, "Churn probability") and not at.info
    at.button(key="preset_churner").click().run()
    assert not at.metric and any("form changed" in i.value for i in at.info)
    at.button(key="predict_submit").click().run()
    assert metric(at, "Churn probability") and len(fake_api.called("predict")) == 2
    assert_clean(at)


def test_minutes_and_charges_that_disagree_get_a_warning_and_still_score(open_page, fake_api):
    at = open_page("predict")
    at.number_input(key="f_total_day_minutes").set_value(300.0)
    at.number_input(key="f_total_day_charge").set_value(2.0)
    at.button(key="predict_submit").click().run()
    assert any("total_day_charge 2.00 disagrees" in w.value for w in at.warning)
    assert fake_api.called("predict") and metric(at, "Churn probability")
    assert_clean(at)
