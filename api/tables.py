"""Batch inputs over HTTP: the body or the uploaded file, read by :mod:`core.tables`, as 4xx.

The reading itself (format, encoding, separator, decimal mark, spellings, passthrough columns) is
:func:`core.tables.read_table`, the one the UI and the CLI use: this module only takes the bytes
out of the request and turns the reader's refusals into 422 (413 past :data:`MAX_ROWS`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from api.errors import PayloadTooLarge
from core.schema import ValidationReport
from core.tables import Table, TableError, TooManyRows, json_body, read_table

MAX_ROWS = 10_000
M = TypeVar("M", bound=BaseModel)


def unprocessable(detail: list[dict[str, Any]] | str) -> HTTPException:
    """A 422 with ``detail``."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


def issue_items(report: ValidationReport, limit: int = 1000) -> list[dict[str, Any]]:
    """Issues as ``{row, column, reason, loc, msg, type}`` items (the first ``limit``)."""
    return [
        {
            "row": issue.row,
            "column": issue.column,
            "reason": issue.reason,
            "loc": ["body"] + ([issue.row] if issue.row is not None else []) + [issue.column],
            "msg": issue.reason,
            "type": "value_error",
        }
        for issue in report.issues[:limit]
    ]


def refused(exc: TableError) -> Exception:
    """The reader's refusal as an HTTP error: 413 for too many rows, else a 422 naming the
    columns at fault (both spellings of a duplicate field), or saying why in one line."""
    if isinstance(exc, TooManyRows):
        return PayloadTooLarge(str(exc))  # its own handler answers 413
    if not exc.columns:
        return unprocessable(str(exc))
    return unprocessable(
        [
            {
                "row": None,
                "column": column,
                "reason": str(exc),
                "loc": ["body", column],
                "msg": str(exc),
                "type": "value_error",
            }
            for column in exc.columns
        ]
    )


def documented_json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a required JSON body of ``model`` for a route that reads the
    body itself with :func:`parse_json` (after its key was checked: a body parameter would be
    parsed before the route's guard)."""
    schema = {"schema": model.model_json_schema()}
    return {"requestBody": {"required": True, "content": {"application/json": schema}}}


def parse_json(
    model: type[M],
    raw: bytes,
    content_type: str | None,
    validate: Callable[[bytes | str], Any] | None = None,
) -> M:
    """A JSON body as ``model`` (a BOM and a declared charset honoured).

    Args:
        model: the pydantic model of the body.
        raw: the body.
        content_type: its Content-Type header.
        validate: a validator equivalent to ``model.model_validate_json`` (e.g. a faster one).

    Raises:
        RequestValidationError: naming the field and the reason (the body, when it is not JSON).
    """
    try:
        text = json_body(raw, content_type)
        parsed: M = validate(text) if validate is not None else model.model_validate_json(text)
        return parsed
    except TableError as exc:
        raise RequestValidationError(
            [{"loc": ("body",), "msg": str(exc), "type": "value_error"}]
        ) from exc
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from exc


async def read_upload(request: Request) -> tuple[bytes, str | None, str | None]:
    """The bytes, file name and content type of a multipart ``file`` field or of a raw body."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/"):
        return await request.body(), None, ctype or None
    try:
        form = await request.form(max_files=1, max_fields=10)
    except Exception as exc:  # pylint: disable=broad-exception-caught  # malformed multipart
        raise unprocessable(f"unreadable multipart body: {exc}") from exc
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise unprocessable(
            [{"row": None, "column": "file", "reason": "a file field named 'file' is required"}]
        )
    content = await upload.read()
    await form.close()
    return content, upload.filename, upload.content_type


async def read_request_table(request: Request, *, require_target: bool = False) -> Table:
    """The request's table (JSON array, CSV/TSV/workbook upload or raw CSV body), read by
    :func:`core.tables.read_table`; 422/413 when it is not a table it can read."""
    content, filename, ctype = await read_upload(request)
    try:
        return await run_in_threadpool(
            read_table,
            content,
            filename=filename,
            content_type=ctype,
            require_target=require_target,
            max_rows=MAX_ROWS,
        )
    except TableError as exc:
        raise refused(exc) from exc
