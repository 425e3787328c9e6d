"""Exact compiled inference for a fitted churn pipeline: one customer in ~20 µs instead of ~2 ms.

sklearn pays pandas, input validation and per-tree call overhead on every call (~470 µs for HGB on
one numpy row here, ~2 ms with the DataFrame), which dominates single-row scoring.
:func:`compile_pipeline` turns the *fitted* pipeline into plain numpy operations that compute the
same numbers, on the encoded raw matrix of :func:`core.features.encode_records`:

* feature steps: :class:`core.features.ChurnFeatures` through its own ``transform_array``,
  ``StandardScaler`` as the same two in-place operations sklearn does;
* ``HistGradientBoostingClassifier`` is evaluated QuickScorer-style: every split of every tree is
  tested in one vectorised comparison, the reached leaf of each tree is the lowest bit left after
  AND-ing the bitmasks of the false splits, and the leaf values are summed in sklearn's order;
* ``RandomForestClassifier``/``ExtraTreesClassifier`` are walked level by level across all trees;
* ``LogisticRegression`` is a dot product and a logistic function.

Nothing is approximated: the parity test runs the whole holdout through both paths (same labels,
max |Δp| ≤ 1e-6; in practice 0). Anything it does not know raises :class:`NotCompilable` and
the caller falls back to sklearn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit  # pylint: disable=no-name-in-module  # a C ufunc
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from core.features import ChurnFeatures
from core.persist import ModelBundle
from core.predict import Predictor

LOGGER = logging.getLogger(__name__)
BATCH_FROM = 64

# One step of the compiled feature path: a 2-D float64 matrix in, a 2-D float64 matrix out.
Stage = Callable[[Any], Any]
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


class NotCompilable(ValueError):
    """The pipeline contains a step the compiler does not know; use sklearn instead."""


# ---------------------------------------------------------------------------------------------
# Feature steps (on the encoded raw matrix of core.features)
# ---------------------------------------------------------------------------------------------
def _matrix_step(step: Any) -> Stage:
    """A fitted step as a function of a 2-D ``float64`` matrix, computing what sklearn computes."""
    if step == "passthrough" or step is None:
        return lambda x: x
    if isinstance(step, ChurnFeatures):
        if not hasattr(step, "feature_names_out_"):
            raise NotCompilable("ChurnFeatures is not fitted")
        return step.transform_array
    if isinstance(step, StandardScaler):
        mean = step.mean_ if step.with_mean else None
        scale = step.scale_ if step.with_std else None

        def scaled(x: np.ndarray) -> np.ndarray:
            out = np.array(x, dtype=np.float64)
            if mean is not None:
                out -= mean
            if scale is not None:
                out /= scale
            return out

        return scaled
    raise NotCompilable(f"unsupported step {type(step).__name__}")


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
def _leaves_in_order(nodes: np.ndarray) -> list[int]:
    """Leaf node ids of one HGB tree, left to right."""
    order: list[int] = []
    stack = [0]
    while stack:
        node = stack.pop()
        if nodes["is_leaf"][node]:
            order.append(node)
        else:
            stack.append(int(nodes["right"][node]))
            stack.append(int(nodes["left"][node]))
    return order


def _subtree_leaves(nodes: np.ndarray, start: int) -> list[int]:
    found: list[int] = []
    stack = [start]
    while stack:
        node = stack.pop()
        if nodes["is_leaf"][node]:
            found.append(node)
        else:
            stack.extend((int(nodes["left"][node]), int(nodes["right"][node])))
    return found


class HGBScorer:
    """QuickScorer evaluation of a binary ``HistGradientBoostingClassifier`` (numeric splits)."""

    def __init__(self, clf: HistGradientBoostingClassifier) -> None:
        if getattr(clf, "_preprocessor", None) is not None:
            raise NotCompilable("HGB with native categorical preprocessing")
        if clf.n_trees_per_iteration_ != 1 or len(clf.classes_) != 2:
            raise NotCompilable("HGB scorer handles binary classification only")
        feat: list[int] = []
        thr: list[float] = []
        missing_left: list[bool] = []
        masks: list[np.uint64] = []
        starts: list[int] = []
        leaf_values: list[float] = []
        leaf_offsets: list[int] = []
        for per_iteration in clf._predictors:  # pylint: disable=protected-access
            nodes = per_iteration[0].nodes
            if np.any(nodes["is_categorical"] & ~nodes["is_leaf"]):
                raise NotCompilable("HGB with categorical splits")
            leaves = _leaves_in_order(nodes)
            if len(leaves) > 64:
                raise NotCompilable("an HGB tree has more than 64 leaves")
            rank = {leaf: i for i, leaf in enumerate(leaves)}
            starts.append(len(feat))
            leaf_offsets.append(len(leaf_values))
            leaf_values.extend(float(nodes["value"][leaf]) for leaf in leaves)
            internal = np.flatnonzero(~nodes["is_leaf"].astype(bool))
            if internal.size == 0:  # a lone leaf: a dummy split that never removes it
                feat.append(0)
                thr.append(np.inf)
                missing_left.append(True)
                masks.append(_ALL)
                continue
            for node in internal.tolist():
                mask = _ALL
                for leaf in _subtree_leaves(nodes, int(nodes["left"][node])):
                    mask &= ~np.uint64(1 << rank[leaf])
                feat.append(int(nodes["feature_idx"][node]))
                thr.append(float(nodes["num_threshold"][node]))
                missing_left.append(bool(nodes["missing_go_to_left"][node]))
                masks.append(mask)
        self.feature = np.asarray(feat, dtype=np.intp)
        self.threshold = np.asarray(thr, dtype=np.float64)
        self.missing_left = np.asarray(missing_left, dtype=bool)
        self.mask = np.asarray(masks, dtype=np.uint64)
        self.left_leaves = ~self.mask  # the bits a true (go-left) split keeps
        self.starts = np.asarray(starts, dtype=np.intp)
        self.leaf_values = np.asarray(leaf_values, dtype=np.float64)
        self.leaf_offsets = np.asarray(leaf_offsets, dtype=np.intp)
        self.baseline = float(np.ravel(clf._baseline_prediction)[0])  # pylint: disable=W0212
        self.n_features = int(clf.n_features_in_)

    def _leaf_index(self, bits: np.ndarray) -> np.ndarray:
        """Index of the lowest set bit (the exit leaf): the float exponent of ``bits & -bits``."""
        lowest = bits & -bits  # two's complement on uint64: isolates the lowest set bit
        exponent: np.ndarray = lowest.astype(np.float64).view(np.int64) >> 52
        return exponent - 1023

    def _sum(self, leaf_values: np.ndarray) -> np.ndarray:
        """baseline + tree 1 + tree 2 + ... in that order (sklearn's rounding), per row."""
        buffer = np.empty(leaf_values.shape[:-1] + (leaf_values.shape[-1] + 1,))
        buffer[..., 0] = self.baseline
        buffer[..., 1:] = leaf_values
        return np.cumsum(buffer, axis=-1)[..., -1]

    def _row(self, x: np.ndarray) -> float:
        values = x.take(self.feature)
        left = values <= self.threshold
        if np.isnan(x).any():
            left = np.where(np.isnan(values), self.missing_left, left)
        kept = self.mask | (self.left_leaves * left)
        bits = np.bitwise_and.reduceat(kept, self.starts)
        leaves = self.leaf_values.take(self.leaf_offsets + self._leaf_index(bits))
        return float(self._sum(leaves))

    def proba_one(self, x: np.ndarray) -> float:
        """Churn probability of one model input vector."""
        return float(expit(self._row(x)))

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Churn probabilities of the rows of ``x`` (model input matrix)."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if len(x) == 1:
            return np.asarray([self.proba_one(x[0])], dtype=np.float64)
        values = x.take(self.feature, axis=1)
        left = values <= self.threshold
        missing = np.isnan(values)
        if missing.any():
            left = np.where(missing, self.missing_left, left)
        kept = self.mask | (self.left_leaves * left)
        bits = np.bitwise_and.reduceat(kept, self.starts, axis=1)
        leaves = self.leaf_values[self.leaf_offsets + self._leaf_index(bits)]
        return np.asarray(expit(self._sum(leaves)), dtype=np.float64)


class ForestScorer:
    """Level-by-level evaluation of a binary random forest / extra-trees classifier."""

    def __init__(self, clf: RandomForestClassifier | ExtraTreesClassifier) -> None:
        if len(clf.classes_) != 2 or getattr(clf, "n_outputs_", 1) != 1:
            raise NotCompilable("forest scorer handles binary classification only")
        feats, thrs, lefts, rights, values, roots, mls = [], [], [], [], [], [], []
        depth = 0
        offset = 0
        for tree in clf.estimators_:
            t = tree.tree_
            leaf = t.children_left == -1
            ids = np.arange(t.node_count)
            lefts.append(np.where(leaf, ids, t.children_left) + offset)
            rights.append(np.where(leaf, ids, t.children_right) + offset)
            feats.append(np.where(leaf, 0, t.feature))
            thrs.append(np.where(leaf, np.inf, t.threshold))
            mls.append(np.asarray(getattr(t, "missing_go_to_left", np.zeros(t.node_count)), bool))
            value = t.value[:, 0, :]
            values.append(value / value.sum(axis=1, keepdims=True))
            roots.append(offset)
            depth = max(depth, int(t.max_depth))
            offset += t.node_count
        self.feature = np.concatenate(feats).astype(np.intp)
        self.threshold = np.concatenate(thrs).astype(np.float64)
        self.left = np.concatenate(lefts).astype(np.intp)
        self.right = np.concatenate(rights).astype(np.intp)
        self.missing_left = np.concatenate(mls)
        self.positive = np.concatenate(values)[:, 1]
        self.roots = np.asarray(roots, dtype=np.intp)
        self.depth = depth
        self.n_trees = len(roots)

    def proba_one(self, x: np.ndarray) -> float:
        """Churn probability of one model input vector."""
        return float(self.proba(x[None, :])[0])

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Churn probabilities of the rows of ``x``."""
        x32 = np.atleast_2d(np.asarray(x, dtype=np.float32))  # sklearn trees compare in float32
        node = np.broadcast_to(self.roots, (len(x32), len(self.roots))).copy()
        for _ in range(self.depth):
            value = np.take_along_axis(x32, self.feature[node], axis=-1)
            left = value <= self.threshold[node]
            missing = np.isnan(value)
            if missing.any():
                left = np.where(missing, self.missing_left[node], left)
            node = np.where(left, self.left[node], self.right[node])
        total = np.cumsum(self.positive[node], axis=-1)[..., -1]
        return np.asarray(total / self.n_trees, dtype=np.float64)


class LinearScorer:
    """Binary logistic regression."""

    def __init__(self, clf: LogisticRegression) -> None:
        if len(clf.classes_) != 2:
            raise NotCompilable("linear scorer handles binary classification only")
        self.coef = np.asarray(clf.coef_[0], dtype=np.float64)
        self.intercept = float(clf.intercept_[0])

    def proba_one(self, x: np.ndarray) -> float:
        """Churn probability of one model input vector."""
        return float(self.proba(x[None, :])[0])

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Churn probabilities of the rows of ``x``."""
        return np.asarray(expit(x @ self.coef + self.intercept), dtype=np.float64)


Scorer = HGBScorer | ForestScorer | LinearScorer


def compile_estimator(clf: Any) -> Scorer:
    """The exact numpy scorer of a fitted binary classifier (positive class = ``classes_[1]``)."""
    if isinstance(clf, HistGradientBoostingClassifier):
        return HGBScorer(clf)
    if isinstance(clf, (RandomForestClassifier, ExtraTreesClassifier)):
        return ForestScorer(clf)
    if isinstance(clf, LogisticRegression):
        return LinearScorer(clf)
    raise NotCompilable(f"unsupported model {type(clf).__name__}")


# ---------------------------------------------------------------------------------------------
# The whole pipeline
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompiledPipeline:
    """A fitted pipeline as plain numpy: encoded raw matrix in, churn probabilities out."""

    stages: tuple[Stage, ...]
    scorer: Scorer
    kind: str = "numpy"

    def features(self, raw: np.ndarray) -> np.ndarray:
        """The model's input matrix for an encoded ``(n, 19)`` raw matrix."""
        data = np.asarray(raw, dtype=np.float64)
        for stage in self.stages:
            data = stage(data)
        return np.asarray(data, dtype=np.float64)

    def proba_one(self, raw_row: np.ndarray) -> float:
        """Churn probability of one encoded raw row (``(19,)``): the single-request path."""
        data = raw_row[None, :]
        for stage in self.stages:
            data = stage(data)
        return self.scorer.proba_one(data[0])

    def proba(self, raw: np.ndarray, chunk: int = 256) -> np.ndarray:
        """Churn probabilities of an encoded ``(n, 19)`` raw matrix (rows in chunks)."""
        matrix = self.features(raw)
        if len(matrix) <= chunk:
            return self.scorer.proba(matrix)
        parts = [self.scorer.proba(matrix[i : i + chunk]) for i in range(0, len(matrix), chunk)]
        return np.concatenate(parts)


def compile_pipeline(pipeline: Any) -> CompiledPipeline:
    """Compile a fitted sklearn ``Pipeline`` (feature steps + a binary classifier).

    Args:
        pipeline: the fitted pipeline of :func:`core.train.build_pipeline`.

    Returns:
        The compiled pipeline (input: the encoded raw matrix of ``core.features.encode_records``).

    Raises:
        NotCompilable: when a step or the model is not supported (use sklearn then).
    """
    if not isinstance(pipeline, Pipeline) or not pipeline.steps:
        raise NotCompilable(f"expected a fitted Pipeline, got {type(pipeline).__name__}")
    *features, (_, model) = pipeline.steps
    classes = [int(c) for c in getattr(model, "classes_", [])]
    if classes != [0, 1]:
        raise NotCompilable(f"expected classes [0, 1], got {classes}")
    stages = tuple(_matrix_step(step) for _, step in features)
    return CompiledPipeline(stages=stages, scorer=compile_estimator(model))


class RawScorer:
    """What :class:`core.predict.Predictor` plugs in (``scorer=``): encoded raw matrix in,
    probabilities out; compiled for small inputs, sklearn's Cython (same numbers) for batches of
    ``batch_from`` rows or more, where it is faster.

    Raises:
        NotCompilable: when the pipeline cannot be compiled.
    """

    def __init__(self, pipeline: Any, *, batch_from: int = BATCH_FROM) -> None:
        self.pipeline = pipeline
        self.compiled = compile_pipeline(pipeline)
        self.batch_from = batch_from

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if len(raw) >= self.batch_from:
            return np.asarray(self.pipeline.predict_proba(raw)[:, 1], dtype=np.float64)
        return self.compiled.proba(raw)

    def one(self, raw_row: np.ndarray) -> float:
        """Churn probability of one encoded raw row."""
        return self.compiled.proba_one(raw_row)


def compiled_predictor(bundle: ModelBundle) -> Predictor:
    """A :class:`core.predict.Predictor` on the compiled path, or on sklearn when not compilable
    (``predictor.compiled`` says which: ``"numpy"`` or ``"sklearn"``)."""
    try:
        scorer = RawScorer(bundle.pipeline)
    except NotCompilable as exc:
        LOGGER.warning("model not compiled, serving with sklearn: %s", exc)
        return Predictor(bundle)
    return Predictor(bundle, scorer=scorer, compiled="numpy")
