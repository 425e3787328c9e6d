"""ops.runner: the runner stops at the first failure, keeps and times each step's log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ops import runner as automation
from core.settings import Settings

FAKE_MAKE = """\
import os, sys
step = sys.argv[1]
print(f"{step}: working")
print(f"{step}: problem", file=sys.stderr)
sys.exit(int(os.environ.get("FAIL_CODE", "2")) if step == os.environ.get("FAIL_STEP") else 0)
"""


@pytest.fixture()
def fake_make(tmp_path: Path) -> list[str]:
    """A stand-in for ``make`` that prints two lines and fails on $FAIL_STEP."""
    script = tmp_path / "fake_make.py"
    script.write_text(FAKE_MAKE, encoding="utf-8")
    return [sys.executable, str(script)]


def test_all_steps_pass(
    settings: Settings, fake_make: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    run = automation.run_pipeline("code", ["format-check", "lint"], settings, make=fake_make)

    assert run.ok and run.returncode == 0
    assert [step.name for step in run.steps] == ["format-check", "lint"]
    assert run.log_dir.parent == settings.var_dir / "pipelines"
    log = run.steps[1].log_path.read_text(encoding="utf-8")
    assert "lint: working" in log and "lint: problem" in log  # stdout and stderr captured
    summary = json.loads((run.log_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["name"] == "code" and len(summary["steps"]) == 2
    out = capsys.readouterr().out
    assert "==> [code 1/2] format-check" in out and "lint: working" in out
    assert "pipeline code: passed" in automation.summary_text(run)


def test_stops_at_the_first_failure(
    settings: Settings, fake_make: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAIL_STEP", "lint")
    monkeypatch.setenv("FAIL_CODE", "3")
    run = automation.run_pipeline(
        "code", ["format-check", "lint", "typecheck"], settings, make=fake_make, echo=False
    )

    assert not run.ok
    assert run.returncode == 3
    assert [step.name for step in run.steps] == ["format-check", "lint"]
    assert run.failed_step is not None and run.failed_step.name == "lint"
    text = automation.summary_text(run)
    assert "failing step: lint (exit 3)" in text
    assert "typecheck        not run" in text
    assert automation.run_title(run) == "pipeline code FAILED at lint"


def test_a_step_that_cannot_start_fails_with_127(settings: Settings) -> None:
    run = automation.run_pipeline(
        "data", ["validate-data"], settings, make=["/nonexistent/make"], echo=False
    )
    assert run.returncode == 127
    assert "could not start" in automation.tail(run.steps[0].log_path)


def test_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("".join(f"line {i}\n" for i in range(200)), encoding="utf-8")
    assert automation.tail(path, 3) == "line 197\nline 198\nline 199\n"
    assert automation.tail(tmp_path / "missing.log") == ""


def test_cli_run_returns_the_failing_exit_code(
    settings: Settings,
    fake_make: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FAIL_STEP", "train")
    make = " ".join(fake_make)
    code = automation.main(
        ["run", "train", "train", "evaluate", "--make", make, "--no-desktop", "--email", "never"]
    )
    assert code == 2
    out = capsys.readouterr().out
    assert "pipeline train: FAILED" in out
    assert len(list((settings.var_dir / "pipelines").iterdir())) == 1
    assert automation.main(["run", "code", "lint", "--make", make, "--quiet", "--no-desktop"]) == 0


def test_model_version_without_a_store_says_so_and_creates_none(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fresh clone (no MLflow store yet): exit 1 with the reason; the read creates no store
    (``make docker-push`` and the image tags ask before anything was trained)."""
    assert automation.main(["model-version"]) == 1
    assert "no champion model version" in capsys.readouterr().err
    assert not list(settings.var_dir.glob("mlflow*"))
