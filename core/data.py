"""Loading, validating and splitting the churn table.

Pure functions over DataFrames: nothing here mutates its input. The split is the one every figure
of the project is measured on: a 20 % stratified holdout drawn with seed 42, and a validation part
carved from the remaining training rows, used only to choose the decision threshold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.model_selection import train_test_split

from core.schema import FEATURE_NAMES, POSITIVE_LABEL, TARGET, YES_NO, SchemaError
from core.tables import Table, read_path

# Fewest rows of each class a training file must have: the stratified holdout (20 %), the
# validation part (20 % of the rest) and the CV folds each need both classes.
MIN_ROWS_PER_CLASS = 10


class SplitParams(BaseModel):
    """How the table is split into train / validation / holdout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    test_size: float = Field(0.2, gt=0, lt=1, description="Share of all rows held out for test.")
    valid_size: float = Field(
        0.2, gt=0, lt=1, description="Share of the non-holdout rows used to choose the threshold."
    )
    seed: int = Field(42, description="Random seed of both stratified splits.")


@dataclass(frozen=True)
class DatasetSplit:
    """The three disjoint parts of a table (original row index kept, for traceability).

    Attributes:
        train: rows the model is fitted on.
        valid: rows the decision threshold is chosen on (never seen by the fit).
        test: the fixed holdout every reported figure is measured on.
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (the dataset digest recorded with every model).

    Args:
        path: file to hash.

    Returns:
        The 64-character lower-case hex digest.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_dataset(path: Path, *, drop_invalid_rows: bool = False) -> pd.DataFrame:
    """Read a labelled churn file (any format and spelling :mod:`core.tables` reads), validate it
    and return the typed table.

    Args:
        path: a CSV/TSV/workbook with the 19 raw features and the ``churn`` label.
        drop_invalid_rows: keep only the valid rows instead of refusing a file with bad rows
            (missing columns still refuse it); :func:`labelled_rows` says how many were dropped.

    Returns:
        A new DataFrame with the canonical columns in schema order and ``churn`` (``yes``/``no``).

    Raises:
        OSError: when the file cannot be read.
        core.tables.TableError: when it is not a readable table.
        core.schema.SchemaError: listing every bad row and column.
    """
    return labelled_rows(read_path(path, require_target=True), drop_invalid_rows=drop_invalid_rows)


def labelled_rows(table: Table, *, drop_invalid_rows: bool = False) -> pd.DataFrame:
    """The valid rows of a table read with ``require_target=True``.

    Args:
        table: the table.
        drop_invalid_rows: drop the invalid rows instead of refusing the table (a table with a
            column-level issue, e.g. a missing column or no rows, is refused all the same).

    Returns:
        The typed rows (``len(table.source) - len(result)`` were dropped).

    Raises:
        core.schema.SchemaError: when the table has issues that are not dropped.
    """
    report = table.report
    if report.ok:
        return report.frame
    if not drop_invalid_rows or any(issue.row is None for issue in report.issues):
        raise SchemaError(report)
    return report.frame.loc[report.valid_rows].reset_index(drop=True)


class NotTrainable(ValueError):
    """A valid table that a model cannot be trained and judged on (e.g. too few rows per class).

    Attributes:
        reasons: every reason, one line each.
    """

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def check_trainable(
    frame: pd.DataFrame, params: SplitParams | None = None, cv_folds: int = 0
) -> None:
    """Refuse, before any fitting, a labelled table that training would fail on.

    The check runs the real split (:func:`split_dataset`), so it cannot disagree with training:
    every part (train, validation, holdout) must hold both classes, and the rows outside the
    holdout must give each of the ``cv_folds`` folds both classes.

    Args:
        frame: the validated table (``churn`` = ``yes``/``no``).
        params: the split the training will use.
        cv_folds: the folds of the cross-validated F1 (0 = none).

    Raises:
        NotTrainable: with every reason.
    """
    counts = {label: int((frame[TARGET] == label).sum()) for label in YES_NO}
    needed = max(MIN_ROWS_PER_CLASS, cv_folds)
    short = [f"{counts[label]} {label!r}" for label in YES_NO if counts[label] < needed]
    if short:
        raise NotTrainable(
            [
                f"too few rows per class to train: {' and '.join(short)} row(s); "
                f"at least {needed} of each class are needed (holdout, validation and CV folds "
                "are drawn from them)"
            ]
        )
    try:
        split = split_dataset(frame, params)
    except ValueError as exc:
        raise NotTrainable([f"the table cannot be split for training: {exc}"]) from exc
    reasons = [
        f"the {name} part would hold one class only; add rows of the other class"
        for name, part in (
            ("train", split.train),
            ("validation", split.valid),
            ("holdout", split.test),
        )
        if part[TARGET].nunique() < 2
    ]
    dev = pd.concat([split.train, split.valid])[TARGET]
    if cv_folds and int(dev.value_counts().min()) < cv_folds:
        reasons.append(
            f"{cv_folds}-fold cross-validation needs {cv_folds} rows of each class outside the "
            f"holdout, there are {int(dev.value_counts().min())}; add rows or lower the folds"
        )
    if reasons:
        raise NotTrainable(reasons)


def to_xy(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Separate the 19 raw features from the target.

    Args:
        frame: a validated table with the ``churn`` column.

    Returns:
        ``(X, y)``: a copy of the feature columns in schema order, and ``y`` as 0/1 ``int64``.
    """
    features = frame.loc[:, list(FEATURE_NAMES)].copy()
    target = (frame[TARGET].to_numpy() == POSITIVE_LABEL).astype(np.int64)
    return features, target


def split_dataset(frame: pd.DataFrame, params: SplitParams | None = None) -> DatasetSplit:
    """Split a validated table into train / valid / test, each stratified on ``churn``.

    Args:
        frame: a validated table with the ``churn`` column.
        params: sizes and seed (default: 20 % holdout, 20 % of the rest for validation, seed 42).

    Returns:
        A :class:`DatasetSplit` of three new DataFrames.
    """
    params = params or SplitParams()
    positions = np.arange(len(frame))
    labels = frame[TARGET].to_numpy()
    rest, test = train_test_split(
        positions, test_size=params.test_size, stratify=labels, random_state=params.seed
    )
    train, valid = train_test_split(
        rest, test_size=params.valid_size, stratify=labels[rest], random_state=params.seed
    )
    return DatasetSplit(
        train=frame.iloc[np.sort(train)].copy(),
        valid=frame.iloc[np.sort(valid)].copy(),
        test=frame.iloc[np.sort(test)].copy(),
    )
