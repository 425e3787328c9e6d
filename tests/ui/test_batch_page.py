"""Batch page and its scoring logic: both spellings, per-row issues, chunked scoring, download."""

from __future__ import annotations

import io

import pandas as pd

from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL, FEATURES
from tests.ui.conftest import FAKE_URL, FakeApi, assert_clean, texts
from ui.batch_scoring import issues_table, score, template_csv, validate
from ui.client import ApiError


def bigml_csv(rows: list[dict]) -> bytes:
    """The rows in the BigML spelling: `Account length`, area code 415, Yes/No plans, Churn."""
    frame = pd.DataFrame(rows)
    frame["area_code"] = frame["area_code"].str.removeprefix("area_code_").astype(int)
    for name in ("international_plan", "voice_mail_plan"):
        frame[name] = frame[name].map({"yes": "Yes", "no": "No"})
    frame = frame.rename(columns={spec.name: spec.bigml for spec in FEATURES})
    frame["Churn"] = [False] * len(frame)
    return frame.to_csv(index=False).encode()


BAD = {**EXAMPLE_LOYAL, "state": "XX", "account_length": -3}
UPLOAD = bigml_csv([EXAMPLE_LOYAL, EXAMPLE_CHURNER, BAD])


def _upload(at, content: bytes, name: str = "customers.csv"):
    at.file_uploader(key="batch_file").set_value((name, content, "text/csv"))
    return at.run()


def _metric(at, name: str) -> str:
    return next(m.value for m in at.metric if m.label == name)


def test_bigml_upload_shows_row_issues_then_scores_the_valid_rows(open_page, fake_api):
    at = _upload(open_page("batch"), UPLOAD)
    assert_clean(at)
    assert (_metric(at, "Rows"), _metric(at, "Valid rows"), _metric(at, "Issues")) == (
        "3",
        "2",
        "2",
    )
    issues = at.dataframe[1].value  # [0] is the upload preview
    assert issues["row"].tolist() == [3, 3]
    assert set(issues["column"]) == {"state", "account_length"}
    assert "skipped" in at.warning[0].value
    assert not fake_api.called("predict_batch"), "nothing is sent before the user asks"

    at.button(key="batch_score").click().run()
    assert_clean(at)
    assert fake_api.called("predict_batch") == [(2,)]
    assert _metric(at, "Rows scored") == "2"
    assert _metric(at, "Rows skipped (invalid)") == "1"
    assert _metric(at, "Predicted churners") == "1"
    scored = at.dataframe[-1].value
    assert scored["churn_probability"].tolist()[:2] == [0.1, 0.9]
    assert "Model version 2" in texts(at)


def test_missing_column_blocks_scoring(open_page, fake_api):
    content = pd.DataFrame([EXAMPLE_LOYAL]).drop(columns=["state"]).to_csv(index=False).encode()
    at = _upload(open_page("batch"), content)
    assert_clean(at)
    assert "cannot be scored" in at.error[0].value and "state: missing column" in at.error[0].value
    assert not [b for b in at.button if b.key == "batch_score"]


def test_unreadable_file_is_reported(open_page, fake_api):
    at = _upload(open_page("batch"), b"   \n")
    assert_clean(at)
    assert "Cannot read `customers.csv`" in at.error[0].value


def test_api_down_while_scoring_shows_url_and_retry(open_page, fake_api):
    fake_api.fail["predict_batch"] = ApiError(f"{FAKE_URL}/predict/batch", None, "timeout")
    at = _upload(open_page("batch"), UPLOAD)
    at.button(key="batch_score").click().run()
    assert_clean(at)
    assert f"`{FAKE_URL}/predict/batch`" in at.error[0].value
    del fake_api.fail["predict_batch"]
    at.button(key="retry_score_the_file").click().run()  # retry re-sends the pending file
    assert_clean(at)
    assert _metric(at, "Rows scored") == "2"


def test_score_chunks_reports_progress_and_keeps_the_uploaded_spelling():
    api = FakeApi()
    table = validate(bigml_csv([EXAMPLE_LOYAL, EXAMPLE_CHURNER] * 2 + [BAD]))
    seen: list[tuple[int, int]] = []
    result = score(api, table, lambda d, t: seen.append((d, t)), chunk_rows=3)
    assert api.called("predict_batch") == [(3,), (1,)]
    assert seen == [(3, 4), (4, 4)]
    assert (result.scored, result.skipped, result.model_version) == (4, 1, "2")
    scored = pd.read_csv(io.BytesIO(result.to_csv()))
    assert list(scored.columns[:2]) == ["State", "Account length"]  # BigML spelling kept
    assert scored["churn_probability"].tolist()[:4] == [0.1, 0.9, 0.1, 0.9]
    assert pd.isna(scored["churn_probability"].iloc[4])
    assert "state: unknown value 'XX'" in scored["issues"].iloc[4]


def test_records_are_typed_for_the_api():
    table = validate(template_csv())
    assert table.report.ok
    assert issues_table(table.report).empty
    api = FakeApi()
    captured: list[list[dict]] = []
    api.predict_batch = lambda rows: (
        captured.append(list(rows)),
        FakeApi.predict_batch(api, rows),
    )[1]
    score(api, table)
    assert captured[0] == [EXAMPLE_LOYAL, EXAMPLE_CHURNER]
    assert isinstance(captured[0][0]["account_length"], int)
