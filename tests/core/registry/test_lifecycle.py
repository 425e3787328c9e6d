"""Tracking and registry against a real SQLite MLflow store in a temporary directory (no mocks).

One store per module (creating an MLflow SQLite schema takes seconds); the gate scenario runs as
one ordered story, the read-only checks look at the first run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from core import cli as core_cli
from core import registry
from core.registry import CHALLENGER, CHAMPION
from core.settings import Settings, get_settings
from core.tuning import tune
from ops import runner
from tests import mlflow_factory as factory
from tests.net import free_port

pytestmark = pytest.mark.slow


def _settings(var_dir: Path, tracking_uri: str | None = None) -> Settings:
    return Settings(var_dir=var_dir, mlflow_tracking_uri=tracking_uri, _env_file=None)


@pytest.fixture(scope="module", name="store")
def store_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings whose MLflow store, artifacts and champion copy live in a module temp dir."""
    yield _settings(tmp_path_factory.mktemp("mlflow") / "var")
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module", name="first")
def first_fixture(store: Settings) -> tuple[str, str]:
    """The first model: logged, registered and gated (it becomes champion: there was none)."""
    run_id = registry.log_training(store, factory.record(60))
    version = registry.register(store, run_id)
    decision = registry.gate(store, version, factory.holdout())
    assert decision.promoted, decision.reason
    return run_id, version


def _client(settings: Settings) -> MlflowClient:
    return registry.configure(settings)


def test_configure_uses_sqlite_and_artifact_root(store: Settings) -> None:
    """The embedded default: SQLite file and local artifact root, both under var/."""
    client = _client(store)
    assert store.tracking_uri.startswith("sqlite:///")
    assert (store.var_dir / "mlflow.db").is_file()
    experiment = client.get_experiment_by_name(store.mlflow_experiment)
    assert experiment is not None
    assert experiment.artifact_location == store.artifact_root.as_uri()


def test_run_records_params_metrics_curve_inputs_and_tags(
    store: Settings, first: tuple[str, str]
) -> None:
    """Every training run carries the full record the issue asks for."""
    client = _client(store)
    run = client.get_run(first[0])
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["family"] == "hgb"
    assert params["params.max_iter"] == "60" and "params.learning_rate" in params
    assert any(k.startswith("features.") for k in params) and "split.test_size" in params
    for name in ("f1", "precision", "recall", "roc_auc", "pr_auc", "brier", "accuracy", "tp"):
        assert name in metrics
    curve = client.get_metric_history(first[0], "valid_loss")
    assert len(curve) >= 5 and len({m.step for m in curve}) == len(curve)
    assert len(client.get_metric_history(first[0], "train_loss")) == len(curve)
    assert tags["data_sha256"] == factory.data_sha256()
    assert len(tags["git_commit"]) in (40, 7) or tags["git_commit"] == "unknown"
    assert tags["package_version"] and tags["model_family"] == "hgb"
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == "churn.csv" and dataset.digest == factory.data_sha256()[:16]
    assert json.loads(dataset.source)["uri"].endswith("data/raw/churn.csv")
    assert json.loads(dataset.profile)["num_rows"] == len(factory.data_split().train)


def test_run_artifacts_figures_report_bundle_reference_model(
    store: Settings, first: tuple[str, str], tmp_path: Path
) -> None:
    """>= 5 PNG figures, the JSON report, bundle.json, reference.json and the skops model."""
    client = _client(store)
    plots = [a.path for a in client.list_artifacts(first[0], "plots")]
    assert len([p for p in plots if p.endswith(".png")]) >= 5
    top = {a.path for a in client.list_artifacts(first[0])}
    assert {"classification_report.json", "bundle.json", "reference.json"} <= top
    local = Path(client.download_artifacts(first[0], "reference.json", str(tmp_path)))
    reference = json.loads(local.read_text(encoding="utf-8"))
    assert reference["format"] == "churnops.reference/v1" and len(reference["features"]) == 19
    report = Path(client.download_artifacts(first[0], "classification_report.json", str(tmp_path)))
    assert "churn" in json.loads(report.read_text(encoding="utf-8"))
    png = registry.read_plot(store, first[1], "roc_curve")
    assert png.startswith(b"\x89PNG") and len(png) < 300_000
    info = mlflow.models.get_model_info(f"models:/{store.model_name}/{first[1]}")
    assert info.signature is not None and info.saved_input_example_info is not None
    assert info.flavors["sklearn"]["serialization_format"] == "skops"


