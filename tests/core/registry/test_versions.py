"""The promotion gate against a real SQLite MLflow store: a challenger trained on a table that
overlaps the champion's training rows is compared only on rows neither was trained on.

The overlap is the course's: the BigML 80/20 files are rows of the bundled data, so a model
trained on BigML-80 is judged on its holdout, most of which the bundled-data champion was
trained on.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
from sklearn.metrics import f1_score

from core import fingerprints, registry
from core.data import to_xy
from core.pipelines import TrainedModel, fit_and_evaluate, register_candidate
from core.registry import CHAMPION
from core.registry.client import HISTORY_TAG
from core.settings import Settings
from tests import mlflow_factory as factory
from tests.factories import bigml_like, small_config, write_csv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", name="store")
def store_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A module MLflow store whose champion was trained on the bundled data's fixed split."""
    settings = Settings(var_dir=tmp_path_factory.mktemp("gate") / "var", _env_file=None)
    version = registry.register(settings, registry.log_training(settings, factory.record(60)))
    assert registry.gate(settings, version, factory.holdout()).promoted
    yield settings
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module", name="bigml80")
def bigml80_fixture() -> TrainedModel:
    """A challenger trained on the BigML-like 80 % table (its own split; fingerprints kept)."""
    return fit_and_evaluate(bigml_like()[0], small_config("hgb"), data_sha256="bigml-80")


def _champion_seen_index() -> set[int]:
    split = factory.data_split()
    return set(split.train.index) | set(split.valid.index)


def test_the_challenger_is_compared_only_on_rows_neither_model_saw(
    store: Settings, bigml80: TrainedModel, tmp_path: Path
) -> None:
    """Left out: exactly the holdout rows the champion was fitted or tuned on (told here by
    their row number in the bundled file, not by fingerprint). Both scores are the models' F1 on
    the other rows; with about 20 churners left the gate says it cannot judge, and the champion
    stays."""
    client = registry.configure(store)
    champion = str(client.get_model_version_by_alias(store.model_name, CHAMPION).version)
    holdout = bigml80.split.test
    unseen = holdout.loc[[i for i in holdout.index if i not in _champion_seen_index()]]
    assert 300 < len(holdout) - len(unseen) < len(holdout)  # the overlap is real and large

    data = write_csv(bigml_like()[0], tmp_path / "bigml-80.csv")
    result = register_candidate(store, bigml80, data)

    assert result.excluded_rows == len(holdout) - len(unseen)
    assert result.compared_rows == len(unseen)
    x, y = to_xy(unseen)
    assert result.compared_churners == int(y.sum())
    mine = bigml80.bundle
    theirs = factory.record(60).bundle
    assert result.challenger_score == pytest.approx(
        f1_score(y, mine.pipeline.predict_proba(x)[:, 1] >= mine.threshold)
    )
    assert result.champion_score == pytest.approx(
        f1_score(y, theirs.pipeline.predict_proba(x)[:, 1] >= theirs.threshold)
    )
    assert y.sum() < store.gate_min_class_rows
    assert result.verdict == "not_enough_rows" and not result.promoted
    assert f"{len(unseen)} holdout rows neither model was trained on" in str(result.reason)
    assert f"{result.excluded_rows} the champion was trained on left out" in str(result.reason)
    assert str(client.get_model_version_by_alias(store.model_name, CHAMPION).version) == champion

    version = client.get_model_version(store.model_name, str(result.model_version))
    assert version.tags["gate.decision"] == "not_enough_rows"
    assert version.tags["gate.excluded_rows"] == str(result.excluded_rows)
    assert version.tags["gate.compared_rows"] == str(len(unseen))
    run = client.get_run(str(result.run_id))
    assert run.data.metrics["gate_excluded_rows"] == result.excluded_rows


def test_a_looser_sample_rule_compares_on_the_same_rows(
    store: Settings, bigml80: TrainedModel, tmp_path: Path
) -> None:
    """With GATE_MIN_CLASS_ROWS / GATE_MAX_INTERVAL_WIDTH loosened the gate judges, on the same
    unseen rows, and the reason names the comparison."""
    data = write_csv(bigml_like()[0], tmp_path / "bigml-80.csv")
    strict = register_candidate(store, bigml80, data)
    loose = store.model_copy(update={"gate_min_class_rows": 5, "gate_max_interval_width": 0.6})
    decision = registry.gate(loose, str(strict.model_version), bigml80.holdout())
    assert decision.verdict in ("promoted", "rejected")
    assert decision.rows is not None and decision.rows.compared_rows == strict.compared_rows
    assert decision.challenger_score == pytest.approx(strict.challenger_score)
    assert decision.champion_score == pytest.approx(strict.champion_score)
    assert "beat champion v1" in decision.reason or "quality floors" in decision.reason


def test_fingerprints_are_a_run_artifact_and_come_back_with_the_version(
    store: Settings, bigml80: TrainedModel, tmp_path: Path
) -> None:
    """fingerprints.npy (sorted uint64, no pickle) is logged with the run; the served champion
    carries its training rows' fingerprints."""
    data = write_csv(bigml_like()[0], tmp_path / "bigml-80.csv")
    result = register_candidate(store, bigml80, data)
    client = registry.configure(store)
    local = Path(client.download_artifacts(str(result.run_id), fingerprints.FILE, str(tmp_path)))
    kept = fingerprints.load(local)
    split = bigml80.split
    assert len(kept) == len(split.train) + len(split.valid)
    assert np.array_equal(kept, bigml80.bundle.fingerprints)
    assert local.read_bytes()[:6] == b"\x93NUMPY"
    champion = registry.load_champion(store)
    seen = champion.bundle.seen_rows
    assert seen is not None and np.array_equal(seen, factory.record(60).bundle.fingerprints)


def test_champion_changes_from_several_threads_never_interleave(store: Settings) -> None:
    """Promotions racing each other (an admin's promote while a retrain's gate or another
    promote runs: API workers, the CLI) are serialised: every change starts from the champion
    the previous change left. As a chain of (previous → new) champion moves that holds exactly
    when each version is left as often as it is reached, but for the start (left once more)
    and the end (reached once more); and the history a rollback reads ends with the champion.
    Without the lock, two promotions read the same previous champion and one move is lost."""
    client = registry.configure(store)
    name = store.model_name
    versions = [registry.register(store, registry.log_training(store, factory.record(60)))
                for _ in range(2)]  # fmt: skip
    versions.append(str(client.get_model_version_by_alias(name, CHAMPION).version))
    start = versions[-1]
    moves: list[tuple[str | None, str]] = []

    def promote_many(offset: int) -> None:
        for i in range(12):
            target = versions[(i + offset) % len(versions)]
            decision = registry.promote(store, target, f"race {offset}-{i}")
            moves.append((decision.champion_version, decision.version))

    threads = [threading.Thread(target=promote_many, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    end = str(client.get_model_version_by_alias(name, CHAMPION).version)
    balance = Counter(previous for previous, _ in moves)
    balance.subtract(Counter(new for _, new in moves))
    expected = Counter({start: 1}) if start != end else Counter()
    if start != end:
        expected[end] = -1
    assert {v: n for v, n in balance.items() if n} == dict(expected), moves
    history = client.get_registered_model(name).tags[HISTORY_TAG].split(",")
    assert history[-1] == end
