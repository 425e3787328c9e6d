"""core.tables: every format, encoding, separator and decimal mark people send, read like the
canonical table; every refusal is one line saying what to change."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.schema import FEATURE_NAMES, SPECS, TARGET
from core.tables import (
    Table,
    TableError,
    TooManyRows,
    json_body,
    passthrough_records,
    read_table,
    with_results,
    write_like,
)
from tests.factories import raw_rows, to_bigml

ROWS = raw_rows(12, seed=4)


def _canonical() -> pd.DataFrame:
    return read_table(ROWS.to_csv(index=False).encode()).report.frame


def _bigml_text(sep: str = ",", decimal: str = ".") -> str:
    return to_bigml(ROWS).to_csv(index=False, sep=sep, decimal=decimal)


def _same_as_canonical(table: Table) -> None:
    assert table.report.ok, table.report.summary()
    pd.testing.assert_frame_equal(table.report.frame, _canonical())


@pytest.mark.parametrize(
    ("sep", "decimal", "encoding", "read_as"),
    [
        (",", ".", "utf-8", "read as ,-separated, decimal point, UTF-8"),
        (";", ",", "utf-8", "read as ;-separated, decimal comma, UTF-8"),
        (";", ",", "utf-8-sig", "read as ;-separated, decimal comma, UTF-8 with BOM"),
        ("\t", ".", "utf-16", "read as tab-separated, decimal point, UTF-16"),
        ("\t", ",", "utf-16", "read as tab-separated, decimal comma, UTF-16"),
        ("|", ".", "utf-8", "read as |-separated, decimal point, UTF-8"),
        (",", ",", "utf-8", "read as ,-separated, decimal comma, UTF-8"),  # quoted "184,5"
    ],
)
def test_text_dialects_read_like_the_canonical_table(
    sep: str, decimal: str, encoding: str, read_as: str
) -> None:
    table = read_table(_bigml_text(sep, decimal).encode(encoding))
    _same_as_canonical(table)
    assert table.read_as == read_as
    assert table.warnings == ()
    assert list(table.passthrough.columns) == ["Churn"]  # the label, passed through silently


def test_cp1252_is_guessed_with_a_warning_and_accents_kept() -> None:
    frame = to_bigml(ROWS).assign(Région="Île-de-France")
    table = read_table(frame.to_csv(index=False, sep=";", decimal=",").encode("cp1252"))
    _same_as_canonical(table)
    assert table.read_as == "read as ;-separated, decimal comma, cp1252"
    assert any("encoding guessed as cp1252" in w and "CSV UTF-8" in w for w in table.warnings)
    assert set(table.passthrough["Région"]) == {"Île-de-France"}


def test_a_declared_charset_is_honoured() -> None:
    content = to_bigml(ROWS).assign(note="été").to_csv(index=False).encode("latin-1")
    table = read_table(content, content_type="text/csv; charset=ISO-8859-1")
    assert table.read_as.endswith("Latin-1") and set(table.passthrough["note"]) == {"été"}
    with pytest.raises(TableError, match="not valid UTF-8.*declared"):
        read_table(content, content_type="text/csv; charset=utf-8")
    with pytest.raises(TableError, match="unknown charset 'klingon'"):
        read_table(content, content_type="text/csv; charset=klingon")


def test_workbooks_are_read_from_their_first_filled_sheet() -> None:
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        pd.DataFrame().to_excel(writer, sheet_name="Notes")
        to_bigml(ROWS).assign(id=[f"00{i}" for i in range(12)]).to_excel(
            writer, sheet_name="Clients", index=False
        )
        pd.DataFrame({"x": [1]}).to_excel(writer, sheet_name="Other", index=False)
    table = read_table(buffer.getvalue(), filename="customers.xlsx")
    _same_as_canonical(table)
    assert table.read_as == "read as a workbook, sheet 'Clients'"
    assert table.warnings[0] == "read the first filled sheet 'Clients'; not read: 'Other'"
    assert table.passthrough["id"].tolist()[:2] == ["000", "001"]  # text ids keep their zeros
    assert table.passthrough["Churn"].tolist()[0] in ("TRUE", "FALSE")


def test_a_broken_workbook_is_refused_with_the_reason() -> None:
    with pytest.raises(TableError, match="not a readable workbook"):
        read_table(b"PK\x03\x04 not really a zip")


def test_json_rows_in_any_spelling_and_the_canonical_fast_path_agree() -> None:
    canonical = ROWS.drop(columns=TARGET).to_json(orient="records").encode()
    fast = read_table(canonical, content_type="application/json")
    spelled = json.dumps(to_bigml(ROWS).to_dict("records")).encode()
    general = read_table(spelled, filename="rows.json")
    assert fast.read_as == general.read_as == "read as a JSON array of 12 object(s), UTF-8"
    pd.testing.assert_frame_equal(fast.report.frame, general.report.frame)
    assert general.passthrough.columns.tolist() == ["Churn"]
    bom = read_table(b"\xef\xbb\xbf" + spelled, content_type="application/json")
    assert bom.read_as.endswith("UTF-8 with BOM")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([ROWS.drop(columns=TARGET).to_dict()], "to_dict() in a list"),
        (ROWS.drop(columns=TARGET).to_dict(), "an object of columns"),
        (ROWS.drop(columns=TARGET).to_dict(orient="list"), "an object of columns"),
        (json.loads(ROWS.to_json(orient="split")), "a 'split' table"),
        ({"customers": [{"state": "KS"}]}, "wrapping the rows in 'customers'"),
        (ROWS.drop(columns=TARGET).to_dict("records")[0], "a single customer"),
        ([], "no rows"),
        ([{"state": "KS"}, 3, "x"], "row(s) 1, 2 are not JSON objects"),
        (42, "got int"),
    ],
    ids=["to_dict-in-list", "to_dict", "orient-list", "orient-split", "wrapped", "one-object",
         "empty", "not-objects", "number"],
)  # fmt: skip
def test_json_shapes_that_are_not_rows_say_which_shape_is_expected(
    body: object, message: str
) -> None:
    with pytest.raises(TableError) as caught:
        read_table(json.dumps(body).encode(), content_type="application/json")
    assert message in str(caught.value)
    if message != "no rows":
        assert "orient='records'" in str(caught.value)


def test_lists_and_objects_in_cells_are_row_issues_naming_the_field() -> None:
    rows = ROWS.drop(columns=TARGET).to_dict("records")
    rows[1]["state"] = ["KS"]
    rows[2]["account_length"] = {"value": 3}
    table = read_table(json.dumps(rows).encode(), content_type="application/json")
    issues = {(i.row, i.column): i.reason for i in table.report.issues}
    assert issues == {
        (1, "state"): "a list is not a single value: ['KS']",
        (2, "account_length"): "an object is not a single value: {'value': 3}",
    }
    assert table.report.valid_rows.tolist() == [True, False, False] + [True] * 9


@pytest.mark.parametrize(
    ("columns", "named"),
    [
        (["Churn", "churn"], ("Churn", "churn")),
        (["Account length", "account_length"], ("Account length", "account_length")),
        (["State", "STATE"], ("State", "STATE")),
        (["State", "State"], ("State", "State")),  # the same header twice
    ],
)
def test_a_field_given_twice_is_refused_naming_both_columns(
    columns: list[str], named: tuple[str, str]
) -> None:
    frame = to_bigml(ROWS)
    frame = frame.assign(**{columns[1]: frame[columns[0]]}) if columns[0] != columns[1] else frame
    text = frame.to_csv(index=False)
    if columns[0] == columns[1]:
        text = "\n".join(f"{line},{line.split(',')[0]}" for line in text.splitlines()) + "\n"
    with pytest.raises(TableError) as caught:
        read_table(text.encode())
    assert caught.value.columns == named
    assert f"{named[0]!r} and {named[1]!r} are both the field" in str(caught.value)


def test_unknown_columns_pass_through_unchanged_with_one_warning() -> None:
    frame = ROWS.assign(customer_id=[f"00{i}" for i in range(12)], note="")
    text = frame.to_csv(index=True)  # the pandas index: a column without header
    table = read_table(text.encode())
    assert table.report.ok
    assert table.passthrough.columns.tolist() == ["Unnamed: 0", "churn", "customer_id", "note"]
    assert table.passthrough["customer_id"].tolist()[:2] == ["000", "001"]
    assert table.warnings == (
        "not in the schema, passed through unchanged: 'Unnamed: 0' (no header), 'customer_id', "
        "'note'",
    )
    records = passthrough_records(table)
    assert records[0] == {"Unnamed: 0": "0", "churn": ROWS[TARGET][0], "customer_id": "000",
                          "note": ""}  # fmt: skip


def test_a_label_is_checked_only_when_required() -> None:
    frame = to_bigml(ROWS).assign(Churn=["VRAI", "FAUX", "?"] * 4)
    scoring = read_table(frame.to_csv(index=False).encode())
    assert scoring.report.ok and TARGET not in scoring.report.frame.columns
    training = read_table(frame.to_csv(index=False).encode(), require_target=True)
    bad = [(i.row, i.column) for i in training.report.issues]
    assert bad == [(2, TARGET), (5, TARGET), (8, TARGET), (11, TARGET)]
    assert training.report.frame[TARGET].tolist()[:2] == ["yes", "no"]


def test_blank_rows_and_empty_unnamed_columns_are_left_out() -> None:
    text = _bigml_text(";", ",").replace("\n", ";\n") + ";" * 20 + "\n" + ";" * 20 + "\n"
    table = read_table(text.encode("utf-8"))
    _same_as_canonical(table)
    assert set(table.warnings) == {
        "1 empty column(s) without header ignored",
        "2 empty row(s) ignored",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"  \r\n ", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" * 20, "not a text table"),
        (b"just one column\nvalue\n", "could not tell the column separator"),
        (b"a,b,c\n1,2,3\n", "no feature column found"),
        (b"state,account_length\nKS,1,2,3\n", "unreadable ,-separated text"),
        (b"state;account_length;total_day_minutes\nKS;1;1,5\nKS;2;2.5\n", "both decimal marks"),
    ],
    ids=["empty", "blank", "binary", "one-column", "no-known-column", "ragged", "mixed-decimals"],
)
def test_what_is_not_a_table_is_refused_in_one_line_saying_what_to_change(
    content: bytes, message: str
) -> None:
    with pytest.raises(TableError) as caught:
        read_table(content)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value) and caught.value.hint


def test_too_many_rows() -> None:
    with pytest.raises(TooManyRows, match="12 rows; at most 5"):
        read_table(ROWS.to_csv(index=False).encode(), max_rows=5)


def test_json_body_passes_plain_utf8_untouched_and_decodes_the_rest() -> None:
    raw = b'{"a": "\xc3\xa9"}'
    assert json_body(raw) is raw
    assert json_body(b"\xef\xbb\xbf" + raw) == '{"a": "é"}'
    assert json_body('{"a": "é"}'.encode("utf-16")) == '{"a": "é"}'
    assert json_body('{"a": "é"}'.encode("latin-1"), "application/json; charset=latin-1") == (
        '{"a": "é"}'
    )
    with pytest.raises(TableError, match="not valid UTF-16"):
        json_body(b"\xff\xfe\x00", "application/json")


def test_the_scored_file_is_written_in_the_dialect_it_was_read_in() -> None:
    text = to_bigml(ROWS).assign(Région="Île").to_csv(index=False, sep=";", decimal=",")
    table = read_table(text.encode("cp1252"))
    scored = with_results(table.source, {"churn_probability": np.full(12, 0.25)})
    written = write_like(scored, table.dialect)
    assert written.startswith(b"\xef\xbb\xbf")  # Excel reads the accents of a UTF-8 BOM file
    lines = written.decode("utf-8-sig").splitlines()
    assert lines[0] == text.splitlines()[0] + ";churn_probability"
    assert lines[1] == text.splitlines()[1] + ";0,25"
    again = with_results(scored, {"churn_probability": np.zeros(12)})
    assert list(again.columns[-2:]) == ["churn_probability (input)", "churn_probability"]


def test_every_numeric_feature_survives_the_decimal_comma() -> None:
    table = read_table(_bigml_text(";", ",").encode())
    numeric = [name for name in FEATURE_NAMES if SPECS[name].is_numeric]
    np.testing.assert_array_equal(
        table.report.frame[numeric].to_numpy(), _canonical()[numeric].to_numpy()
    )


_NAMES = st.sampled_from([*FEATURE_NAMES, "Churn", "churn", "State", "", "x", "Unnamed: 0", '"q"'])
_CELLS = st.one_of(
    st.text(alphabet=list(",;\t|\"' .0123456789-eEaZé\r\n\x1c"), max_size=8),
    st.sampled_from(["415", "yes", "VRAI", "1,5", "NaN", "inf", ""]),
)


@st.composite
def _texts(draw: st.DrawFn) -> bytes:
    separator = draw(st.sampled_from([",", ";", "\t", "|", " "]))
    header = draw(st.lists(_NAMES, min_size=1, max_size=25))
    rows = draw(st.lists(st.lists(_CELLS, max_size=len(header) + 2), max_size=6))
    text = "\n".join(separator.join(cells) for cells in [header, *rows])
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "cp1252", "utf-8-sig"]))
    return text.encode(encoding, errors="replace")


_JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=5) | _NAMES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_NAMES, inner, max_size=6),
    max_leaves=30,
)


@given(
    content=st.one_of(
        st.binary(max_size=300), _texts(), _JSON.map(lambda v: json.dumps(v).encode())
    ),
    content_type=st.sampled_from(
        [None, "text/csv", "application/json", "text/csv; charset=latin-1"]
    ),
    require_target=st.booleans(),
)
@settings(max_examples=300, deadline=None, database=None)
def test_any_bytes_give_a_table_or_a_table_error(
    content: bytes, content_type: str | None, require_target: bool
) -> None:
    """Whatever is sent, the reader answers with a table or a TableError: never another error."""
    try:
        table = read_table(content, content_type=content_type, require_target=require_target)
    except TableError as error:
        assert str(error) and "\n" not in error.reason
        return
    assert table.read_as.startswith("read as")
    assert len(passthrough_records(table)) == len(table.source) == len(table.report.frame)
