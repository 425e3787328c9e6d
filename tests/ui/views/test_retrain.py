"""Retrain page: start with the key, live progress by polling, gate decision, failures."""

from __future__ import annotations

from tests.factories import train_result
from tests.ui.conftest import FAKE_URL, assert_clean, metric, texts
from ui.client import ApiError

RUNNING = {
    "job_id": "job-123",
    "status": "running",
    "created_at": "2025-01-03T00:00:00Z",
    "updated_at": "2025-01-03T00:00:02Z",
    "progress": [
        {"step": "load data", "fraction": 0.1, "at": "2025-01-03T00:00:00Z"},
        {"step": "train", "fraction": 0.5, "at": "2025-01-03T00:00:02Z"},
    ],
    "result": None,
    "error": None,
}
DONE = {**RUNNING, "status": "succeeded",
        "progress": RUNNING["progress"]
        + [{"step": "gate", "fraction": 1.0, "at": "2025-01-03T00:00:09Z"}],
        "result": train_result(reason="F1 0.85 beats 0.83", compared_rows=117, compared_churners=21,
                               excluded_rows=417).model_dump(mode="json")}  # fmt: skip


def test_start_needs_a_key(open_page, fake_api):
    at = open_page("retrain", key=None)
    at.button(key="retrain_start").click().run()
    assert_clean(at)
    assert "needs the admin key (API_KEY)" in at.warning[0].value
    assert not fake_api.called("start_retrain")


def test_a_reader_key_may_not_retrain(open_page, fake_api):
    at = open_page("retrain", key="reader-key")
    at.button(key="retrain_start").click().run()
    assert_clean(at)
    assert "this key may not do this" in at.warning[0].value and "API_KEY" in at.warning[0].value
    assert fake_api.keys_seen[-1] == "reader-key"


def test_progress_then_gate_decision(open_page, fake_api):
    fake_api.retrain_states = [RUNNING, DONE]
    at = open_page("retrain")
    at.button(key="retrain_start").click().run()
    assert_clean(at)
    assert fake_api.called("start_retrain") == [("good-key", False, "data.csv")]
    assert "status **running**" in texts(at)
    assert at.get("progress")[0].value == 50  # percent
    at.run()  # the next poll
    assert_clean(at)
    assert "Promoted to champion. F1 0.85 beats 0.83" in at.success[0].value
    assert metric(at, "New model f1") == "0.8500"
    assert metric(at, "Champion f1") == "0.8300"
    assert metric(at, "New version") == "4"
    assert metric(at, "Rows compared") == "117"
    caption = " ".join(c.value for c in at.caption)
    assert (
        "same 117 holdout rows, 21 of them churners, that neither model was trained on" in caption
    )
    assert "(417 rows a model was trained on were left out)" in caption


def test_rejected_and_failed_jobs(open_page, fake_api):
    fake_api.retrain_states = [{**DONE, "result": {**DONE["result"], "promoted": False,
                                                   "reason": "F1 below the floor"}}]  # fmt: skip
    at = open_page("retrain")
    at.button(key="retrain_start").click().run()
    assert "Not promoted; the champion stays. F1 below the floor" in at.warning[0].value
    fake_api.retrain_states = [{**RUNNING, "status": "failed", "error": "data invalid"}]
    at.text_input(key="retrain_job_input").set_value("job-9")
    at.button(key="retrain_follow").click().run()
    assert_clean(at)
    assert "The retrain failed: data invalid" in at.error[0].value
    assert fake_api.called("retrain_status")[-1] == ("job-9",)


def test_conflict_while_one_runs(open_page, fake_api):
    fake_api.fail["start_retrain"] = ApiError(f"{FAKE_URL}/retrain", 409, "a retrain is running")
    at = open_page("retrain")
    at.button(key="retrain_start").click().run()
    assert_clean(at)
    assert "already running" in at.warning[0].value


def test_api_down(open_page, down_api):
    at = open_page("retrain", key="k")
    at.button(key="retrain_start").click().run()
    assert_clean(at)
    assert f"`{down_api.base_url}/retrain`" in at.error[0].value
