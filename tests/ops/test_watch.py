"""ops.watch: which changed path runs which pipeline, and which paths never trigger anything."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path
from pathlib import PurePosixPath as P

import pytest

from ops import watch
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("core/train.py", ("code",)),
        ("api/routes/predict.py", ("code",)),
        ("tests/core/test_x.py", ("code",)),
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


IGNORED = [
    ".venv/lib/python3.11/site-packages/x.py",
    "var/pipelines/run/01-lint.log",
    "var/watch/x.log",
    "mlruns/0/meta.yaml",
    ".git/index",
    "node_modules/a/index.js",
    "core/__pycache__/watch.cpython-311.pyc",
    ".pytest_cache/v/cache/lastfailed",
    ".mypy_cache/3.11/core.json",
    ".hypothesis/examples/abc/def",
    "core/.watch.py.swp",
    "ops/watch.py~",
    "core/4913",
    "coverage.xml",
    ".coverage",
    "churnops.egg-info/PKG-INFO",
    "ui/node_modules/x.js",
]
CHANGES = ["core/train.py", "tests/core/test_x.py", "data/raw/churn.csv", "Makefile", "new.py"]


@pytest.fixture(name="clone")
def fixture_clone(tmp_path: Path) -> Path:
    """A git work tree with the project's own .gitignore."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copy2(ROOT / ".gitignore", tmp_path / ".gitignore")
    return tmp_path


def test_what_git_ignores_is_never_a_change(clone: Path) -> None:
    """The pipelines' outputs, caches and editor droppings are ignored; sources are not."""
    rules = watch.GitIgnore(clone)
    assert rules.ignored(P(p) for p in IGNORED) == {P(p) for p in IGNORED}
    assert rules.ignored(P(p) for p in CHANGES) == set()


def test_a_folder_outside_git_is_refused(tmp_path: Path) -> None:
    with pytest.raises(watch.NotAWorkTree, match="git"):
        watch.GitIgnore(tmp_path)


def test_a_burst_plans_each_pipeline_once_in_order() -> None:
    burst = [P("data/raw/churn.csv"), P("core/a.py"), P("core/b.py"), P("params.yaml")]
    assert watch.plan(burst) == ["code", "data", "train"]
    assert watch.plan([]) == []


def test_a_command_that_cannot_start_is_a_failed_run(clone: Path) -> None:
    out = io.StringIO()
    watcher = watch.Watcher(root=clone, command="/nonexistent/pipeline {name}", out=out)
    outcome = watcher.run("code", [P("core/a.py")])
    assert outcome.returncode == 127
    assert "could not start /nonexistent/pipeline" in outcome.log_path.read_text(encoding="utf-8")
    assert outcome.log_path.parent == clone / "var" / "watch"
    assert "code  ✗ FAILED (exit 127)" in out.getvalue()
