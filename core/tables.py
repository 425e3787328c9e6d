"""Reading the tables people have: CSV/TSV from any spreadsheet, workbooks and JSON, one reader.

The API, the UI and the CLI all read customer tables through :func:`read_table`, so a file is
read, reported and refused the same way wherever it is sent.

Contract:
    Input: the bytes of a file and, when known, its name and declared content type (both may be
    missing or wrong: the content decides, a declared ``charset=`` is honoured).
    Output: a :class:`Table`: the table as read (``source``), its validation report (the typed,
    canonical frame of :func:`core.schema.validate_frame` with every row-level issue), the columns
    that are not scored (``passthrough``: ids, notes, the label when scoring) unchanged and on the
    same rows, what was detected (:class:`Dialect`, e.g. "read as ;-separated, decimal comma,
    cp1252") and every warning.
    Errors: :class:`TableError` (a one-line reason and what to change) when the bytes are not a
    table of customers: empty, binary, undecodable, one column, no known column, the same field
    twice (``Churn`` and ``churn``), ragged lines, a JSON shape that is not an array of objects,
    mixed decimal marks. :class:`TooManyRows` past ``max_rows``. Bad cells are not errors: they
    are issues in the report, with their row and column.

Detection (well-kept libraries first, the schema's column names to settle what they leave open):
    * format: workbook by its magic bytes (ZIP for .xlsx/.ods, OLE2 for .xls, read by
      ``python-calamine`` through pandas), JSON by its content type, name or first character,
      anything else as delimited text;
    * encoding: a byte-order mark (UTF-8, UTF-16, UTF-32), else the declared charset, else strict
      UTF-8, else ``charset-normalizer`` among the encodings spreadsheet programs write in
      English and French (cp1252, Latin-1/-9, Mac Roman, UTF-16 without BOM); a guessed encoding
      is reported with a warning saying how to make it certain;
    * separator: :class:`csv.Sniffer` among ``, ; tab |``, checked against the header: the
      separator that splits the header into the most known column names wins (a header names
      columns, it holds no decimal marks);
    * decimal mark: a comma when the numeric columns hold ``184,5``-style numbers and no
      ``184.5``-style ones; both → :class:`TableError`.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal

import charset_normalizer
import msgspec
import numpy as np
import pandas as pd
import pydantic_core

from core.schema import (
    FEATURE_NAMES,
    FEATURES,
    SPECS,
    TARGET,
    DuplicateColumnsError,
    ValidationReport,
    canonical_column,
    map_columns,
    normalise_yes_no,
    validate_frame,
)

Format = Literal["text", "workbook", "json"]
SEPARATORS = (",", ";", "\t", "|")
# File name extensions of what the reader reads (for upload widgets; the content decides).
FILE_TYPES = ("csv", "tsv", "txt", "xlsx", "xls", "ods", "json")
# What spreadsheet programs write in English and French when they do not write UTF-8, most
# common first: a tie (e.g. "Île" decodes without mess in cp1252 and in Mac Roman) goes first.
GUESSED_ENCODINGS = ("cp1252", "utf_16_le", "utf_16_be", "iso8859_15", "latin_1", "mac_roman")
_ENCODING_NAMES = {
    "utf_8": "UTF-8",
    "utf_8_sig": "UTF-8 with BOM",
    "utf_16": "UTF-16",
    "utf_16_le": "UTF-16LE",
    "utf_16_be": "UTF-16BE",
    "utf_32": "UTF-32",
    "cp1252": "cp1252",
    "latin_1": "Latin-1",
    "iso8859_1": "Latin-1",
    "iso8859_15": "Latin-9",
    "mac_roman": "Mac Roman",
}
# UTF-32 LE's mark starts with UTF-16 LE's: the longer marks are tried first.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf_32"),
    (codecs.BOM_UTF32_BE, "utf_32"),
    (codecs.BOM_UTF8, "utf_8_sig"),
    (codecs.BOM_UTF16_LE, "utf_16"),
    (codecs.BOM_UTF16_BE, "utf_16"),
)
_WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
_SEPARATOR_NAMES = {",": ",", ";": ";", "\t": "tab", "|": "|"}
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")
_DECIMAL_POINT = re.compile(r"[+-]?\d*\.\d+")
_NUMERIC = tuple(spec.name for spec in FEATURES if spec.is_numeric)
SAVE_AS_UTF8 = "save it as 'CSV UTF-8' (Excel: File > Save As > CSV UTF-8)"


class TableError(ValueError):
    """The bytes are not a table of customers (see the module docstring).

    Attributes:
        reason: what is wrong, in one line.
        hint: what to change.
        columns: the columns at fault, when there are (e.g. both spellings of a duplicate).
    """

    def __init__(self, reason: str, hint: str = "", columns: tuple[str, ...] = ()) -> None:
        super().__init__(f"{reason}; {hint}" if hint else reason)
        self.reason = reason
        self.hint = hint
        self.columns = columns


class TooManyRows(TableError):
    """The table has more rows than the caller accepts."""


@dataclass(frozen=True)
class Dialect:
    """What :func:`read_table` detected.

    Attributes:
        format: ``text`` (CSV/TSV), ``workbook`` (.xlsx, .xls, .ods) or ``json``.
        encoding: the text encoding (``UTF-8``, ``UTF-8 with BOM``, ``UTF-16``, ``cp1252``...).
        separator: the column separator of a text table.
        decimal: the decimal mark of a text table (``.`` or ``,``).
        sheet: the sheet of a workbook that was read.
        rows: the number of data rows read.
    """

    format: Format
    encoding: str | None = None
    separator: str | None = None
    decimal: str | None = None
    sheet: str | None = None
    rows: int = 0

    def describe(self) -> str:
        """One line for people, e.g. ``read as ;-separated, decimal comma, cp1252``."""
        if self.format == "workbook":
            return f"read as a workbook, sheet {self.sheet!r}"
        if self.format == "json":
            return f"read as a JSON array of {self.rows} object(s), {self.encoding}"
        mark = "comma" if self.decimal == "," else "point"
        separator = _SEPARATOR_NAMES.get(self.separator or ",", self.separator)
        return f"read as {separator}-separated, decimal {mark}, {self.encoding}"


#: Plain CSV: UTF-8, comma-separated, decimal point (what :func:`write_like` writes for it).
PLAIN_CSV = Dialect("text", "UTF-8", ",", ".")


@dataclass(frozen=True)
class Table:
    """A table read by :func:`read_table`.

    Attributes:
        source: the table as read: header names and cell text unchanged (JSON values as sent),
            blank rows and empty unnamed columns left out; index 0..n-1.
        report: the validation of the schema's columns (``report.frame``: typed and canonical,
            same index; ``report.issues``: every bad cell with its row and column).
        passthrough: the columns that are not scored (unknown columns, and the label unless it
            is required), unchanged, same index.
        dialect: what was detected.
        warnings: everything worth telling that is not an error, one line each.
    """

    source: pd.DataFrame
    report: ValidationReport
    passthrough: pd.DataFrame
    dialect: Dialect
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def read_as(self) -> str:
        """The dialect in one line (see :meth:`Dialect.describe`)."""
        return self.dialect.describe()

    def labelled_frame(self) -> pd.DataFrame:
        """``report.frame`` with the label column as ``churn`` ``yes``/``no`` (any accepted
        spelling of the column and of its values, e.g. ``Churn`` ``VRAI``; other values left as
        they are), when the table has one and scoring did not already require it."""
        frame = self.report.frame
        if TARGET in frame.columns:
            return frame
        renames = map_columns(self.source.columns).renames
        label = next((column for column, name in renames.items() if name == TARGET), None)
        if label is None:
            return frame
        values = [normalise_yes_no(value) for value in self.source[label].tolist()]
        return frame.assign(**{TARGET: values})


def read_table(
    content: bytes,
    *,
    filename: str | None = None,
    content_type: str | None = None,
    require_target: bool = False,
    max_rows: int | None = None,
) -> Table:
    """Read a customer table from the bytes of a file (see the module docstring).

    Args:
        content: the file's bytes.
        filename: its name, if known (``.json`` selects JSON; other names are not trusted).
        content_type: its declared media type, if known (``application/json`` selects JSON; a
            ``charset=`` parameter is honoured).
        require_target: whether the ``churn`` label must be present and valid (training data);
            otherwise a label is passed through and never blocks scoring.
        max_rows: the most data rows accepted.

    Returns:
        The :class:`Table`.

    Raises:
        TableError: when the bytes are not a table of customers.
        TooManyRows: past ``max_rows``.
    """
    media, charset = _media_type(content_type)
    if not content.strip():
        raise TableError("the file is empty", "export the table with its header row and rows")
    if content.startswith(_WORKBOOK_MAGIC):
        source, dialect, warnings = _read_workbook(content)
        return _finish(source, dialect, warnings, require_target, max_rows, text=True)
    is_json = media.endswith(("/json", "+json")) or (filename or "").lower().endswith(".json")
    if is_json and charset in (None, "utf-8") and not content.startswith(codecs.BOM_UTF8):
        canonical = _canonical_rows(content, max_rows)
        if canonical is not None:
            dialect = Dialect("json", "UTF-8", rows=len(canonical))
            return _finish(canonical, dialect, [], require_target, max_rows, text=False)
    text, encoding, warnings = decode_text(content, charset)
    if is_json or (not media.startswith("text/") and text.lstrip()[:1] in ("[", "{")):
        source = _json_frame(text, max_rows)
        dialect = Dialect("json", encoding, rows=len(source))
        return _finish(source, dialect, warnings, require_target, max_rows, text=False)
    source, dialect, found = _read_text(text, encoding)
    return _finish(source, dialect, warnings + found, require_target, max_rows, text=True)


def read_path(path: Path, *, require_target: bool = False, max_rows: int | None = None) -> Table:
    """:func:`read_table` of a file on disk.

    Raises:
        OSError: when the file cannot be read (e.g. ``FileNotFoundError``).
        TableError: as :func:`read_table`.
    """
    return read_table(
        path.read_bytes(), filename=path.name, require_target=require_target, max_rows=max_rows
    )


# --- encodings -----------------------------------------------------------------------------------
def _media_type(content_type: str | None) -> tuple[str, str | None]:
    """The media type and the declared charset (lower-case, codec name) of a Content-Type."""
    if not content_type:
        return "", None
    media, *params = (part.strip() for part in content_type.split(";"))
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"').lower()
    if charset is not None:
        try:
            charset = "utf-8" if codecs.lookup(charset).name == "utf-8" else charset
        except LookupError as exc:
            raise TableError(
                f"unknown charset {charset!r} in the Content-Type", "declare charset=utf-8"
            ) from exc
    return media.lower(), charset


def decode_text(content: bytes, charset: str | None = None) -> tuple[str, str, list[str]]:
    """Decode the bytes of a text file: BOM, else the declared charset, else UTF-8, else a guess.

    Args:
        content: the bytes.
        charset: the declared charset (a codec name), if any.

    Returns:
        ``(text, encoding, warnings)``: the text without its BOM, the encoding's display name,
        and a warning when the encoding was guessed.

    Raises:
        TableError: undecodable with the declared charset, binary, or no plausible encoding.
    """
    for bom, codec in _BOMS:
        if content.startswith(bom):
            return _decode(content, codec, "its byte-order mark"), _ENCODING_NAMES[codec], []
    if charset is not None:
        return _decode(content, charset, "the declared charset"), _display(charset), []
    try:
        return content.decode("utf-8"), "UTF-8", []
    except UnicodeDecodeError:
        pass
    # The least "chaos" (mess) wins; its language coherence is noise on a few short cells, so a
    # tie goes to the most common encoding (GUESSED_ENCODINGS' order).
    matches = list(charset_normalizer.from_bytes(content, cp_isolation=list(GUESSED_ENCODINGS)))
    best = min(matches, key=lambda m: (round(m.chaos, 2), _rank(m.encoding)), default=None)
    if best is None or "\x00" in str(best):
        raise TableError("not a text table (CSV/TSV), a workbook or JSON", SAVE_AS_UTF8)
    name = _display(best.encoding)
    warning = f"text encoding guessed as {name}; if accents look wrong, {SAVE_AS_UTF8}"
    return str(best), name, [warning]


def _rank(encoding: str) -> int:
    name = codecs.lookup(encoding).name.replace("-", "_")
    names = [codecs.lookup(e).name.replace("-", "_") for e in GUESSED_ENCODINGS]
    return names.index(name) if name in names else len(names)


def _decode(content: bytes, codec: str, why: str) -> str:
    try:
        text = content.decode(codec)
    except UnicodeDecodeError as exc:
        raise TableError(
            f"not valid {_display(codec)} ({why}): {exc.reason} at byte {exc.start}",
            f"declare the file's real charset or {SAVE_AS_UTF8}",
        ) from exc
    return text.removeprefix("\ufeff")


def _display(codec: str) -> str:
    name = codecs.lookup(codec).name.replace("-", "_")
    return _ENCODING_NAMES.get(name, codec)


def json_body(raw: bytes, content_type: str | None = None) -> bytes | str:
    """The JSON document of a request body, ready for a JSON parser.

    UTF-8 without BOM (the norm) comes back as the same bytes, untouched; a UTF-8 BOM is dropped;
    a UTF-16/32 BOM or a declared ``charset=`` is decoded to text.

    Raises:
        TableError: an unknown charset, or bytes that are not valid in it.
    """
    _, charset = _media_type(content_type)
    if charset in (None, "utf-8") and not raw.startswith(_BOM_STARTS):
        return raw
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return _decode(raw, codec, "its byte-order mark")
    return _decode(raw, charset or "utf-8", "the declared charset")


_BOM_STARTS = tuple(bom for bom, _ in _BOMS)


# --- text tables ---------------------------------------------------------------------------------
def _known(header: str, separator: str) -> int:
    names = next(csv.reader([header], delimiter=separator), [])
    return len({canonical_column(name) for name in names} - {None})


def _separator(lines: list[str]) -> str:
    """Sniff the separator, then let the header's known column names confirm or correct it."""
    try:
        sniffed: str | None = (
            csv.Sniffer().sniff("\n".join(lines), delimiters="".join(SEPARATORS)).delimiter
        )
    except csv.Error:
        sniffed = None
    known = {separator: _known(lines[0], separator) for separator in SEPARATORS}
    best = max(SEPARATORS, key=lambda s: (known[s], s == sniffed))
    if known[best] >= 2:
        return best
    if sniffed is not None and len(next(csv.reader([lines[0]], delimiter=sniffed))) > 1:
        return sniffed
    raise TableError(
        "could not tell the column separator (the first line reads as one column)",
        "separate the columns with commas, semicolons or tabs, with a header row naming them",
    )


