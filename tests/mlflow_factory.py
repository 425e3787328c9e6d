"""Small real models for the MLflow tests (tracking, registry, gate, serving parity).

Models are trained with the real ``core`` pipeline on the real data split; ``max_iter`` keeps them
fast. A 5-iteration HGB misses the quality floors (Brier > 0.06); 60 iterations pass them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from core.data import DatasetSplit, file_sha256, load_dataset, split_dataset, to_xy
from core.registry import TrainingRecord
from core.train import HGBParams, TrainConfig, training_curve
from tests.conftest import ROOT
from tests.factories import make_bundle

DATA = ROOT / "data" / "raw" / "churn.csv"


@lru_cache(maxsize=1)
def data_split() -> DatasetSplit:
    """The fixed split of the real data (loaded once per test session)."""
    return split_dataset(load_dataset(DATA))


@lru_cache(maxsize=1)
def data_sha256() -> str:
    """SHA-256 of the real data file."""
    return file_sha256(DATA)


def holdout() -> tuple[pd.DataFrame, np.ndarray]:
    """Raw holdout features and 0/1 labels."""
    return to_xy(data_split().test)


@lru_cache(maxsize=8)
def record(max_iter: int = 60, learning_rate: float = 0.05) -> TrainingRecord:
    """A trained HGB as a :class:`TrainingRecord` (cached: models are immutable here)."""
    config = TrainConfig(params=HGBParams(max_iter=max_iter, learning_rate=learning_rate))
    split = data_split()
    bundle = make_bundle(split, config, data_sha256())
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (to_xy(p) for p in split.__dict__.values())
    return TrainingRecord(
        bundle=bundle,
        train_frame=split.train,
        x_holdout=x_te,
        y_holdout=y_te,
        curve=training_curve(bundle.pipeline, x_tr, y_tr, x_va, y_va, max_points=20),
        data_path=DATA,
        run_name=f"hgb-{max_iter}",
    )
