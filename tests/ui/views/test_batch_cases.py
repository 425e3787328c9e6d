"""Every input of tests/fixtures/cases/ on the Batch page (the API faked at ui.client): what was
read, the warnings, the reasons for broken tables, never an exception."""

from __future__ import annotations

import pytest

from tests.factories import CASES
from tests.ui.conftest import FakeApi, assert_clean, metric, texts
from ui.batch_scoring import records, validate


def _upload(open_page, name: str):
    at = open_page("batch")
    at.file_uploader(key="batch_file").set_value((name, (CASES / name).read_bytes(), "text/csv"))
    return at.run()


def test_fr_excel_semicolon_decimal_comma(open_page, fake_api: FakeApi) -> None:
    """The dialect is shown; the rows sent are exactly the canonical rows of the same customers."""
    at = _upload(open_page, "fr_excel_semicolon_decimal_comma.csv")
    assert_clean(at)
    assert "read as ;-separated, decimal comma, UTF-8" in texts(at)
    assert (metric(at, "Valid rows"), metric(at, "Issues")) == ("5", "0")
    french = validate((CASES / "fr_excel_semicolon_decimal_comma.csv").read_bytes())
    baseline = validate((CASES / "bigml_5rows_baseline.csv").read_bytes())
    assert records(french.report) == records(baseline.report)
    at.button(key="batch_score").click().run()
    assert_clean(at)
    assert fake_api.called("predict_batch") == [(5,)]


def test_kaggle_telecoms_phone_number(open_page, fake_api: FakeApi) -> None:
    """Scored; `phone number` listed as a warning and kept next to each prediction."""
    at = _upload(open_page, "kaggle_telecoms_phone_number.csv")
    assert_clean(at)
    assert "not in the schema, passed through unchanged: 'phone number'" in at.warning[0].value
    at.button(key="batch_score").click().run()
    assert_clean(at)
    scored = at.dataframe[-1].value
    assert scored["phone number"].tolist()[:2] == ["382-4500", "382-4501"]
    assert scored["churn_probability"].notna().all()
    download = validate((CASES / "kaggle_telecoms_phone_number.csv").read_bytes())
    assert "phone number" in download.passthrough.columns
    del fake_api


def test_duplicate_churn_columns(open_page, fake_api: FakeApi) -> None:
    """An error naming both columns; nothing can be scored."""
    at = _upload(open_page, "duplicate_churn_columns.csv")
    assert_clean(at)
    assert "'Churn' and 'churn' are both the field 'churn'" in at.error[0].value
    assert not [b for b in at.button if b.key == "batch_score"]
    assert not fake_api.called("predict_batch")


def test_batch_value_is_list(open_page, fake_api: FakeApi) -> None:
    """The row and the field named; the row is not sent."""
    at = _upload(open_page, "batch_value_is_list.json")
    assert_clean(at)
    issues = at.dataframe[1].value
    assert issues[["row", "column"]].values.tolist() == [[0, "state"]]  # 0-based, as the API
    assert "a list is not a single value" in issues["reason"].iloc[0]
    assert not [b for b in at.button if b.key == "batch_score"]
    del fake_api


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("batch_df_to_dict_wrapped_in_list.json", "orient='records'"),
        ("json_bigml_keys.json", "a single customer"),
        ("empty_file.csv", "the file is empty"),
    ],
)
def test_what_is_not_a_table_says_why(open_page, fake_api: FakeApi, name: str, reason: str) -> None:
    """Cannot read `<file>`: the reason and what to change."""
    at = _upload(open_page, name)
    assert_clean(at)
    assert at.error[0].value.startswith(f"Cannot read `{name}`")
    assert reason in at.error[0].value
    del fake_api


def test_bigml_5rows_baseline(open_page, fake_api: FakeApi) -> None:
    """Five valid rows, scored; the download keeps every uploaded column, label included."""
    at = _upload(open_page, "bigml_5rows_baseline.csv")
    assert_clean(at)
    assert (metric(at, "Rows"), metric(at, "Valid rows")) == ("5", "5")
    at.button(key="batch_score").click().run()
    assert_clean(at)
    assert metric(at, "Rows scored") == "5"
    scored = at.dataframe[-1].value
    assert list(scored.columns[:2]) == ["churn_probability", "churn_label"]
    assert list(scored.columns[5:7]) == ["State", "Account length"]  # then the upload's columns
    assert scored["Churn"].tolist() == ["False", "True", "True", "False", "False"]
    del fake_api