def _read_text(text: str, encoding: str) -> tuple[pd.DataFrame, Dialect, list[str]]:
    # The first lines, at most 64 KiB of them, are enough to sniff (csv.Sniffer's regular
    # expressions are slow on long texts); only \n and \r end a line, as for pandas.
    sample = text[:65536].replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [line for line in sample if line.strip()][:50]
    if not lines:
        raise TableError("the file is empty", "export the table with its header row and rows")
    separator = _separator(lines)
    try:
        grid = pd.read_csv(
            io.StringIO(text),
            sep=separator,
            header=None,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            skip_blank_lines=True,
        )
    except pd.errors.EmptyDataError as exc:
        raise TableError("the file has no columns", "export the table with its header") from exc
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1].removeprefix("Error tokenizing data. C error: ")
        raise TableError(
            f"unreadable {_SEPARATOR_NAMES[separator]}-separated text: {detail}",
            "give every line as many fields as the header (quote values holding the separator)",
        ) from exc
    source, warnings = _with_header(grid.fillna(""))
    decimal = _decimal_mark(source)
    return source, Dialect("text", encoding, separator, decimal, rows=len(source)), warnings


def _decimal_mark(source: pd.DataFrame) -> str:
    """``,`` when the numeric columns use decimal commas only, ``.`` otherwise."""
    commas: list[str] = []
    points: list[str] = []
    for position, column in enumerate(source.columns):
        if canonical_column(column) not in _NUMERIC:
            continue
        cells = source.iloc[:, position].astype(str)
        if not cells.str.contains(",", regex=False).any():
            continue  # no comma: nothing to tell (checked in C, the common case)
        cells = cells.str.strip()
        commas += cells[cells.str.fullmatch(_DECIMAL_COMMA)].head(1).tolist()
    if commas:  # a decimal point elsewhere makes the marks ambiguous
        for position, column in enumerate(source.columns):
            if canonical_column(column) in _NUMERIC:
                cells = source.iloc[:, position].astype(str).str.strip()
                points += cells[cells.str.fullmatch(_DECIMAL_POINT)].head(1).tolist()
    if commas and points:
        raise TableError(
            f"both decimal marks are used (e.g. {commas[0]!r} and {points[0]!r})",
            "use one decimal mark in the whole file",
        )
    return "," if commas else "."


