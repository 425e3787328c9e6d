"""Exact compiled inference for a fitted churn pipeline: one customer in ~20 µs instead of ~2 ms.

sklearn pays pandas, input validation and per-tree call overhead on every call (~470 µs for HGB on
one numpy row here, ~2 ms with the DataFrame), which dominates single-row scoring.
:func:`compile_pipeline` turns the *fitted* pipeline into plain numpy operations that compute the
same numbers, on the encoded raw matrix of :func:`core.features.encode_records`:

* feature steps: :class:`core.features.ChurnFeatures` through its own ``transform_array``,
  ``StandardScaler`` as the same two in-place operations sklearn does;
* ``HistGradientBoostingClassifier`` becomes one ONNX ``TreeEnsembleRegressor`` (double inputs and
  thresholds) run by ONNX Runtime, which walks the trees in compiled code for one row and for
  10,000 alike (skl2onnx 1.20 cannot convert HGB under scikit-learn 1.9, so the graph is built
  here from the fitted trees);
* ``RandomForestClassifier``/``ExtraTreesClassifier`` are walked level by level across all trees;
* ``LogisticRegression`` is a dot product and a logistic function.

The parity test runs the whole holdout through both paths: same labels, max |Δp| ≤ 1e-6 (0 for
the numpy scorers; ~1e-8 for ONNX Runtime, whose tree sums come out as float32). Anything it does
not know raises :class:`NotCompilable`, and :func:`build_scorer` falls back to sklearn (the one
fallback: :class:`SklearnScorer`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
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
from core.train import thread_limit

log = logging.getLogger(__name__)

#: What scores a model: ONNX Runtime, exact numpy, or the sklearn pipeline itself.
CompiledKind = Literal["onnx", "numpy", "sklearn"]
# One step of the compiled feature path: a 2-D float64 matrix in, a 2-D float64 matrix out.
Stage = Callable[[Any], Any]
# ONNX Runtime 1.31 reads models up to IR version 13; onnx 1.23 writes 14 unless told.
ONNX_IR_VERSION = 10
#: Compiled probabilities this close to the threshold are checked with sklearn (see RawScorer).
TIE = 1e-6
#: Inputs from this many rows use ONNX Runtime's thread pool (smaller ones the calling thread).
ONNX_POOL_FROM = 256


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
class HGBScorer:
    """A binary ``HistGradientBoostingClassifier`` run by ONNX Runtime (numeric splits).

    Every tree becomes part of one ``ai.onnx.ml`` ``TreeEnsembleRegressor`` with double inputs and
    double thresholds (the same ``x <= threshold`` tests as sklearn, missing values on each
    split's learnt side) that sums the leaf values onto the baseline; the logistic is applied
    here in float64. ONNX Runtime's compiled tree walker is ~1.8x faster than sklearn's on a
    10,000-row batch and ~10 µs for one row. Its output is float32, so probabilities differ from
    sklearn's by ~1e-8 (the parity test bounds them by 1e-6 and requires the same labels).
    """

    chunk: int | None = None  # one call per batch: ONNX Runtime splits it over its threads
    sklearn_from: int | None = None

    def __init__(self, clf: HistGradientBoostingClassifier, threads: int | None = None) -> None:
        if getattr(clf, "_preprocessor", None) is not None:
            raise NotCompilable("HGB with native categorical preprocessing")
        if clf.n_trees_per_iteration_ != 1 or len(clf.classes_) != 2:
            raise NotCompilable("HGB scorer handles binary classification only")
        predictors = clf._predictors  # pylint: disable=protected-access
        trees = [per_iteration[0].nodes for per_iteration in predictors]
        if any(np.any(nodes["is_categorical"] & ~nodes["is_leaf"]) for nodes in trees):
            raise NotCompilable("HGB with categorical splits")
        baseline = float(np.ravel(clf._baseline_prediction)[0])  # pylint: disable=W0212
        model = _tree_ensemble(trees, baseline, int(clf.n_features_in_))
        data = model.SerializeToString()
        # the same budget as sklearn's OpenMP (`make serve` and the image set it); 0 = all cores
        pool = int(os.environ.get("OMP_NUM_THREADS") or 0) if threads is None else threads
        # Small inputs run on the calling thread alone: ONNX Runtime would otherwise split one
        # row's 300 trees over its pool, and waking pool threads under load is a latency tail.
        self._small = _session(data, threads=1)
        self._large = _session(data, threads=pool)

    def _raw(self, x: np.ndarray) -> np.ndarray:
        session = self._small if len(x) < ONNX_POOL_FROM else self._large
        out = session.run(None, {"X": np.ascontiguousarray(x, dtype=np.float64)})[0]
        return np.asarray(out[:, 0], dtype=np.float64)

    def proba_one(self, x: np.ndarray) -> float:
        """Churn probability of one model input vector."""
        return float(expit(self._raw(x[None, :])[0]))

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Churn probabilities of the rows of ``x`` (model input matrix)."""
        return np.asarray(expit(self._raw(np.atleast_2d(x))), dtype=np.float64)


def _session(model: bytes, threads: int) -> ort.InferenceSession:
    """An ONNX Runtime session on ``threads`` threads that never busy-waits between runs."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # no spinning: idle pool threads would steal the CPU of the requests served meanwhile
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _tree_ensemble(trees: list[np.ndarray], baseline: float, n_features: int) -> onnx.ModelProto:
    """One ``TreeEnsembleRegressor`` summing HGB trees (``nodes`` arrays) onto ``baseline``."""
    ids: dict[str, Any] = {
        name: []
        for name in (
            "nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes",
            "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
            "target_treeids", "target_nodeids", "target_ids",
        )
    }  # fmt: skip
    thresholds: list[float] = []
    weights: list[float] = []
    for tree, nodes in enumerate(trees):
        leaf = nodes["is_leaf"].astype(bool)
        count = len(nodes)
        ids["nodes_treeids"] += [tree] * count
        ids["nodes_nodeids"] += list(range(count))
        ids["nodes_featureids"] += np.where(leaf, 0, nodes["feature_idx"]).tolist()
        ids["nodes_modes"] += ["LEAF" if is_leaf else "BRANCH_LEQ" for is_leaf in leaf]
        ids["nodes_truenodeids"] += np.where(leaf, 0, nodes["left"]).tolist()
        ids["nodes_falsenodeids"] += np.where(leaf, 0, nodes["right"]).tolist()
        ids["nodes_missing_value_tracks_true"] += (
            (nodes["missing_go_to_left"].astype(bool) & ~leaf).astype(int).tolist()
        )
        thresholds += np.where(leaf, 0.0, nodes["num_threshold"]).tolist()
        leaves = np.flatnonzero(leaf)
        ids["target_treeids"] += [tree] * len(leaves)
        ids["target_nodeids"] += leaves.tolist()
        ids["target_ids"] += [0] * len(leaves)
        weights += nodes["value"][leaves].astype(np.float64).tolist()
    node = helper.make_node(
        "TreeEnsembleRegressor",
        ["X"],
        ["Y"],
        domain="ai.onnx.ml",
        n_targets=1,
        aggregate_function="SUM",
        post_transform="NONE",
        base_values_as_tensor=numpy_helper.from_array(np.array([baseline]), "base"),
        nodes_values_as_tensor=numpy_helper.from_array(np.array(thresholds), "thresholds"),
        target_weights_as_tensor=numpy_helper.from_array(np.array(weights), "weights"),
        **ids,
    )
    graph = helper.make_graph(
        [node],
        "churn_hgb",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, [None, n_features])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
    )
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("ai.onnx.ml", 3)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=ONNX_IR_VERSION)


class ForestScorer:
    """Level-by-level evaluation of a binary random forest / extra-trees classifier."""

    chunk: int | None = 256  # keeps the (rows, trees) node matrices small
    sklearn_from: int | None = 64  # sklearn's Cython is faster on bigger batches

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

    chunk: int | None = None
    sklearn_from: int | None = None

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


ModelScorer = HGBScorer | ForestScorer | LinearScorer


def compile_estimator(clf: Any) -> ModelScorer:
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
    """A fitted pipeline compiled: encoded raw matrix in, churn probabilities out."""

    stages: tuple[Stage, ...]
    scorer: ModelScorer

    @property
    def kind(self) -> CompiledKind:
        """``"onnx"`` (ONNX Runtime) or ``"numpy"``."""
        return "onnx" if isinstance(self.scorer, HGBScorer) else "numpy"

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

    def proba(self, raw: np.ndarray) -> np.ndarray:
        """Churn probabilities of an encoded ``(n, 19)`` raw matrix (in the scorer's chunks)."""
        matrix = self.features(raw)
        chunk = self.scorer.chunk
        if chunk is None or len(matrix) <= chunk:
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


def sklearn_proba(pipeline: Any, raw: np.ndarray) -> np.ndarray:
    """Churn probabilities of an encoded raw matrix by the sklearn pipeline itself, on one OpenMP
    thread (on a busy machine HGB's threaded predict is ~30x slower per row)."""
    with thread_limit(1):
        proba = pipeline.predict_proba(raw)
    return np.asarray(proba[:, 1], dtype=np.float64)


class RawScorer:
    """Encoded raw matrix in, churn probabilities out, compiled; except batches of
    ``sklearn_from`` rows or more for scorers that name one (the numpy forest), where sklearn's
    Cython is faster and gives the same numbers.

    With a ``threshold``, rows whose compiled probability is within ``TIE`` of it are scored again
    by sklearn, so a label never depends on the float32 rounding of ONNX Runtime's sums (a
    probability can equal the threshold exactly: the threshold is one of the model's outputs).

    Raises:
        NotCompilable: when the pipeline cannot be compiled.
    """

    def __init__(
        self, pipeline: Any, *, threshold: float | None = None, sklearn_from: int | None = None
    ) -> None:
        self.pipeline = pipeline
        self.compiled = compile_pipeline(pipeline)
        self.threshold = threshold
        self.sklearn_from = sklearn_from or self.compiled.scorer.sklearn_from

    @property
    def kind(self) -> CompiledKind:
        """``"onnx"`` or ``"numpy"``."""
        return self.compiled.kind

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.sklearn_from is not None and len(raw) >= self.sklearn_from:
            return sklearn_proba(self.pipeline, raw)
        proba = self.compiled.proba(raw)
        if self.threshold is not None:
            near = np.flatnonzero(np.abs(proba - self.threshold) <= TIE)
            if near.size:
                proba[near] = sklearn_proba(self.pipeline, raw[near])
        return proba

    def one(self, raw_row: np.ndarray) -> float:
        """Churn probability of one encoded raw row."""
        proba = self.compiled.proba_one(raw_row)
        if self.threshold is not None and abs(proba - self.threshold) <= TIE:
            return float(sklearn_proba(self.pipeline, raw_row[None, :])[0])
        return proba


class SklearnScorer:
    """The pipeline itself behind :class:`RawScorer`'s interface (a pipeline not compilable)."""

    kind: CompiledKind = "sklearn"

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return sklearn_proba(self.pipeline, raw)

    def one(self, raw_row: np.ndarray) -> float:
        """Churn probability of one encoded raw row."""
        return float(sklearn_proba(self.pipeline, raw_row[None, :])[0])


#: What scores a served model: compiled, or sklearn when the pipeline is not compilable.
Scorer = RawScorer | SklearnScorer


def build_scorer(pipeline: Any, threshold: float, version: str = "") -> Scorer:
    """The compiled scorer of a fitted pipeline, or sklearn when it is not compilable (logged;
    ``scorer.kind`` says which: ``"onnx"``, ``"numpy"`` or ``"sklearn"``)."""
    try:
        return RawScorer(pipeline, threshold=threshold)
    except NotCompilable as exc:
        log.warning("model %s not compiled, serving with sklearn: %s", version, exc)
        return SklearnScorer(pipeline)
