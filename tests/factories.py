"""Shared builders for tests: customers, tables, CSV files and small training configurations.

Everything here is built from the real data file or the schema's documented examples; nothing is
fetched from the network.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from core import fingerprints
from core.data import DatasetSplit, load_dataset, to_xy
from core.evaluate import Metrics, choose_threshold, evaluate
from core.families import ModelFamily
from core.persist import BundleMeta, ModelBundle
from core.pipelines import TrainedModel, TrainResult, fit_and_evaluate
from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL, FEATURES
from core.train import HGBParams, LogRegParams, RFParams, TrainConfig, fit_pipeline

ROOT = Path(__file__).resolve().parents[1]
DATA_CSV = ROOT / "data" / "raw" / "churn.csv"
# Inputs real users send (public BigML rows), copied from shared/cases/ with their README.
CASES = ROOT / "tests" / "fixtures" / "cases" / "inputs"

# The BigML ``churn-bigml`` spelling of each canonical column.
BIGML_COLUMNS: dict[str, str] = {spec.name: spec.bigml for spec in FEATURES} | {"churn": "Churn"}


def customer(**overrides: Any) -> dict[str, Any]:
    """The schema's documented loyal customer, with ``overrides`` applied."""
    return {**EXAMPLE_LOYAL, **overrides}


def churner(**overrides: Any) -> dict[str, Any]:
    """The schema's documented churner, with ``overrides`` applied."""
    return {**EXAMPLE_CHURNER, **overrides}


@lru_cache(maxsize=1)
def _raw_table() -> pd.DataFrame:
    return pd.read_csv(DATA_CSV)


def raw_rows(n: int = 50, seed: int = 0) -> pd.DataFrame:
    """``n`` rows of the real CSV as read (canonical spelling, both classes), as a new frame."""
    table = _raw_table()
    churn = table[table["churn"] == "yes"].sample(max(1, n // 5), random_state=seed)
    stay = table[table["churn"] == "no"].sample(n - len(churn), random_state=seed)
    return pd.concat([churn, stay]).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def to_bigml(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows in the BigML spelling (column names, area code 415, Yes/No, True/False)."""
    out = frame.rename(columns=BIGML_COLUMNS)
    out["Area code"] = out["Area code"].str.replace("area_code_", "", regex=False).astype(int)
    for column in ("International plan", "Voice mail plan"):
        out[column] = out[column].map({"yes": "Yes", "no": "No"})
    if "Churn" in out.columns:
        out["Churn"] = out["Churn"].map({"yes": True, "no": False})
    return out


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as a CSV (no index) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def small_config(family: ModelFamily = "hgb", **overrides: Any) -> TrainConfig:
    """A fast configuration of ``family`` (few trees/iterations, no CV) for code tests."""
    params: HGBParams | RFParams | LogRegParams
    if family == "hgb":
        params = HGBParams(max_iter=20, max_leaf_nodes=7)
    elif family == "rf":
        params = RFParams(n_estimators=12, max_depth=8)
    else:
        params = LogRegParams()
    return TrainConfig(family=family, params=params, **{"cv_folds": 0, **overrides})


@lru_cache(maxsize=1)
def dataset() -> pd.DataFrame:
    """The validated real data set (cached; treat as read-only)."""
    return load_dataset(DATA_CSV)


@lru_cache(maxsize=1)
def bigml_like() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A BigML-like 80/20 pair of tables built from the bundled data (cached; read-only).

    Like the course's ``churn-bigml-80`` / ``-20`` files (2,666 and 667 rows), every row is a row
    of ``data/raw/churn.csv``: 3,333 rows drawn stratified on churn (seed 7), split 80/20
    stratified. Both keep the index of ``dataset()``, i.e. the row number in the bundled file.
    """
    table = dataset()
    drawn, _ = train_test_split(
        table.index, train_size=3333, stratify=table["churn"], random_state=7
    )
    rows = table.loc[sorted(drawn)]
    b80, b20 = train_test_split(rows.index, test_size=667, stratify=rows["churn"], random_state=7)
    return rows.loc[sorted(b80)].copy(), rows.loc[sorted(b20)].copy()


@lru_cache(maxsize=1)
def trained_default() -> TrainedModel:
    """The default configuration (HGB) trained once on the real data, without CV (cached)."""
    return fit_and_evaluate(dataset(), TrainConfig(cv_folds=0), data_sha256="tests")


def train_result(**overrides: Any) -> TrainResult:
    """A retrain's result as ``core.pipelines.train_and_register`` returns it (figures made up):
    promoted v4 over champion v3 unless ``overrides`` say otherwise."""
    metrics = Metrics(
        f1=0.85, precision=0.9, recall=0.8, roc_auc=0.9, pr_auc=0.86, brier=0.04,
        accuracy=0.96, threshold=0.42, confusion=[[850, 10], [25, 115]], n=1000,
    )  # fmt: skip
    values: dict[str, Any] = {
        "run_id": "r4", "model_version": "4", "promoted": True, "f1": 0.85, "roc_auc": 0.9,
        "family": "hgb", "threshold": 0.42, "metrics": metrics, "cv": None,
        "reason": "f1 0.8500 beats champion v3 0.8300 by >= 0.002", "gate_metric": "f1",
        "challenger_score": 0.85, "champion_score": 0.83, "champion_version": "3",
        "bundle_dir": "var/models/x", "data_sha256": "ab" * 32, "duration_s": 12.5,
    }  # fmt: skip
    return TrainResult.model_validate({**values, **overrides})


def make_bundle(split: DatasetSplit, config: TrainConfig, data_sha256: str = "test") -> ModelBundle:
    """Fit, choose the threshold on validation, evaluate on the holdout; keep the fingerprints
    of the train and validation rows, as training does."""
    x_train, y_train = to_xy(split.train)
    x_valid, y_valid = to_xy(split.valid)
    x_test, y_test = to_xy(split.test)
    pipeline = fit_pipeline(config, x_train, y_train)
    threshold = choose_threshold(y_valid, pipeline.predict_proba(x_valid)[:, 1])
    metrics = evaluate(y_test, pipeline.predict_proba(x_test)[:, 1], threshold)
    meta = BundleMeta(
        family=config.family,
        config=config,
        data_sha256=data_sha256,
        n_train=len(x_train),
        n_valid=len(x_valid),
        n_test=len(x_test),
        feature_names_in=list(x_train.columns),
        fingerprint_format=fingerprints.FORMAT,
    )
    seen = fingerprints.fingerprint_set(pd.concat([split.train, split.valid]))
    return ModelBundle(
        pipeline=pipeline, threshold=threshold, metrics=metrics, meta=meta, fingerprints=seen
    )
