"""Batch page and its scoring logic: both spellings, per-row issues, chunked scoring, download."""

from __future__ import annotations

import io
import json

import pandas as pd

from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL, FEATURES
from tests.ui.conftest import FAKE_URL, FakeApi, assert_clean, metric, texts
from ui.batch_scoring import issues_table, score, template_csv, validate
from ui.client import ApiError


def bigml_csv(rows: list[dict], churn: list[bool] | None = None) -> bytes:
    """The rows in the BigML spelling: `Account length`, area code 415, Yes/No plans, and a
    Churn column (all False unless ``churn`` is given; ``[]``: no Churn column)."""
    frame = pd.DataFrame(rows)
    frame["area_code"] = frame["area_code"].str.removeprefix("area_code_").astype(int)
    for name in ("international_plan", "voice_mail_plan"):
        frame[name] = frame[name].map({"yes": "Yes", "no": "No"})
    frame = frame.rename(columns={spec.name: spec.bigml for spec in FEATURES})
    if churn != []:
        frame["Churn"] = churn if churn is not None else [False] * len(frame)
    return frame.to_csv(index=False).encode()


BAD = {**EXAMPLE_LOYAL, "state": "XX", "account_length": -3}
UPLOAD = bigml_csv([EXAMPLE_LOYAL, EXAMPLE_CHURNER, BAD])


def _upload(at, content: bytes, name: str = "customers.csv"):
    at.file_uploader(key="batch_file").set_value((name, content, "text/csv"))
    return at.run()


def test_bigml_upload_shows_row_issues_then_scores_the_valid_rows(open_page, fake_api):
    at = _upload(open_page("batch"), UPLOAD)
    assert_clean(at)
    assert (metric(at, "Rows"), metric(at, "Valid rows"), metric(at, "Issues")) == (
        "3",
        "2",
        "2",
    )
    issues = at.dataframe[1].value  # [0] is the upload preview
    assert issues["row"].tolist() == [2, 2]  # 0-based, as the API numbers rows, and said so
    assert "Row numbers: rows are numbered from 0 (the first data row" in texts(at)
    assert set(issues["column"]) == {"state", "account_length"}
    assert "skipped" in at.warning[0].value and "`issues` column" in at.warning[0].value
    assert not fake_api.called("predict_batch"), "nothing is sent before the user asks"

    at.button(key="batch_score").click().run()
    assert_clean(at)
    assert fake_api.called("predict_batch") == [(2,)]
    assert metric(at, "Rows scored") == "2"
    assert metric(at, "Rows skipped (invalid)") == "1"
    assert metric(at, "Predicted to churn") == "50.0 %"
    assert "1 of n = 2 scored rows predicted to churn · model version 2, threshold 0.420" in texts(
        at
    )
    scored = at.dataframe[-1].value
    assert list(scored.columns[:2]) == ["churn_probability", "churn_label"]  # results first
    assert scored["churn_probability"].tolist()[:2] == [0.1, 0.9]


def test_a_file_of_invalid_rows_says_what_to_do_and_offers_no_scoring(open_page, fake_api):
    """No valid row: no scored file will exist, so the note does not point at one."""
    at = _upload(open_page("batch"), bigml_csv([BAD, {**BAD, "state": "ZZ"}]))
    assert_clean(at)
    assert metric(at, "Valid rows") == "0"
    note = at.warning[0].value
    assert "no row can be scored" in note and "scored file" not in note
    assert not [b for b in at.button if b.key == "batch_score"]


def test_missing_column_blocks_scoring(open_page, fake_api):
    content = pd.DataFrame([EXAMPLE_LOYAL]).drop(columns=["state"]).to_csv(index=False).encode()
    at = _upload(open_page("batch"), content)
    assert_clean(at)
    assert "cannot be scored" in at.error[0].value and "missing column: state" in at.error[0].value
    assert not [b for b in at.button if b.key == "batch_score"]


def test_a_table_of_something_else_gets_one_compact_error(open_page, fake_api):
    """One customer column among others (a table of something else): one error naming the 18
    missing columns once, no table of issues with empty row numbers."""
    content = pd.DataFrame({"state": ["KS", "OH"], "population": [2.1, 0.5]}).to_csv(index=False)
    at = _upload(open_page("batch"), content.encode())
    assert_clean(at)
    assert len(at.error) == 1
    lines = [line for line in at.error[0].value.splitlines() if line.startswith("- ")]
    assert len(lines) == 1 and lines[0].startswith("- missing column: ")
    assert lines[0].count(",") == len(FEATURES) - 2  # each missing column once
    assert len(at.dataframe) == 1  # the upload preview only
    assert "None" not in at.error[0].value


def test_a_labelled_file_shows_the_apis_report_histogram_and_confusion_matrix(open_page, fake_api):
    """One request with the labels (the API's report covers the whole file), the figures with n
    and intervals, the confusion matrix, and the histogram with the threshold."""
    rows = [EXAMPLE_LOYAL, EXAMPLE_CHURNER] * 20
    churn = [False, True] * 18 + [True, False] * 2  # 4 of 40 predicted wrong
    at = _upload(open_page("batch"), bigml_csv(rows, churn))
    at.button(key="batch_score").click().run()
    assert_clean(at)
    assert fake_api.called("predict_batch") == [(40,)]
    assert metric(at, "F1") == "90.0 %"
    assert "n = 40" in texts(at) and "95 % CI" in texts(at)
    matrix = at.dataframe[1].value  # after the upload preview
    assert matrix.loc["churned"].tolist() == [18, 2] and matrix.loc["stayed"].tolist() == [2, 18]
    chart = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    layers = chart["layer"]
    assert layers[0]["mark"]["type"] == "bar" and layers[0]["encoding"]["x"]["bin"]
    assert layers[1]["mark"]["type"] == "rule"
    assert layers[1]["encoding"]["x"]["field"] == "threshold"
    assert "threshold 0.420" in texts(at)


def test_without_labels_no_report_and_the_share_predicted_to_churn(open_page, fake_api):
    at = _upload(open_page("batch"), bigml_csv([EXAMPLE_CHURNER] * 3 + [EXAMPLE_LOYAL], churn=[]))
    at.button(key="batch_score").click().run()
    assert_clean(at)
    assert metric(at, "Predicted to churn") == "75.0 %"
    assert not [m for m in at.metric if m.label == "F1"]
    assert len(at.get("vega_lite_chart")) == 1  # the histogram


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
    assert metric(at, "Rows scored") == "2"


def test_score_chunks_reports_progress_and_keeps_the_uploaded_spelling():
    api = FakeApi()
    table = validate(bigml_csv([EXAMPLE_LOYAL, EXAMPLE_CHURNER] * 2 + [BAD], churn=[]))
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
