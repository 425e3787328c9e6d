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

from core.schema import FEATURE_NAMES, POSITIVE_LABEL, TARGET, check_frame


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


def load_dataset(path: Path) -> pd.DataFrame:
    """Read a churn CSV (modeldata or BigML spelling), validate it and return the typed table.

    Args:
        path: CSV file with the 19 raw features and the ``churn`` target.

    Returns:
        A new DataFrame with the canonical columns in schema order and ``churn`` (``yes``/``no``).

    Raises:
        core.schema.SchemaError: listing every bad row and column.
    """
    raw = pd.read_csv(path, skipinitialspace=True)
    return check_frame(raw, require_target=True)


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
