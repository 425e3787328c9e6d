"""``churnops`` ML commands: every sub-command on real files, and ``make train``'s JSON contract."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.cli import build_parser, main
from core.persist import latest_bundle_dir, load_bundle
from core.settings import Settings, get_settings
from tests.factories import DATA_CSV, ROOT, raw_rows, to_bigml, write_csv

SUMMARY_KEYS = ["run_id", "model_version", "f1", "roc_auc", "promoted"]


def _last_json_line(text: str) -> dict[str, object]:
    parsed: dict[str, object] = json.loads(text.strip().splitlines()[-1])
    return parsed


def test_validate_reports_ok_and_every_issue(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    del settings
    assert main(["validate", "--data", str(DATA_CSV)]) == 0
    assert capsys.readouterr().out.startswith(f"OK {DATA_CSV}: 5000 rows")
    bad = raw_rows(6).assign(state=["KS", "ZZ", "KS", "KS", "KS", "KS"])
    bad = bad.drop(columns="churn")
    assert main(["validate", "--data", str(write_csv(bad, tmp_path / "bad.csv"))]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "churn (all rows): missing column" in out
    assert "state (row 1): unknown value 'ZZ'" in out
    path = write_csv(to_bigml(bad.drop(index=1)), tmp_path / "bigml.csv")
    assert main(["validate", "--no-target", "--data", str(path)]) == 0


@pytest.mark.slow  # a whole training with 2-fold CV, logged and registered in MLflow
def test_train_saves_a_bundle_prints_progress_and_ends_with_the_json_line(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # train_and_register end to end (with whatever registry is plugged into its seam).
    assert main(["train", "--data", str(DATA_CSV), "--family", "logreg", "--cv-folds", "2"]) == 0
    captured = capsys.readouterr()
    summary = _last_json_line(captured.out)
    assert list(summary) == SUMMARY_KEYS
    if summary["run_id"] is None:  # no registry: nothing registered, no gate
        assert summary["model_version"] is None and summary["promoted"] is None
    else:
        assert summary["model_version"] is not None and summary["promoted"] is False
    progress = re.findall(r"^\[\s*(\d+)%\] (.+)$", captured.err, flags=re.MULTILINE)
    percents = [int(p) for p, _ in progress]
    assert percents == sorted(percents) and percents[0] == 0 and percents[-1] == 100
    assert {"load", "fit", "evaluate", "save", "cross-validate fold 2/2"} <= {
        s for _, s in progress
    }
    assert "below the quality floors" in captured.err  # logreg is only the baseline
    bundle = load_bundle(latest_bundle_dir(settings.var_dir / "models"))
    assert bundle.meta.family == "logreg" and bundle.meta.cv is not None
    assert round(bundle.metrics.f1, 4) == summary["f1"]


def test_evaluate_scores_the_latest_bundle(
    trained_var: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    del trained_var
    assert main(["evaluate", "--data", str(DATA_CSV), "--check"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["split"] == "holdout" and report["metrics"]["n"] == 1000
    assert report["passes_floors"] is True and report["failures"] == []
    assert main(["evaluate", "--data", str(DATA_CSV), "--split", "all"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["n"] == 5000


def test_predict_writes_scored_csv(
    trained_var: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle_dir = latest_bundle_dir(trained_var.var_dir / "models")
    rows = to_bigml(raw_rows(25, seed=9).drop(columns="churn"))
    source = write_csv(rows, tmp_path / "in.csv")
    target = tmp_path / "out" / "scored.csv"
    model = ["--model", str(bundle_dir)]
    assert main(["predict", "--input", str(source), "--output", str(target), *model]) == 0
    scored = pd.read_csv(target)
    assert list(scored.columns) == [*rows.columns, "churn_probability", "churn_label"]
    assert len(scored) == 25 and scored["churn_probability"].between(0, 1).all()
    err = capsys.readouterr().err
    assert "wrote 25 predictions" in err and f"bundle in {bundle_dir}" in err
    assert main(["predict", "--input", str(source), *model]) == 0
    assert capsys.readouterr().out.count("\n") == 26


def test_predict_without_a_champion_says_so(
    trained_var: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    empty_registry_uri: str,
) -> None:
    """The last trained bundle is not what the API serves: without a champion there is nothing
    to score with, and one line says so (no traceback). The registry is the session's empty
    MLflow store."""
    del trained_var
    monkeypatch.setenv("MLFLOW_TRACKING_URI", empty_registry_uri)
    get_settings.cache_clear()
    source = write_csv(raw_rows(5, seed=3).drop(columns="churn"), tmp_path / "in.csv")
    assert main(["predict", "--input", str(source)]) == 1
    err = capsys.readouterr().err
    assert "no champion" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "`make train`" in err and "--model DIR" in err  # what to do next


def test_errors_exit_1_with_a_message(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    del settings
    assert main(["evaluate"]) == 1
    assert "no trained model" in capsys.readouterr().err
    bad = write_csv(raw_rows(5).assign(total_night_charge=-3.0), tmp_path / "bad.csv")
    assert main(["train", "--data", str(bad), "--quiet"]) == 1
    assert "invalid data" in capsys.readouterr().err
    assert main(["train", "--cv-folds", "1", "--quiet"]) == 1  # refused by TrainConfig
    err = capsys.readouterr().err
    assert err.startswith("invalid value: ") and "cv_folds must be 0 (skip) or at least 2" in err


@pytest.mark.parametrize("argv", [["rollback"], ["promote", "3"]])
def test_a_champion_change_on_a_fresh_clone_says_train_first_and_creates_nothing(
    settings: Settings, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == "error: churn-model: no model registered yet (train one first: make train)\n"
    assert not settings.var_dir.exists() or not list(settings.var_dir.iterdir())


def test_rollback_on_a_store_with_nothing_registered_says_so(
    settings: Settings,
    empty_registry_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    del settings
    monkeypatch.setenv("MLFLOW_TRACKING_URI", empty_registry_uri)
    get_settings.cache_clear()
    try:
        assert main(["rollback"]) == 1
    finally:
        get_settings.cache_clear()
    assert "no model registered yet" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["champion", "rollback"])
def test_a_registry_command_s_failure_of_any_kind_is_one_line(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not only the registry's own errors: MLflow refusing the store URI is one line, exit 1."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://nowhere")
    get_settings.cache_clear()
    try:
        assert main([command]) == 1
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: ") and "bogus://nowhere" in err


@pytest.mark.parametrize("command", ["validate", "train", "evaluate", "predict"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "--" in capsys.readouterr().out


CHURNOPS = Path(sys.executable).with_name("churnops")


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [["--help"], ["serve", "--help"], ["prepare", "--help"], ["run", "--help"], ["train", "--help"],
     ["monitoring", "--help"], ["pipeline", "--help"], ["watch", "--help"], ["notify", "--help"],
     ["champion", "--help"]],
)  # fmt: skip
def test_the_installed_churnops_command_answers_every_group(argv: list[str]) -> None:
    """The one entry point ([project.scripts]) reaches every command, each with its help."""
    done = subprocess.run(
        [str(CHURNOPS), *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout or "churnops" in done.stdout
    if argv == ["--help"]:
        for command in ("serve", "run", "train", "predict", "monitoring", "pipeline", "watch"):
            assert command in done.stdout


def test_an_unknown_command_is_one_line_and_exit_2() -> None:
    done = subprocess.run(
        [str(CHURNOPS), "trian"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2 and "unknown command 'trian'" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_make_train_last_line_is_the_json_summary(tmp_path: Path) -> None:
    env = {**os.environ, "VAR_DIR": str(tmp_path / "var"), "CV_FOLDS": "0"}
    done = subprocess.run(
        ["make", "-s", "train"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    summary = _last_json_line(done.stdout)
    assert list(summary) == SUMMARY_KEYS
    assert float(str(summary["f1"])) >= 0.92 and float(str(summary["roc_auc"])) >= 0.92
    assert (tmp_path / "var" / "models" / "LATEST").is_file()
