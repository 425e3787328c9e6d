"""Model families, typed training configuration and the ONE sklearn ``Pipeline`` (features + model).

``build_pipeline`` returns ``Pipeline([("features", ChurnFeatures), ("model", estimator)])`` (plus a
``StandardScaler`` step for logistic regression): the model always sees the plain ``float64`` matrix
of :class:`core.features.ChurnFeatures`, never a ColumnTransformer or one-hot encoding.

Fitting and scoring run under a thread limit (:func:`thread_limit`; ``TrainConfig.n_threads``,
default 1): on the shared 2-core machine, OpenMP oversubscription made HistGradientBoosting fits
6-8x slower with 2 threads than with 1, and one-row ``predict_proba`` 30x slower.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import lru_cache
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

from core.data import SplitParams
from core.families import DEFAULT_FAMILY, ModelFamily
from core.features import FeatureParams, build_features


@lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


def thread_limit(n_threads: int = 1) -> AbstractContextManager[Any]:
    """Context manager limiting OpenMP/BLAS threads of the calling thread (cheap: ~60 µs).

    The limit is per thread (OpenMP's is a per-thread setting), so wrap each scoring call rather
    than setting it once per process.
    """
    limiter: AbstractContextManager[Any] = _controller().limit(limits=n_threads)
    return limiter


class HGBParams(BaseModel):
    """HistGradientBoostingClassifier hyper-parameters (the default family)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["hgb"] = "hgb"
    max_iter: int = Field(
        600, ge=1, description="Most boosting iterations (trees); early stopping picks fewer."
    )
    learning_rate: float = Field(0.03, gt=0, le=1)
    max_leaf_nodes: int = Field(15, ge=2)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(20, ge=1)
    l2_regularization: float = Field(1.0, ge=0)
    early_stopping: bool = Field(
        True,
        description="Stop when the validation log-loss has not improved for n_iter_no_change "
        "iterations (the validation split; without one, max_iter trees are fitted).",
    )
    n_iter_no_change: int = Field(20, ge=1, description="Patience of early stopping (iterations).")


class RFParams(BaseModel):
    """RandomForestClassifier hyper-parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["rf"] = "rf"
    n_estimators: int = Field(300, ge=1)
    max_depth: int | None = Field(None, ge=1)
    min_samples_leaf: int = Field(1, ge=1)
    max_features: float | Literal["sqrt", "log2"] = "sqrt"
    class_weight: Literal["balanced", "balanced_subsample"] | None = None


class LogRegParams(BaseModel):
    """LogisticRegression hyper-parameters (after standard scaling)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["logreg"] = "logreg"
    C: float = Field(1.0, gt=0, description="Inverse L2 regularisation strength.")
    max_iter: int = Field(1000, ge=1)
    class_weight: Literal["balanced"] | None = None


ModelParams = Annotated[HGBParams | RFParams | LogRegParams, Field(discriminator="kind")]
DEFAULT_PARAMS: dict[str, type[HGBParams] | type[RFParams] | type[LogRegParams]] = {
    "hgb": HGBParams,
    "rf": RFParams,
    "logreg": LogRegParams,
}


class TrainConfig(BaseModel):
    """Everything that defines one training: family, hyper-parameters, features, split, seeds.

    ``params`` defaults to the family's defaults; giving params of another family is an error.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: ModelFamily = DEFAULT_FAMILY
    params: ModelParams = Field(default_factory=HGBParams)
    features: FeatureParams = Field(default_factory=FeatureParams)
    split: SplitParams = Field(default_factory=SplitParams)
    seed: int = Field(42, description="random_state of the model.")
    cv_folds: int = Field(5, ge=0, description="Folds of the reported CV F1 (0 = skip, else >= 2).")
    n_threads: int = Field(1, ge=1, description="OpenMP/BLAS threads while fitting.")

    @model_validator(mode="before")
    @classmethod
    def _default_params(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("params") is None:
            family = data.get("family", DEFAULT_FAMILY)
            if family in DEFAULT_PARAMS:
                return {**data, "params": DEFAULT_PARAMS[family]()}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.params.kind != self.family:
            raise ValueError(f"params of family {self.params.kind!r} given for {self.family!r}")
        if self.cv_folds == 1:
            raise ValueError("cv_folds must be 0 (skip) or at least 2")
        return self


class CurvePoint(NamedTuple):
    """One point of the training curve (log-loss on the train and validation parts)."""

    step: int
    train_loss: float
    valid_loss: float


def _estimator(config: TrainConfig) -> Any:
    # Category codes (state, area code when enabled) stay plain numbers: declaring them categorical
    # makes HGB wrap its input in an internal ColumnTransformer, which the fast path cannot use.
    params = config.params
    if isinstance(params, HGBParams):
        return HistGradientBoostingClassifier(
            max_iter=params.max_iter,
            learning_rate=params.learning_rate,
            max_leaf_nodes=params.max_leaf_nodes,
            max_depth=params.max_depth,
            min_samples_leaf=params.min_samples_leaf,
            l2_regularization=params.l2_regularization,
            early_stopping=params.early_stopping,
            n_iter_no_change=params.n_iter_no_change,
            random_state=config.seed,
        )
    if isinstance(params, RFParams):
        return RandomForestClassifier(
            n_estimators=params.n_estimators,
            max_depth=params.max_depth,
            min_samples_leaf=params.min_samples_leaf,
            max_features=params.max_features,
            class_weight=params.class_weight,
            n_jobs=config.n_threads,
            random_state=config.seed,
        )
    return LogisticRegression(
        C=params.C, max_iter=params.max_iter, class_weight=params.class_weight
    )


def build_pipeline(config: TrainConfig) -> Pipeline:
    """The unfitted pipeline: ``features`` → (``scale`` for logreg) → ``model``.

    Args:
        config: the training configuration.

    Returns:
        An unfitted sklearn :class:`~sklearn.pipeline.Pipeline`.
    """
    features = build_features(config.features)
    steps: list[tuple[str, Any]] = [("features", features)]
    if config.family == "logreg":
        steps.append(("scale", StandardScaler()))
    steps.append(("model", _estimator(config)))
    return Pipeline(steps)


def fit_pipeline(
    config: TrainConfig,
    x: pd.DataFrame | np.ndarray,
    y: np.ndarray,
    valid: tuple[pd.DataFrame | np.ndarray, np.ndarray] | None = None,
) -> Pipeline:
    """Build and fit the pipeline on raw features.

    With ``valid`` rows and an HGB configured for early stopping, boosting stops when the log-loss
    on those rows (through the fitted feature steps) has not improved for ``n_iter_no_change``
    iterations (scikit-learn's ``X_val``/``y_val``); the caller passes its validation split, never
    the holdout. Without ``valid``, HGB fits ``max_iter`` trees (no internal split is carved).

    Args:
        config: the training configuration.
        x: raw table (19 canonical columns) or the encoded ``(n, 19)`` array.
        y: 0/1 labels.
        valid: raw features and 0/1 labels of the validation split, for early stopping.

    Returns:
        The fitted pipeline (a new object; ``x``, ``y`` and ``valid`` are not modified).
    """
    pipeline = build_pipeline(config)
    model = pipeline.steps[-1][1]
    stops_early = isinstance(model, HistGradientBoostingClassifier) and model.early_stopping
    with thread_limit(config.n_threads):
        if not stops_early or valid is None:
            if stops_early:
                model.set_params(early_stopping=False)
            pipeline.fit(x, y)
            return pipeline
        prep = pipeline[:-1]  # the same step objects: fitting them fits the pipeline
        features = prep.fit_transform(x, y)
        model.fit(features, y, X_val=prep.transform(valid[0]), y_val=np.asarray(valid[1]))
    return pipeline


def _losses(y: np.ndarray, stages: Any) -> list[float]:
    return [float(log_loss(y, proba[:, 1], labels=[0, 1])) for proba in stages]


def _pick(n: int, max_points: int) -> list[int]:
    """Up to ``max_points`` evenly spread 1-based step numbers, always including the last."""
    steps = np.unique(np.linspace(1, n, num=min(n, max_points)).round().astype(int))
    return [int(s) for s in steps]


def training_curve(
    pipeline: Pipeline,
    x_train: pd.DataFrame | np.ndarray,
    y_train: np.ndarray,
    x_valid: pd.DataFrame | np.ndarray,
    y_valid: np.ndarray,
    max_points: int = 50,
) -> list[CurvePoint]:
    """Train and validation log-loss along the fitted model's stages.

    Steps are boosting iterations (hgb), number of trees averaged (rf) or a single point at the
    solver's iteration count (logreg).

    Args:
        pipeline: a fitted pipeline from :func:`fit_pipeline`.
        x_train: raw training features.
        y_train: training labels (0/1).
        x_valid: raw validation features.
        y_valid: validation labels (0/1).
        max_points: at most this many points (evenly spread, last stage included).

    Returns:
        The curve, ordered by step.
    """
    with thread_limit(1):
        return _curve(pipeline, x_train, y_train, x_valid, y_valid, max_points)


def _curve(
    pipeline: Pipeline,
    x_train: pd.DataFrame | np.ndarray,
    y_train: np.ndarray,
    x_valid: pd.DataFrame | np.ndarray,
    y_valid: np.ndarray,
    max_points: int,
) -> list[CurvePoint]:
    model = pipeline[-1]
    prep = pipeline[:-1]
    f_train, f_valid = prep.transform(x_train), prep.transform(x_valid)
    if isinstance(model, HistGradientBoostingClassifier):
        keep = set(_pick(model.n_iter_, max_points))
        train = [p for i, p in enumerate(model.staged_predict_proba(f_train), 1) if i in keep]
        valid = [p for i, p in enumerate(model.staged_predict_proba(f_valid), 1) if i in keep]
        steps = sorted(keep)
    elif isinstance(model, RandomForestClassifier):
        steps = _pick(len(model.estimators_), max_points)
        train, valid = [], []
        for data, out in ((f_train, train), (f_valid, valid)):
            per_tree = np.stack([tree.predict_proba(data) for tree in model.estimators_])
            cumulative = np.cumsum(per_tree, axis=0)
            out.extend(cumulative[s - 1] / s for s in steps)
    else:
        steps = [int(np.max(model.n_iter_))]
        train, valid = [model.predict_proba(f_train)], [model.predict_proba(f_valid)]
    return [
        CurvePoint(step, tr, va)
        for step, tr, va in zip(steps, _losses(y_train, train), _losses(y_valid, valid))
    ]