def test_pyfunc_model_matches_in_memory_pipeline(
    store: Settings, first: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The logged model loaded with mlflow.pyfunc gives the same probabilities (|dp| <= 1e-9)."""
    # MLflow 3.17 refuses to deserialise any sklearn flavour unless allowed: this is our own store.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    registry.configure(store)
    model = mlflow.pyfunc.load_model(f"models:/{store.model_name}/{first[1]}")
    x, _ = factory.holdout()
    logged = np.asarray(model.predict(x))[:, 1]
    expected = factory.record(60).bundle.pipeline.predict_proba(x)[:, 1]
    assert logged.shape == (len(x),)
    assert float(np.max(np.abs(logged - expected))) <= 1e-9


def test_gate_story_promote_and_rollback(store: Settings, first: tuple[str, str]) -> None:
    """Worse and equal models stay challenger; forced promote and rollback are recorded; a
    better model than the champion is promoted."""
    client = _client(store)
    name = store.model_name
    champion = first[1]
    first_tags = client.get_model_version(name, champion).tags
    assert first_tags["gate.decision"] == "promoted"
    assert client.get_run(first[0]).data.tags["gate.decision"] == "promoted"

    worse = registry.register(store, registry.log_training(store, factory.record(5)))
    decision = registry.gate(store, worse, factory.holdout())
    assert not decision.promoted and decision.failed_floors
    assert decision.champion_version == champion and decision.champion_score is not None
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == champion
    assert str(client.get_model_version_by_alias(name, CHALLENGER).version) == worse
    version = client.get_model_version(name, worse)
    assert version.tags["gate.decision"] == "rejected"
    assert "quality floors" in version.tags["gate.reason"]
    assert float(version.tags["gate.champion_score"]) == pytest.approx(decision.champion_score)
    assert version.description.startswith("kept as challenger")
    run = client.get_run(str(version.run_id))
    assert run.data.tags["gate.decision"] == "rejected"
    assert run.data.metrics["gate_champion_score"] == pytest.approx(decision.champion_score)

    same = registry.register(store, registry.log_training(store, factory.record(60)))
    tie = registry.gate(store.model_copy(update={"gate_margin": 0.01}), same, factory.holdout())
    assert not tie.promoted and "does not beat" in tie.reason
    assert tie.challenger_score == pytest.approx(tie.champion_score)

    forced = registry.promote(store, worse, "test: force the weak model")
    assert forced.promoted and forced.champion_version == champion
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == worse
    tags = client.get_model_version(name, worse).tags
    assert tags["promotion.forced"] == "true" and tags["promotion.previous_champion"] == champion
    assert tags["gate.decision"] == "rejected"  # the gate's own record is kept

    better = registry.gate(store, same, factory.holdout())  # same model, now against the weak one
    assert better.promoted and better.champion_version == worse
    assert better.challenger_score >= better.champion_score + store.gate_margin
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == same

    back = registry.rollback(store, "test: undo")
    assert back.version == worse and back.champion_version == same
    assert back.verdict == "rolled_back" and forced.verdict == "promoted"
    assert str(client.get_model_version_by_alias(name, CHAMPION).version) == worse
    assert client.get_model_version(name, same).tags["rollback.demoted"] == "true"
    assert client.get_run(str(client.get_model_version(name, same).run_id)).data.tags[
        "rollback.reason"
    ] == ("test: undo")
    again = registry.rollback(store, "test: undo twice")
    assert again.version == champion
    with pytest.raises(registry.RegistryError, match="no previous champion"):
        registry.rollback(store)
    with pytest.raises(registry.RegistryError, match="no version"):
        registry.promote(store, "999", "nope")


def test_list_versions_matches_the_registry(store: Settings, first: tuple[str, str]) -> None:
    """Newest first, aliases from the registered model, gate record and run metrics included."""
    del first
    client = _client(store)
    aliases = client.get_registered_model(store.model_name).aliases
    listed = registry.list_versions(store)
    assert [v.version for v in listed] == sorted((v.version for v in listed), key=int, reverse=True)
    for info in listed:
        assert info.aliases == sorted(a for a, v in aliases.items() if str(v) == info.version)
        tags = client.get_model_version(store.model_name, info.version).tags
        assert info.gate["decision"] == tags["gate.decision"] and info.metrics["f1"] > 0
        assert not any(k.startswith("system/") for k in info.metrics)


def test_champion_loads_from_local_copy_when_server_is_dead(
    store: Settings, first: tuple[str, str]
) -> None:
    """load_champion refreshes the local copy; with the tracking URI on a dead server it serves
    that copy (skops, our allow-list), degraded with the reason."""
    del first
    loaded = registry.load_champion(store)
    champion = str(_client(store).get_model_version_by_alias(store.model_name, CHAMPION).version)
    assert loaded.version == champion and not loaded.degraded
    assert loaded.metadata["source"] == "registry"
    assert Path(loaded.metadata["reference_path"]).is_file()
    assert not list(store.model_cache_dir.rglob("*.pkl"))

    dead = _settings(store.var_dir, f"http://127.0.0.1:{free_port()}")
    offline = registry.load_champion(dead, timeout=0.5)
    assert offline.degraded and offline.version == champion
    assert "registry unavailable" in offline.reason and offline.metadata["source"] == "cache"
    x, _ = factory.holdout()
    np.testing.assert_array_equal(
        offline.bundle.pipeline.predict_proba(x), loaded.bundle.pipeline.predict_proba(x)
    )
    assert offline.bundle.threshold == loaded.bundle.threshold


def test_no_champion_and_no_copy_is_an_error(tmp_path: Path) -> None:
    """With a dead server and no local copy there is nothing to serve."""
    dead = _settings(tmp_path / "var", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(registry.ChampionUnavailable, match="no local copy"):
        registry.load_champion(dead, timeout=0.5)
    with pytest.raises(registry.TrackingUnavailable, match="unreachable"):
        registry.list_versions(dead)  # fails fast instead of MLflow's minutes of retries


def test_no_champion_yet_reads_as_a_sentence(empty_registry_uri: str, tmp_path: Path) -> None:
    """A fresh store (nothing trained yet) is an expected state, not a crash: the reason the API
    reports on /ready and in its log names no exception class."""
    fresh = _settings(tmp_path / "var", empty_registry_uri)
    with pytest.raises(registry.ChampionUnavailable) as caught:
        registry.load_champion(fresh)
    assert str(caught.value) == (
        f"no champion: {fresh.model_name} has no champion alias yet; no local copy"
    )


def test_curve_and_plots_for_the_api(store: Settings, first: tuple[str, str]) -> None:
    """The API reads a version's curve and figures through the registry (no mlflow import)."""
    points = registry.training_curve(store, first[1])
    assert len(points) >= 5 and [p["step"] for p in points] == sorted(p["step"] for p in points)
    assert set(points[0]) == {"step", "train_loss", "valid_loss"}
    names = {p["name"] for p in registry.list_plots(store, first[1])}
    assert {"confusion_matrix", "roc_curve", "pr_curve", "calibration"} <= names
    assert {"feature_importance", "training_curve"} <= names
    with pytest.raises(registry.RegistryError):
        registry.training_curve(store, "999")
    with pytest.raises(registry.RegistryError, match="unknown figure"):
        registry.read_plot(store, first[1], "../etc/passwd")


def test_tune_nests_trials_and_gates_the_best(store: Settings) -> None:
    """make tune: trials are nested runs of one parent; the best is trained, registered, gated."""
    seen: list[tuple[str, float]] = []
    found = tune(store, trials=2, folds=2, on_progress=lambda s, f: seen.append((s, f)))
    client = _client(store)
    children = client.search_runs(
        [client.get_experiment_by_name(store.mlflow_experiment).experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{found.parent_run_id}'",
    )
    kinds = sorted(r.data.tags.get("kind", "train") for r in children)
    assert kinds == ["train", "trial", "trial"]
    assert len(found.trials) == 2 and found.best.cv_f1_mean == max(
        t.cv_f1_mean for t in found.trials
    )
    parent = client.get_run(found.parent_run_id)
    assert parent.data.tags["model_version"] == found.result.model_version
    assert len(client.get_metric_history(found.parent_run_id, "best_cv_f1")) == 2
    version = client.get_model_version(store.model_name, str(found.result.model_version))
    assert version.tags["gate.decision"] in ("promoted", "rejected")
    assert seen[-1][1] == pytest.approx(1.0) and any("trial 2/2" in s for s, _ in seen)
    assert set(found.summary()) >= {"parent_run_id", "best_params", "model_version", "promoted"}


def test_cli_champion_promote_rollback(
    store: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """churnops promote/rollback/champion: one JSON object per command; errors exit 1."""
    monkeypatch.setenv("VAR_DIR", str(store.var_dir))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    get_settings.cache_clear()
    try:
        assert core_cli.main(["champion"]) == 0
        shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert CHAMPION in shown["champion"]["aliases"] and len(shown["versions"]) >= 4
        assert runner.main(["model-version"]) == 0  # what tags the images: the same version
        assert capsys.readouterr().out.strip() == shown["champion"]["version"]
        assert core_cli.main(["promote", "2", "--reason", "cli test"]) == 0
        promoted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert promoted["version"] == "2" and promoted["reason"] == "forced promotion: cli test"
        assert core_cli.main(["rollback", "--reason", "cli test"]) == 0
        rolled = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert rolled["promoted"] and rolled["verdict"] == "rolled_back"
        assert core_cli.main(["promote", "999"]) == 1
        assert "no version 999" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


def test_a_second_registration_prints_no_banner(
    store: Settings, first: tuple[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    """MLflow prints "Registered model ... already exists. Creating a new version" on every
    registration after the first; a retrain's output (make run's terminal, the watch log) must
    not carry it."""
    del first  # the registered model exists
    capfd.readouterr()
    version = registry.register(store, registry.log_training(store, factory.record(30)))
    captured = capfd.readouterr()
    assert int(version) >= 2
    assert "already exists" not in captured.err + captured.out
