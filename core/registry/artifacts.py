"""What the API shows of a version's run (training curve, figures): the API never imports mlflow."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from core.registry.client import RegistryError, configure
from core.settings import Settings

PLOT_TITLES: dict[str, str] = {
    "confusion_matrix": "Confusion matrix (holdout)",
    "roc_curve": "ROC curve (holdout)",
    "pr_curve": "Precision-recall curve (holdout)",
    "calibration": "Calibration (holdout)",
    "feature_importance": "Permutation feature importance",
    "training_curve": "Training curve",
}


def _run_of(client: MlflowClient, name: str, version: str) -> str:
    try:
        run_id = client.get_model_version(name, str(version)).run_id
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc
    if not run_id:
        raise RegistryError(f"{name} v{version} has no run")
    return str(run_id)


def training_curve(settings: Settings, version: str) -> list[dict[str, float]]:
    """The version's training curve: ``[{"step", "train_loss", "valid_loss"}]`` by step.

    Raises:
        RegistryError: for an unknown version.
    """
    client = configure(settings)
    run_id = _run_of(client, settings.model_name, version)
    points: dict[int, dict[str, float]] = {}
    for key in ("train_loss", "valid_loss"):
        for metric in client.get_metric_history(run_id, key):
            points.setdefault(int(metric.step), {"step": float(metric.step)})[key] = metric.value
    return [points[step] for step in sorted(points)]


def list_plots(settings: Settings, version: str) -> list[dict[str, str]]:
    """The version's PNG figures: ``[{"name", "title"}]``.

    Raises:
        RegistryError: for an unknown version.
    """
    client = configure(settings)
    run_id = _run_of(client, settings.model_name, version)
    found = [Path(a.path).stem for a in client.list_artifacts(run_id, "plots")]
    return [{"name": n, "title": PLOT_TITLES.get(n, n)} for n in sorted(found)]


def read_plot(settings: Settings, version: str, name: str) -> bytes:
    """The PNG bytes of one figure of the version.

    Raises:
        RegistryError: for an unknown version or figure.
    """
    if name not in PLOT_TITLES:
        raise RegistryError(f"unknown figure {name!r}")
    client = configure(settings)
    run_id = _run_of(client, settings.model_name, version)
    with tempfile.TemporaryDirectory(prefix="churnops-plot-") as tmp:
        try:
            path = client.download_artifacts(run_id, f"plots/{name}.png", tmp)
        except (MlflowException, OSError) as exc:
            raise RegistryError(f"v{version} has no figure {name!r}") from exc
        return Path(path).read_bytes()