# --- workbooks -----------------------------------------------------------------------------------
def _cell_text(value: Any) -> str:
    """A workbook cell as the text a CSV export of it would hold."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


def _read_workbook(content: bytes) -> tuple[pd.DataFrame, Dialect, list[str]]:
    try:
        sheets = pd.read_excel(
            io.BytesIO(content), sheet_name=None, header=None, dtype=object, engine="calamine"
        )
    except Exception as exc:  # pylint: disable=broad-exception-caught  # calamine's own errors
        raise TableError(
            f"not a readable workbook: {str(exc).strip()[:200]}",
            "save it as .xlsx or as CSV UTF-8",
        ) from exc
    filled = [(name, grid) for name, grid in sheets.items() if grid.notna().any().any()]
    if not filled:
        raise TableError("the workbook has no filled sheet", "put the table on its first sheet")
    name, grid = filled[0]
    warnings = []
    if len(filled) > 1:
        others = ", ".join(repr(other) for other, _ in filled[1:])
        warnings.append(f"read the first filled sheet {name!r}; not read: {others}")
    source, found = _with_header(grid.map(_cell_text))
    return source, Dialect("workbook", sheet=str(name), rows=len(source)), warnings + found


def _with_header(grid: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Split a grid of cell texts into header and rows; drop blank rows and empty unnamed
    columns; name columns without a header ``Unnamed: i`` (pandas' convention)."""
    cells = grid.astype(str)
    header = [str(name).strip() for name in cells.iloc[0]]
    body = cells.iloc[1:].reset_index(drop=True)
    # read_csv skips the spaces after a separator, so a blank cell is "" (compared in C)
    blank: np.ndarray = np.asarray(body.to_numpy(dtype=object) == "", dtype=bool)
    warnings: list[str] = []
    keep_columns = [i for i, name in enumerate(header) if name or not blank[:, i].all()]
    if len(keep_columns) < len(header):
        warnings.append(f"{len(header) - len(keep_columns)} empty column(s) without header ignored")
    names: list[str] = []
    for i in keep_columns:
        name = header[i] or f"Unnamed: {i}"
        base, n = name, 0
        while name in names and canonical_column(base) is None:  # a known field twice: refused
            n += 1
            name = f"{base}.{n}"
        names.append(name)
    empty_rows = np.asarray(blank[:, keep_columns].all(axis=1), dtype=bool)
    if empty_rows.any():
        warnings.append(f"{int(empty_rows.sum())} empty row(s) ignored")
    source = body.iloc[~empty_rows, keep_columns].reset_index(drop=True)
    source.columns = pd.Index(names)
    return source, warnings


