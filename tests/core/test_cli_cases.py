"""Every input of tests/fixtures/cases/ through ``python -m core`` (and ``make validate-data``):
the behaviour the cases' README expects, a one-line reason and exit 1 otherwise, never a
traceback. Workbooks, UTF-16 and Latin-1 files too."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from core.cli import main
from core.settings import Settings, get_settings
from tests.factories import CASES, ROOT

BASELINE = CASES / "bigml_5rows_baseline.csv"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    if args[0] == "predict":  # the session's bundle, not a champion (none is registered here)
        args = (*args, "--model", str(get_settings().var_dir / "models" / "session-hgb"))
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _scored(capsys: pytest.CaptureFixture[str], path: Path, tmp_path: Path) -> pd.DataFrame:
    target = tmp_path / f"{path.stem}-scored.csv"
    code, _, err = _run(capsys, "predict", "--input", str(path), "--output", str(target))
    assert code == 0, err
    return pd.read_csv(
        target, sep=None, engine="python", decimal="," if "fr_" in path.name else "."
    )


def test_fr_excel_semicolon_decimal_comma(
    trained_var: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scored like the canonical rows; the dialect reported; the output in the same dialect."""
    del trained_var
    french = CASES / "fr_excel_semicolon_decimal_comma.csv"
    code, _, err = _run(capsys, "validate", "--no-target", "--data", str(french))
    assert code == 0 and "read as ;-separated, decimal comma, UTF-8" in err
    scored = _scored(capsys, french, tmp_path)
    assert (
        scored["churn_probability"].tolist()
        == _scored(capsys, BASELINE, tmp_path)["churn_probability"].tolist()
    )
    header = (tmp_path / f"{french.stem}-scored.csv").read_text("utf-8").splitlines()[0]
    assert header.endswith(";Churn;churn_probability;churn_label")


def test_kaggle_telecoms_phone_number(
    trained_var: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scored; `phone number` passed through next to each prediction, listed as a warning."""
    del trained_var
    path = CASES / "kaggle_telecoms_phone_number.csv"
    target = tmp_path / "out.csv"
    code, _, err = _run(capsys, "predict", "--input", str(path), "--output", str(target))
    assert code == 0, err
    assert "warning: not in the schema, passed through unchanged: 'phone number'" in err
    scored = pd.read_csv(target)
    assert scored["phone number"].tolist() == pd.read_csv(path)["phone number"].tolist()
    assert scored["churn_probability"].between(0, 1).all()


@pytest.mark.parametrize("command", ["validate", "predict", "train"])
def test_duplicate_churn_columns(
    trained_var: Settings, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line naming both columns, exit 1."""
    del trained_var
    path = str(CASES / "duplicate_churn_columns.csv")
    flag = "--input" if command == "predict" else "--data"
    code, _, err = _run(capsys, command, flag, path, *(["--quiet"] * (command == "train")))
    assert code == 1
    assert err.strip().splitlines()[-1] == (
        "invalid data: 'Churn' and 'churn' are both the field 'churn': keep one of each"
    )


def test_bigml_5rows_baseline(
    trained_var: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scores fine; as a training file, refused up front in one line (too few rows per class)."""
    del trained_var
    assert len(_scored(capsys, BASELINE, tmp_path)) == 5
    code, out, err = _run(capsys, "train", "--data", str(BASELINE), "--quiet")
    assert code == 1 and out == ""
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("invalid data: too few rows per class to train: 3 'no' and 2 'yes' row(s)")
    )


@pytest.mark.parametrize("command", ["validate", "predict", "train", "evaluate"])
def test_empty_file(
    trained_var: Settings, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line, exit 1, no traceback, for every command."""
    del trained_var
    flag = "--input" if command == "predict" else "--data"
    code, _, err = _run(capsys, command, flag, str(CASES / "empty_file.csv"))
    assert code == 1
    assert err.strip() == (
        "invalid data: the file is empty; export the table with its header row and rows"
    )


@pytest.mark.parametrize(
    "name",
    ["batch_value_is_list.json", "batch_df_to_dict_wrapped_in_list.json", "json_bigml_keys.json"],
)
def test_json_cases(trained_var: Settings, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The JSON cases as CLI input: a one-line reason (the row and field, or the shape)."""
    del trained_var
    code, _, err = _run(capsys, "predict", "--input", str(CASES / name))
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert {
        "batch_value_is_list.json": "state (row 0): a list is not a single value",
        "batch_df_to_dict_wrapped_in_list.json": "to_dict() in a list",
        "json_bigml_keys.json": "a single customer",
    }[name] in last


def _bigml_rows() -> pd.DataFrame:
    return pd.read_csv(BASELINE)


def _write(kind: str, frame: pd.DataFrame, path: Path) -> None:
    if kind == "xlsx":
        frame.to_excel(path, index=False)
    elif kind == "utf16":  # Excel's "Unicode text": tab-separated UTF-16 with a BOM
        path.write_bytes(frame.to_csv(index=False, sep="\t").encode("utf-16"))
    else:
        path.write_bytes(frame.assign(Ville="Évry").to_csv(index=False).encode("latin-1"))


@pytest.mark.parametrize("kind", ["latin1", "utf16", "xlsx"])
def test_workbooks_utf16_and_latin1_are_scored(
    trained_var: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """Files that used to give a traceback are read, and scored like the baseline."""
    del trained_var
    path = tmp_path / f"customers.{'xlsx' if kind == 'xlsx' else 'csv'}"
    _write(kind, _bigml_rows(), path)
    expected = _scored(capsys, BASELINE, tmp_path)["churn_probability"].tolist()
    assert _scored(capsys, path, tmp_path)["churn_probability"].tolist() == expected


@pytest.mark.slow
def test_make_validate_data_checks_a_file_to_score(tmp_path: Path) -> None:
    """`make validate-data TARGET=no` validates a file without a churn column."""
    scoring = tmp_path / "to-score.csv"
    _bigml_rows().drop(columns="Churn").to_csv(scoring, index=False)
    env = {**os.environ, "VAR_DIR": str(tmp_path / "var")}

    def make(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-s", "validate-data", f"DATA_CSV={scoring}", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    assert make("TARGET=no").returncode == 0
    labelled = make()  # make exits 2 when its recipe exits 1
    assert labelled.returncode != 0 and "churn (all rows): missing column" in labelled.stdout
    assert "Traceback" not in labelled.stderr
