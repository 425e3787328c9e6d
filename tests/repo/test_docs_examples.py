"""The request examples in docs/examples (used by the README's curl lines) are the schema's."""

from __future__ import annotations

import json

import pytest

from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL, Customer
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("name", "example"), [("churner", EXAMPLE_CHURNER), ("loyal", EXAMPLE_LOYAL)]
)
def test_docs_example_is_the_schema_example(name: str, example: dict[str, object]) -> None:
    document = json.loads((ROOT / "docs" / "examples" / f"{name}.json").read_text(encoding="utf-8"))
    assert document == example
    assert Customer.model_validate(document).model_dump() == example