# --- JSON ----------------------------------------------------------------------------------------
# The common case of a JSON batch, decoded in one pass straight into typed rows (msgspec, C): every
# row an object of exactly the 19 canonical fields, categories as strings, numbers as numbers.
# Anything else takes the general path, which reports every bad row and column.
_CANONICAL_ROW = msgspec.defstruct(
    "CanonicalRow",
    [(spec.name, str if spec.kind == "category" else float) for spec in FEATURES],
    forbid_unknown_fields=True,
)
_CANONICAL_ROWS = msgspec.json.Decoder(list[_CANONICAL_ROW])  # type: ignore[valid-type]


def _canonical_rows(raw: bytes, max_rows: int | None) -> pd.DataFrame | None:
    """The batch as a frame when every row is canonical (~2x faster), else ``None``."""
    try:
        rows = _CANONICAL_ROWS.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if not rows or (max_rows is not None and len(rows) > max_rows):
        return None  # the general path gives the error
    return pd.DataFrame.from_records(
        list(map(msgspec.structs.astuple, rows)), columns=list(FEATURE_NAMES)
    )


def _json_frame(text: str, max_rows: int | None) -> pd.DataFrame:
    try:  # pydantic-core's parser: ~3x faster than json.loads; NaN/Infinity refused
        data = pydantic_core.from_json(text, allow_inf_nan=False)
    except ValueError as exc:
        raise TableError(f"invalid JSON: {exc}", "send an array of customer objects") from exc
    rows = _json_rows(data)
    if max_rows is not None and len(rows) > max_rows:
        raise TooManyRows(f"{len(rows)} rows; at most {max_rows} per batch", "split the batch")
    return pd.DataFrame.from_records(rows).reset_index(drop=True)


