"""Code conventions a reader relies on, checked over every production module.

* one name for a module's logger, ``log``, so a grep for ``log.`` finds every log call;
* comments explain the code instead of pointing at tracker issues a reader cannot follow;
* the decision rule (churn when the probability reaches the threshold) is written once, in
  :func:`core.schema.predicted_churn`: every other module calls it.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

from tests.conftest import ROOT

PRODUCTION = ("core", "api", "ui", "ops", "scripts")
MODULES = sorted(path for folder in PRODUCTION for path in (ROOT / folder).rglob("*.py"))
TRACKER_REFERENCE = re.compile(r"\bissues? \d+|#\d{2,}", re.IGNORECASE)


def _module_loggers(tree: ast.Module) -> list[str]:
    """Names bound at module level to ``logging.getLogger(...)``."""
    names = []
    for node in tree.body:
        if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Call):
            continue
        func = node.value.func
        if isinstance(func, ast.Attribute) and func.attr == "getLogger":
            names += [target.id for target in node.targets if isinstance(target, ast.Name)]
    return names


def test_the_scan_covers_the_code() -> None:
    assert len(MODULES) > 50
    assert _module_loggers(ast.parse("import logging\nLOGGER = logging.getLogger(__name__)\n")) == [
        "LOGGER"
    ]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_logger_is_named_log(path: Path) -> None:
    names = _module_loggers(ast.parse(path.read_text(encoding="utf-8")))
    assert set(names) <= {"log"}, f"{path.relative_to(ROOT)}: name the logger `log`, not {names}"


def test_no_comment_cites_a_tracker_issue() -> None:
    assert TRACKER_REFERENCE.search("# see issue 14") and TRACKER_REFERENCE.search("# (#27)")
    found = []
    for path in MODULES:
        source = io.StringIO(path.read_text(encoding="utf-8"))
        for token in tokenize.generate_tokens(source.readline):
            if token.type == tokenize.COMMENT and TRACKER_REFERENCE.search(token.string):
                found.append(f"{path.relative_to(ROOT)}:{token.start[0]}: {token.string}")
    assert not found, "explain the code instead:\n" + "\n".join(found)


def _threshold_comparisons(tree: ast.AST) -> list[int]:
    """Lines comparing something with a variable or attribute called ``*threshold*`` (a
    constant in capitals, such as drift's ``DISTANCE_THRESHOLD``, is another rule)."""

    def names_threshold(node: ast.expr) -> bool:
        name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
        return "threshold" in name and not name.isupper()

    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        and any(isinstance(op, (ast.Gt, ast.GtE, ast.Lt, ast.LtE)) for op in node.ops)
        and any(names_threshold(side) for side in (node.left, *node.comparators))
    ]


def test_the_decision_rule_is_written_once() -> None:
    assert _threshold_comparisons(ast.parse("label = proba >= bundle.threshold")) == [1]
    assert _threshold_comparisons(ast.parse("label = predicted_churn(proba, threshold)")) == []
    assert _threshold_comparisons(ast.parse("far = distance >= DISTANCE_THRESHOLD")) == []
    rule = ROOT / "core" / "schema.py"
    assert _threshold_comparisons(ast.parse(rule.read_text(encoding="utf-8")))
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in MODULES
        if path != rule
        for line in _threshold_comparisons(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not found, "call core.schema.predicted_churn instead:\n" + "\n".join(found)


NOSEC_WITH_TEXT_AFTER = re.compile(r"#\s*nosec(?:\s+B\d{3})*\s+[^B\s]")


def test_a_nosec_gives_its_reason_before_it() -> None:
    """bandit reads every word after ``nosec`` as a test id and warns on each (40 lines of noise
    in every code pipeline): the reason goes before the marker, the ids after it."""
    assert NOSEC_WITH_TEXT_AFTER.search("x  # nosec B603  # fixed argv")
    assert NOSEC_WITH_TEXT_AFTER.search("x  # nosec B603 - fixed argv")
    assert not NOSEC_WITH_TEXT_AFTER.search("x  # fixed argv  # nosec B603 B607")
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in MODULES
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if NOSEC_WITH_TEXT_AFTER.search(line)
    ]
    assert not found, "write `# reason  # nosec B000`:\n" + "\n".join(found)
