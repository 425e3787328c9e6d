"""The committed data set and the schema validator on good and bad files (real CSV files)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from core.data import file_sha256, load_dataset
from core.schema import FEATURE_NAMES, TARGET, SchemaError
from core.tables import TableError, read_path
from tests.factories import DATA_CSV, ROOT, raw_rows, to_bigml, write_csv


def test_committed_csv_matches_its_checksum_and_readme() -> None:
    digest = file_sha256(DATA_CSV)
    assert (DATA_CSV.parent / "churn.csv.sha256").read_text("utf-8").split()[0] == digest
    assert digest in (ROOT / "data" / "README.md").read_text("utf-8")


def test_committed_csv_is_the_full_valid_table() -> None:
    raw = pd.read_csv(DATA_CSV)
    assert list(raw.columns) == [*FEATURE_NAMES, TARGET]
    table = read_path(DATA_CSV, require_target=True)
    report = table.report
    assert report.ok and bool(report.valid_rows.all()) and len(report.frame) == len(raw)
    assert table.passthrough.shape[1] == 0 and table.warnings == ()
    assert table.read_as == "read as ,-separated, decimal point, UTF-8"
    churn_rate = (raw[TARGET] == "yes").mean()
    assert 0.05 < churn_rate < 0.5  # imbalanced, both classes well represented


def _missing_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="total_eve_minutes")


def _wrong_type(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({"total_day_calls": object}).assign(
        total_day_calls=["many", *frame["total_day_calls"].iloc[1:]]
    )


def _out_of_range(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(account_length=[*frame["account_length"].iloc[:-1], 9999])


def _unknown_category(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(international_plan=["maybe", *frame["international_plan"].iloc[1:]])


def _fractional_integer(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(number_customer_service_calls=[1.5, *frame.iloc[1:, -2]])


def _missing_value(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(voice_mail_plan=[None, *frame["voice_mail_plan"].iloc[1:]])


def _missing_target(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=TARGET)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_missing_column, "total_eve_minutes (all rows): missing column"),
        (_wrong_type, "total_day_calls (row 0): not a number: 'many'"),
        (_out_of_range, "account_length (row 11): 9999 outside [0, 400]"),
        (_unknown_category, "international_plan (row 0): unknown value 'maybe'; expected no, yes"),
        (_fractional_integer, "number_customer_service_calls (row 0): 1.5 is not an integer"),
        (_missing_value, "voice_mail_plan (row 0): missing value"),
        (_missing_target, "churn (all rows): missing column"),
    ],
    ids=["missing-column", "wrong-type", "out-of-range", "unknown-category", "fractional",
         "missing-value", "missing-target"],
)  # fmt: skip
def test_bad_files_are_refused_with_the_reason(
    tmp_path: Path, corrupt: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    path = write_csv(corrupt(raw_rows(12, seed=1)), tmp_path / "bad.csv")
    with pytest.raises(SchemaError) as error:
        load_dataset(path)
    assert message in str(error.value)
    assert any(str(issue) == message for issue in error.value.report.issues)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    header_only = tmp_path / "empty.csv"
    header_only.write_text(",".join([*FEATURE_NAMES, TARGET]) + "\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="the table has no rows"):
        load_dataset(header_only)
    nothing = tmp_path / "nothing.csv"
    nothing.write_text("", encoding="utf-8")
    with pytest.raises(TableError, match="the file is empty"):
        load_dataset(nothing)


def test_bigml_spelling_is_normalised(tmp_path: Path) -> None:
    rows = raw_rows(15, seed=2)
    bigml = to_bigml(rows)
    assert "Account length" in bigml.columns and bigml["Churn"].dtype == bool
    loaded = load_dataset(write_csv(bigml, tmp_path / "bigml.csv"))
    assert list(loaded.columns) == [*FEATURE_NAMES, TARGET]
    assert list(loaded["area_code"]) == list(rows["area_code"])
    assert list(loaded[TARGET]) == list(rows[TARGET])


def test_every_bad_row_is_reported_not_only_the_first(tmp_path: Path) -> None:
    rows = raw_rows(10, seed=3).assign(total_intl_calls=-1, state="??")
    with pytest.raises(SchemaError) as error:
        load_dataset(write_csv(rows, tmp_path / "bad.csv"))
    issues = error.value.report.issues
    assert {i.row for i in issues if i.column == "total_intl_calls"} == set(range(10))
    assert {i.row for i in issues if i.column == "state"} == set(range(10))