RECORDS = "one object per customer, e.g. pandas' df.to_dict(orient='records')"


def _json_rows(data: Any) -> list[dict[str, Any]]:
    """The rows of a JSON batch; every other shape is refused with the shape it looks like."""
    if isinstance(data, dict):
        raise TableError(f"expected a JSON array, got {_object_shape(data)}", f"send {RECORDS}")
    if not isinstance(data, list):
        raise TableError(f"expected a JSON array, got {type(data).__name__}", f"send {RECORDS}")
    if not data:
        raise TableError("the batch has no rows", "send at least one customer")
    bad = [i for i, item in enumerate(data) if not isinstance(item, dict)]
    if bad:
        shown = ", ".join(str(i) for i in bad[:10])
        raise TableError(f"row(s) {shown} are not JSON objects", f"send {RECORDS}")
    if len(data) == 1 and _columns_of_values(data[0]):
        raise TableError(
            "the only row maps each column to all its values (a DataFrame's to_dict() in a list)",
            f"send {RECORDS}",
        )
    return data


def _columns_of_values(item: Mapping[str, Any]) -> bool:
    """Whether an object is column → {index: value} or column → [values] (a whole table)."""
    values = list(item.values())
    return bool(values) and all(isinstance(v, (dict, list)) for v in values)


