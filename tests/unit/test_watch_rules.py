"""core.watch: which changed path runs which pipeline, and which paths never trigger anything."""

from __future__ import annotations

import io
from pathlib import Path
from pathlib import PurePosixPath as P

import pytest

from ops import watch


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("core/train.py", ("code",)),
        ("api/routes/predict.py", ("code",)),
        ("tests/unit/test_x.py", ("code",)),
        ("Makefile", ("code",)),
        ("mk/ml.mk", ("code",)),
        ("pyproject.toml", ("code",)),
        (".github/workflows/code.yml", ("code",)),
        ("data/raw/churn.csv", ("data", "train")),
        ("data/raw/churn.csv.sha256", ("data", "train")),
        ("configs/train.yaml", ("train",)),
        ("params.yaml", ("train",)),
    ],
)
def test_paths_map_to_pipelines(path: str, expected: tuple[str, ...]) -> None:
    assert watch.pipelines_for(P(path)) == expected


@pytest.mark.parametrize(
    "path",
    [
        ".venv/lib/python3.11/site-packages/x.py",
        "var/pipelines/run/01-lint.log",
        "var/watch/x.log",
        "mlruns/0/meta.yaml",
        ".git/index",
        "node_modules/a/index.js",
        "core/__pycache__/watch.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        ".mypy_cache/3.11/core.json",
        "core/.watch.py.swp",
        "ops/watch.py~",
        "core/4913",
        "coverage.xml",
        ".coverage",
        "churnops.egg-info/PKG-INFO",
        "ui/node_modules/x.js",
    ],
)
def test_ignored_paths_never_trigger(path: str) -> None:
    assert watch.is_ignored(P(path))
    assert watch.pipelines_for(P(path)) == ()


def test_a_burst_plans_each_pipeline_once_in_order() -> None:
    burst = [P("data/raw/churn.csv"), P("core/a.py"), P("core/b.py"), P("params.yaml")]
    assert watch.plan(burst) == ["code", "data", "train"]
    assert watch.plan([P("var/x"), P(".venv/y")]) == []
    assert watch.plan([]) == []


def test_a_command_that_cannot_start_is_a_failed_run(tmp_path: Path) -> None:
    out = io.StringIO()
    watcher = watch.Watcher(root=tmp_path, command="/nonexistent/pipeline {name}", out=out)
    outcome = watcher.run("code", [P("core/a.py")])
    assert outcome.returncode == 127
    assert "could not start /nonexistent/pipeline" in outcome.log_path.read_text(encoding="utf-8")
    assert outcome.log_path.parent == tmp_path / "var" / "watch"
    assert "code  ✗ FAILED (exit 127)" in out.getvalue()
