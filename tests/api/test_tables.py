"""Property-based: tables in every spelling, separator, decimal mark, encoding and format people
produce, scored through the real app (a small trained model) like the canonical table.

Each example draws 1-5 real customers and writes them the way some person or program would:
column names in any known spelling and order, yes/no and area codes in any spelling, a label or
not (in any spelling, even broken), id columns, a pandas index, empty trailing rows; then CSV/TSV
(``, ; tab |``, decimal point or comma, UTF-8 ± BOM, UTF-16, cp1252), an .xlsx workbook or JSON.
Sometimes one field is given twice. Properties: never a 5xx; a duplicated field is a 422 naming
both columns; otherwise the probabilities are the canonical table's, every id comes back
unchanged next to its prediction, and ``/predict`` gives the first customer the same probability.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.main import create_app
from core.persist import ModelBundle
from core.registry import LoadedModel
from core.schema import FEATURES, SPECS, TARGET, canonical_column
from core.settings import Settings
from tests.api.conftest import Champion
from tests.factories import raw_rows

MIN_TABLES = 500
POOL = raw_rows(40, seed=11)
YES = ["yes", "Yes", "YES", "true", "True", "TRUE", "True.", "1", "y", "VRAI", "vrai", "oui", "Oui"]
NO = ["no", "No", "NO", "false", "False", "FALSE", "False.", "0", "n", "FAUX", "faux", "non", "Non"]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "cp1252"]


def _name_spellings(name: str) -> list[str]:
    bigml = SPECS[name].bigml if name in SPECS else "Churn"
    return [name, bigml, bigml.lower(), bigml.upper(), bigml.replace(" ", "-"), f" {bigml} "]


def _value(name: str, value: Any, draw: st.DrawFn, as_json: bool) -> Any:
    """One cell in one of the spellings people use (text, or a JSON value)."""
    if name in ("international_plan", "voice_mail_plan", TARGET):
        if as_json and draw(st.booleans()):
            return draw(st.sampled_from([value == "yes", int(value == "yes")]))
        return draw(st.sampled_from(YES if value == "yes" else NO))
    if name == "area_code":
        code = value.removeprefix("area_code_")
        return draw(
            st.sampled_from([value, code, f"{code}.0", f" {code} "] + [int(code)] * as_json)
        )
    if name == "state":
        return draw(st.sampled_from([value, value.lower(), f" {value.title()} "]))
    if as_json:
        return value
    return str(int(value)) if SPECS[name].kind == "integer" else repr(float(value))


@dataclass
class Case:
    """One generated table and what its answer must be."""

    fmt: str
    content: bytes
    content_type: str
    filename: str
    rows: list[int]
    ids: dict[str, list[str]] = field(default_factory=dict)
    duplicate: tuple[str, str] | None = None
    single: dict[str, Any] = field(default_factory=dict)
    encoding: str = "utf-8"
    index: bool = False


@st.composite
def tables(draw: st.DrawFn) -> Case:  # pylint: disable=too-many-locals  # one table, its parts
    """A table as some person or program writes it (see the module docstring)."""
    rows = draw(st.lists(st.integers(0, len(POOL) - 1), min_size=1, max_size=5))
    fmt = draw(st.sampled_from(["text"] * 6 + ["xlsx", "json"]))
    as_json = fmt == "json"
    canonical = POOL.iloc[rows].reset_index(drop=True)
    fields = [spec.name for spec in FEATURES] + ([TARGET] if draw(st.booleans()) else [])
    columns: dict[str, list[Any]] = {}
    spelled: dict[str, str] = {}
    for name in fields:
        spelled[name] = draw(st.sampled_from(_name_spellings(name)))
        values = [_value(name, v, draw, as_json) for v in canonical[name].tolist()]
        if name == TARGET and draw(st.integers(0, 4)) == 0:
            values = ["?"] * len(values)  # a broken label never blocks scoring
        columns[spelled[name]] = values
    ids: dict[str, list[str]] = {}
    if draw(st.booleans()):
        id_name = draw(st.sampled_from(["customer_id", "ID client", "phone number", "Région"]))
        ids[id_name] = [
            draw(st.sampled_from([f"C{i:05d}", f"00{i}", f"382-{4500 + i}", f"Île-{i}"]))
            for i in range(len(rows))
        ]
    index = not as_json and draw(st.booleans())  # a pandas index: no header, 0..n-1
    if index:
        columns[""] = [str(i) for i in range(len(rows))]
    columns.update(ids)
    duplicate = None
    if draw(st.integers(0, 9)) == 0:  # one field twice, under two spellings
        name = draw(st.sampled_from(fields))
        other = draw(st.sampled_from([s for s in _name_spellings(name) if s != spelled[name]]))
        columns[other] = list(columns[spelled[name]])
        shown = (spelled[name], other) if as_json else (spelled[name].strip(), other.strip())
        duplicate = shown
    order = draw(st.permutations(list(columns)))
    single = {k: columns[k][0] for k in order if k}
    case = Case(fmt, b"", "", "t.json", rows, ids, duplicate, single)
    case.index = index
    if fmt == "json":
        records = [{k: columns[k][i] for k in order} for i in range(len(rows))]
        case.content, case.content_type = json.dumps(records).encode(), "application/json"
        return case
    frame = pd.DataFrame({k: columns[k] for k in order})
    frame.columns = pd.Index(order)
    numeric = [k for k in order if k not in ids and _is_numeric(k)]
    if fmt == "xlsx":
        typed = frame.astype(object)
        for column in numeric:
            typed[column] = pd.to_numeric(frame[column])
        buffer = io.BytesIO()
        typed.to_excel(buffer, index=False, engine="openpyxl")
        case.content, case.content_type, case.filename = (
            buffer.getvalue(),
            "application/octet-stream",
            "t.xlsx",
        )
        return case
    separator = draw(st.sampled_from([",", ";", "\t", "|"]))
    if draw(st.booleans()):  # decimal comma
        for column in numeric:
            frame[column] = frame[column].str.replace(".", ",", regex=False)
    text = frame.to_csv(index=False, sep=separator)
    text += (separator * (frame.shape[1] - 1) + "\n") * draw(st.integers(0, 2))  # Excel's blanks
    case.encoding = draw(st.sampled_from(ENCODINGS))
    case.content, case.content_type, case.filename = text.encode(case.encoding), "text/csv", "t.csv"
    return case


def _is_numeric(column: str) -> bool:
    name = canonical_column(column)
    return name in SPECS and SPECS[name].is_numeric


@pytest.fixture(name="app_client")
def fixture_app_client(settings: Settings, small_bundle: ModelBundle) -> Iterator[TestClient]:
    """The real app (lifespan, writer, fast lane) serving a small model."""
    app = create_app(settings, loader=Champion(LoadedModel(small_bundle, "1", {})))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _expected(client: TestClient) -> np.ndarray:
    answer = client.post("/predict/batch", json=POOL.drop(columns=TARGET).to_dict("records"))
    assert answer.status_code == 200
    return np.array([r["churn_probability"] for r in answer.json()["results"]])


@pytest.mark.slow  # 500 generated tables (~40 s): in make test, not in make watch's test-fast
def test_every_spelling_separator_encoding_and_format_scores_like_the_canonical_table(
    app_client: TestClient,
) -> None:
    """≥ 500 generated tables: no 5xx, canonical probabilities, ids back, duplicates named."""
    expected = _expected(app_client)
    seen = {"tables": 0, "duplicates": 0}

    @given(case=tables())
    @hypothesis_settings(
        max_examples=MIN_TABLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case) -> None:
        seen["tables"] += 1
        files = {"file": (case.filename, case.content, case.content_type)}
        if case.fmt == "json":
            answer = app_client.post(
                "/predict/batch", content=case.content, headers={"content-type": "application/json"}
            )
        else:
            answer = app_client.post("/predict/batch", files=files)
        assert answer.status_code < 500, answer.text
        if case.duplicate is not None:
            seen["duplicates"] += 1
            assert answer.status_code == 422, answer.text
            assert all(repr(name) in answer.text for name in case.duplicate), answer.text
            return
        assert answer.status_code == 200, (case.fmt, answer.text, case.content[:300])
        body = answer.json()
        got = np.array([r["churn_probability"] for r in body["results"]])
        np.testing.assert_array_equal(got, expected[case.rows])
        passed = [r["passthrough"] for r in body["results"]] if case.ids or case.index else []
        for name, values in case.ids.items():
            back = [p.get(name) for p in passed]
            guessed = any("encoding guessed" in w for w in body["warnings"])
            assert back == values or (case.encoding == "cp1252" and guessed), (name, back, values)
        if case.index:
            unnamed = [k for k in passed[0] if k.startswith("Unnamed: ")]
            assert [p[unnamed[0]] for p in passed] == [str(i) for i in range(len(passed))]
        single = app_client.post("/predict", json=case.single)
        assert single.status_code == 200, single.text
        assert single.json()["churn_probability"] == pytest.approx(expected[case.rows[0]], abs=1e-6)

    run()  # pylint: disable=no-value-for-parameter  # hypothesis supplies `case`
    assert seen["tables"] >= MIN_TABLES, seen
    assert seen["duplicates"] > 0, seen