def _object_shape(data: Mapping[str, Any]) -> str:
    if {"columns", "data"} <= set(data):
        return "a 'split' table (columns + data)"
    wrappers = [
        key
        for key, value in data.items()
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value)
    ]
    if len(wrappers) == 1:
        return f"an object wrapping the rows in {wrappers[0]!r} (send that array itself)"
    if _columns_of_values(data):
        return "an object of columns (a DataFrame's to_dict())"
    if {canonical_column(key) for key in data} - {None}:
        return "a single customer (send it to /predict, or wrap it in [ ])"
    return "an object"


# --- the schema ----------------------------------------------------------------------------------
def _finish(
    source: pd.DataFrame,
    dialect: Dialect,
    warnings: list[str],
    require_target: bool,
    max_rows: int | None,
    *,
    text: bool,
) -> Table:
    """Map the columns, validate the schema's, keep the others apart."""
    if max_rows is not None and len(source) > max_rows:
        raise TooManyRows(f"{len(source)} rows; at most {max_rows} per batch", "split the file")
    try:
        columns = map_columns(source.columns)
    except DuplicateColumnsError as exc:
        named = tuple(name for names in exc.fields.values() for name in names)
        raise TableError(str(exc), columns=named) from exc
    known = columns.renames
    if not set(known.values()) & set(FEATURE_NAMES):
        shown = ", ".join(repr(str(c)) for c in list(source.columns)[:5])
        raise TableError(
            f"no feature column found (columns read: {shown})",
            "the first line must name the columns, e.g. state, account_length, ... or the "
            "BigML names (State, Account length, ...)",
        )
    scored = [c for c in source.columns if c in known and (require_target or known[c] != TARGET)]
    data = source[scored]
    if text:
        data = _typed_text(data, known, dialect.decimal or ".")
    report = validate_frame(data, require_target=require_target)
    passed = [c for c in source.columns if c not in scored]
    warnings = warnings + passthrough_warnings(passed)
    return Table(source, report, source[passed], dialect, tuple(warnings))


