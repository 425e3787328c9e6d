"""``churnops predict`` / ``make predict`` with a labelled file: the model's quality on the rows
it never trained on, and how many it had seen, on stderr."""

from __future__ import annotations

import os
import subprocess  # nosec B404 - the test runs the real make target
from pathlib import Path

import pandas as pd
import pytest

from core.cli import main
from core.labelled import SampleRule, labelled_report
from core.persist import save_bundle
from core.pipelines import TrainedModel
from core.schema import check_frame
from core.settings import Settings
from tests.conftest import ROOT
from tests.factories import bigml_like, to_bigml, write_csv


def _bigml20(tmp_path: Path) -> Path:
    return write_csv(to_bigml(bigml_like()[1]), tmp_path / "bigml-20.csv")


def test_predict_prints_the_quality_on_unseen_rows(
    settings: Settings,
    trained_model: TrainedModel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bundle_dir = save_bundle(trained_model.bundle, tmp_path / "model")
    source = _bigml20(tmp_path)
    target = tmp_path / "scored.csv"
    args = ["predict", "--input", str(source), "--output", str(target), "--model", str(bundle_dir)]
    assert main(args) == 0
    err = capsys.readouterr().err
    scored = pd.read_csv(target)
    report = labelled_report(
        check_frame(pd.read_csv(source), require_target=True),
        scored["churn_probability"].to_numpy(),
        trained_model.bundle.threshold,
        trained_model.bundle.seen_rows,
        SampleRule.from_settings(settings),
    )
    assert report is not None and report.seen > 300
    split = trained_model.split
    seen_index = set(split.train.index) | set(split.valid.index)
    assert report.seen == sum(i in seen_index for i in bigml_like()[1].index)
    assert f"labels: {report.note}" in err
    assert f"  {report.quality.text('f1')}" in err
    assert f"{report.seen} rows it was trained on left out" in err


def test_predict_without_labels_prints_no_quality(
    settings: Settings,
    trained_model: TrainedModel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    del settings
    bundle_dir = save_bundle(trained_model.bundle, tmp_path / "model")
    source = write_csv(to_bigml(bigml_like()[1].drop(columns="churn")), tmp_path / "in.csv")
    assert main(["predict", "--input", str(source), "--model", str(bundle_dir)]) == 0
    assert "labels:" not in capsys.readouterr().err


@pytest.mark.slow
def test_make_predict_reports_a_labelled_file(
    settings: Settings, trained_model: TrainedModel, tmp_path: Path
) -> None:
    """The README's command, as a user runs it (make, the installed churnops, a fresh VAR_DIR)."""
    bundle_dir = save_bundle(trained_model.bundle, tmp_path / "model")
    source = _bigml20(tmp_path)
    target = tmp_path / "scored.csv"
    env = {**os.environ, "VAR_DIR": str(settings.var_dir)}
    done = subprocess.run(  # nosec B603 B607 - make from PATH, fixed arguments
        ["make", "-s", "predict", f"INPUT={source}", f"OUTPUT={target}", f"MODEL={bundle_dir}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "labels: f1 " in done.stderr and "rows it was trained on left out" in done.stderr
    assert len(pd.read_csv(target)) == 667
