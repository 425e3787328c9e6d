"""Evaluation figures logged with every training run (matplotlib, no global pyplot state).

Each function returns a :class:`matplotlib.figure.Figure` built with the Agg canvas, so figures are
safe to draw in a background thread (the API's retrain job) and never open a window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.calibration import CalibrationDisplay
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    RocCurveDisplay,
    classification_report,
)

FIGSIZE = (5.0, 4.0)
DPI = 80


def _figure(left: float = 0.14) -> tuple[Figure, Any]:
    # Fixed margins: constrained layout costs more than drawing the figure itself.
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left, right=0.96, bottom=0.13, top=0.9)
    return fig, fig.add_subplot()


def confusion_matrix_figure(y_true: np.ndarray, labels: np.ndarray) -> Figure:
    """Confusion matrix of the churn labels at the chosen threshold."""
    fig, ax = _figure()
    ConfusionMatrixDisplay.from_predictions(
        y_true, labels, labels=[0, 1], display_labels=["stay", "churn"], ax=ax, colorbar=False
    )
    ax.set_title("Confusion matrix (holdout)")
    return fig


def roc_figure(y_true: np.ndarray, proba: np.ndarray) -> Figure:
    """ROC curve of the churn probability."""
    fig, ax = _figure()
    RocCurveDisplay.from_predictions(y_true, proba, ax=ax, name="churn", plot_chance_level=True)
    ax.set_title("ROC curve (holdout)")
    return fig


def pr_figure(y_true: np.ndarray, proba: np.ndarray) -> Figure:
    """Precision-recall curve of the churn probability."""
    fig, ax = _figure()
    PrecisionRecallDisplay.from_predictions(
        y_true, proba, ax=ax, name="churn", plot_chance_level=True
    )
    ax.set_title("Precision-recall curve (holdout)")
    return fig


def calibration_figure(y_true: np.ndarray, proba: np.ndarray) -> Figure:
    """Reliability diagram: observed churn rate against predicted probability."""
    fig, ax = _figure()
    CalibrationDisplay.from_predictions(y_true, proba, n_bins=10, strategy="quantile", ax=ax)
    ax.set_title("Calibration (holdout)")
    return fig


def feature_importance(
    model: Any, x: pd.DataFrame, y: np.ndarray, *, repeats: int = 2, seed: int = 42
) -> dict[str, float]:
    """Permutation importance of each raw column (mean drop of ROC-AUC), model-agnostic.

    Args:
        model: a fitted classifier with ``predict_proba`` taking the raw columns.
        x: holdout features.
        y: holdout labels (0/1).
        repeats: shuffles per column.
        seed: random state of the shuffles.

    Returns:
        Column name to importance, most important first.
    """
    result = permutation_importance(
        model, x, y, scoring="roc_auc", n_repeats=repeats, random_state=seed, n_jobs=1
    )
    pairs = zip(x.columns, result.importances_mean, strict=True)
    return dict(sorted(((str(k), float(v)) for k, v in pairs), key=lambda kv: -kv[1]))


def importance_figure(importances: dict[str, float], top: int = 15) -> Figure:
    """Horizontal bar chart of the ``top`` permutation importances."""
    fig, ax = _figure(left=0.42)
    items = list(importances.items())[:top][::-1]
    ax.barh([k for k, _ in items], [v for _, v in items], color="#3b75af")
    ax.set_xlabel("mean ROC-AUC drop when shuffled")
    ax.set_title("Permutation feature importance")
    ax.tick_params(axis="y", labelsize=7)
    return fig


def curve_figure(steps: Sequence[int], train: Sequence[float], valid: Sequence[float]) -> Figure:
    """Training curve: train and validation loss per step."""
    fig, ax = _figure()
    ax.plot(steps, train, label="train loss")
    ax.plot(steps, valid, label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("log loss")
    ax.set_title("Training curve")
    ax.legend()
    return fig


def report_dict(y_true: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """sklearn's classification report as a JSON-ready dict (classes ``stay`` / ``churn``)."""
    report: dict[str, Any] = classification_report(
        y_true, labels, labels=[0, 1], target_names=["stay", "churn"], output_dict=True,
        zero_division=0,
    )  # fmt: skip
    return report
