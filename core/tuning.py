"""Hyper-parameter search (``make tune``): sampled configurations, cross-validated, nested runs.

Each trial samples hyper-parameters from the family's grid (:data:`SEARCH_SPACES`, sklearn's
``ParameterSampler``, no extra dependency) and scores them with
:func:`core.evaluate.cross_validate_f1` on the non-holdout rows only, so the holdout the gate
uses stays unseen. Trials are nested runs of one parent run; the best configuration is then trained
by :func:`core.pipelines.train_and_register` inside the same parent, i.e. logged, registered and
put through the same promotion gate as ``make train``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.model_selection import ParameterSampler

from core import registry
from core.data import load_dataset, split_dataset, to_xy
from core.evaluate import cross_validate_f1
from core.pipelines import TrainResult, train_and_register
from core.families import DEFAULT_FAMILY, ModelFamily
from core.settings import Settings
from core.train import TrainConfig

Progress = Callable[[str, float], None]

SEARCH_SPACES: dict[str, dict[str, list[Any]]] = {
    "hgb": {
        "max_iter": [100, 200, 300],
        "learning_rate": [0.03, 0.05, 0.1],
        "max_leaf_nodes": [7, 15, 31],
        "min_samples_leaf": [10, 20, 40],
        "l2_regularization": [0.0, 1.0],
    },
    "rf": {
        "n_estimators": [100, 200, 300],
        "max_depth": [None, 8, 12],
        "min_samples_leaf": [1, 2, 4],
        "max_features": ["sqrt", 0.5],
    },
    "logreg": {"C": [0.01, 0.1, 1.0, 10.0], "class_weight": [None, "balanced"]},
}


class Trial(BaseModel):
    """One sampled configuration and its cross-validated F1."""

    model_config = ConfigDict(frozen=True)

    number: int
    params: dict[str, Any]
    cv_f1_mean: float
    cv_f1_std: float
    run_id: str


class TuneResult(BaseModel):
    """The search: every trial, the best one, and what training it gave (gate included)."""

    model_config = ConfigDict(frozen=True)

    parent_run_id: str
    family: str
    trials: list[Trial]
    best: Trial
    result: TrainResult = Field(description="Training of the best configuration (gated).")

    def summary(self) -> dict[str, Any]:
        """One JSON line: the parent run, the best trial and the registration outcome."""
        return {
            "parent_run_id": self.parent_run_id,
            "best_params": self.best.params,
            "best_cv_f1": round(self.best.cv_f1_mean, 4),
            **self.result.summary(),
        }


def candidates(family: str, trials: int, seed: int = 42) -> list[dict[str, Any]]:
    """``trials`` distinct configurations sampled from the family's grid (seeded)."""
    space = SEARCH_SPACES[family]
    return [dict(c) for c in ParameterSampler(space, n_iter=trials, random_state=seed)]


def _config(family: ModelFamily, params: dict[str, Any], base: TrainConfig) -> TrainConfig:
    data = base.model_dump()
    data.update(family=family, params={"kind": family, **params})
    return TrainConfig.model_validate(data)


def _run_trials(
    settings: Settings,
    base: TrainConfig,
    sampled: list[dict[str, Any]],
    data: tuple[pd.DataFrame, Any],
    folds: int,
    progress: Progress,
) -> list[Trial]:
    found: list[Trial] = []
    for number, params in enumerate(sampled):
        cv = cross_validate_f1(_config(base.family, params, base), *data, folds=folds)
        best_so_far = max([t.cv_f1_mean for t in found] + [cv.mean])
        run_id = registry.log_trial(settings, number, params, cv.scores, best_so_far)
        found.append(
            Trial(number=number, params=params, cv_f1_mean=cv.mean, cv_f1_std=cv.std, run_id=run_id)
        )
        progress(
            f"trial {number + 1}/{len(sampled)} cv_f1={cv.mean:.4f} best={best_so_far:.4f}",
            0.8 * (number + 1) / len(sampled),
        )
    return found


def tune(
    settings: Settings,
    family: ModelFamily = DEFAULT_FAMILY,
    trials: int = 8,
    folds: int = 3,
    on_progress: Progress | None = None,
    seed: int = 42,
) -> TuneResult:
    """Search hyper-parameters, then train, register and gate the best configuration.

    Args:
        settings: data path and registry location.
        family: the model family to tune.
        trials: number of sampled configurations.
        folds: cross-validation folds per trial.
        on_progress: ``(step, fraction)`` callback.
        seed: seed of the sampler.

    Returns:
        The :class:`TuneResult`.
    """
    progress = on_progress or (lambda step, fraction: None)
    base = TrainConfig(family=family, cv_folds=folds)
    split = split_dataset(load_dataset(settings.data_path), base.split)
    dev = to_xy(pd.concat([split.train, split.valid]))
    sampled = candidates(family, trials, seed)
    meta = {"family": family, "trials": len(sampled), "folds": folds, "seed": seed}
    with registry.search_run(settings, f"tune-{family}", meta) as parent_id:
        found = _run_trials(settings, base, sampled, dev, folds, progress)
        best = max(found, key=lambda t: t.cv_f1_mean)
        progress(f"training best trial {best.number}: {best.params}", 0.8)
        result = train_and_register(
            settings,
            _config(family, best.params, base),
            on_progress=lambda step, f: progress(f"best: {step}", 0.8 + 0.2 * f),
        )
        registry.tag_active_run(
            {
                "best_trial": best.number,
                "best_cv_f1": f"{best.cv_f1_mean:.4f}",
                "model_version": result.model_version,
                "promoted": result.promoted,
            }
        )
    return TuneResult(
        parent_run_id=parent_id, family=family, trials=found, best=best, result=result
    )
