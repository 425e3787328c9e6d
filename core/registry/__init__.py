"""MLflow tracking and model registry: the only package of churnops that imports ``mlflow``.

One module per job:

* :mod:`~core.registry.client` — where the store is (``configure``: opened once per process under a
  lock), the errors, the aliases ``champion``/``challenger``;
* :mod:`~core.registry.tracking` — one run per training or search trial, and its registration;
* :mod:`~core.registry.gate` — the promotion gate's rules as pure functions: the rows it compares
  on (neither model trained on them) and its decision from both models' scores there;
* :mod:`~core.registry.versions` — the gate that moves ``champion``, manual promotion and
  rollback, the list of versions with their records;
* :mod:`~core.registry.champion` — the champion as served, with a local copy for degraded serving;
* :mod:`~core.registry.artifacts` — a version's training curve and figures, for the API.
"""

from core.registry.artifacts import PLOT_TITLES, list_plots, read_plot, training_curve
from core.registry.champion import LoadedModel, champion_version, load_champion
from core.registry.client import (
    CHALLENGER,
    CHAMPION,
    ChampionUnavailable,
    RegistryError,
    TrackingStoreBroken,
    TrackingUnavailable,
    configure,
)
from core.registry.gate import (
    ComparisonRows,
    GateDecision,
    GatePolicy,
    decide,
    fair_holdout,
)
from core.registry.tracking import (
    TrainingRecord,
    log_trial,
    log_training,
    register,
    run_metrics,
    run_params,
    search_run,
    tag_active_run,
)
from core.registry.versions import VersionInfo, gate, list_versions, promote, rollback

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "PLOT_TITLES",
    "ChampionUnavailable",
    "ComparisonRows",
    "GateDecision",
    "GatePolicy",
    "LoadedModel",
    "RegistryError",
    "TrackingStoreBroken",
    "TrackingUnavailable",
    "TrainingRecord",
    "VersionInfo",
    "champion_version",
    "configure",
    "decide",
    "fair_holdout",
    "gate",
    "list_plots",
    "list_versions",
    "load_champion",
    "log_trial",
    "log_training",
    "promote",
    "read_plot",
    "register",
    "rollback",
    "run_metrics",
    "run_params",
    "search_run",
    "tag_active_run",
    "training_curve",
]