def passthrough_warnings(names: Iterable[object]) -> list[str]:
    """The warning naming the columns (or fields) that are not in the schema, if any: they are
    passed through unchanged. A label is known, so it is passed through without a warning."""
    unknown = [str(name) for name in names if canonical_column(name) is None]
    if not unknown:
        return []
    shown = ", ".join(
        repr(name) + (" (no header)" if name.startswith("Unnamed: ") else "")
        for name in unknown[:10]
    )
    more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
    return [f"not in the schema, passed through unchanged: {shown}{more}"]


def _typed_text(data: pd.DataFrame, known: dict[str, str], decimal: str) -> pd.DataFrame:
    """Cell texts of the schema's columns: empty → missing, decimal commas → points (spaces
    around a value are left to the parsers: float() and the normalisers ignore them)."""
    out = {}
    for column in data.columns:
        cells = data[column].astype(str)
        spec = SPECS.get(known[column])
        if decimal == "," and spec is not None and spec.is_numeric:
            cells = cells.str.replace(",", ".", regex=False)
        out[column] = cells.astype(object).where(cells.str.strip() != "", np.nan)
    return pd.DataFrame(out, index=data.index)


def write_like(frame: pd.DataFrame, dialect: Dialect) -> bytes:
    """A table (e.g. the upload with its scores) as CSV bytes in the dialect it was read in.

    A text table keeps its separator and decimal mark, so a French Excel export comes back as
    one Excel opens; anything not read as plain UTF-8 (cp1252, UTF-16, a BOM, a workbook) gets a
    UTF-8 BOM, so the spreadsheet program reads the accents right.
    """
    text = dialect.format == "text"
    separator = dialect.separator if text and dialect.separator else ","
    decimal = dialect.decimal if text and dialect.decimal else "."
    plain = dialect.format == "json" or dialect.encoding == "UTF-8"
    csv_text = frame.to_csv(index=False, sep=separator, decimal=decimal)
    return csv_text.encode("utf-8" if plain else "utf-8-sig")


#: The result columns of a scored table (``churnops predict``, the API's CSV out, the UI's
#: download): the churn probability and the label (``yes``/``no``).
PROBABILITY = "churn_probability"
LABEL = "churn_label"


def scored_table(inputs: pd.DataFrame, probability: Any, label: Any, **extra: Any) -> pd.DataFrame:
    """``inputs`` with the ``extra`` columns (e.g. ``prediction_id``), then :data:`PROBABILITY`
    and :data:`LABEL` appended (:func:`with_results`); write it with :func:`write_like`."""
    return with_results(inputs, {**extra, PROBABILITY: probability, LABEL: label})


def with_results(source: pd.DataFrame, results: Mapping[str, Any]) -> pd.DataFrame:
    """``source`` with result columns appended; a source column named like a result (a scored
    file scored again) is renamed ``<name> (input)`` instead of being overwritten."""
    renamed = source.rename(columns=lambda c: f"{c} (input)" if c in results else c)
    return renamed.assign(**{str(k): v for k, v in results.items()})


def passthrough_records(table: Table) -> list[dict[str, Any]]:
    """The passthrough columns as one JSON-ready object per row (missing cells as ``null``)."""
    if table.passthrough.shape[1] == 0:
        return [{} for _ in range(len(table.passthrough))]
    frame = table.passthrough.astype(object).where(table.passthrough.notna(), None)
    return [{str(k): _json_value(v) for k, v in row.items()} for row in frame.to_dict("records")]


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (np.generic,)):
        return value.item()
    return value
