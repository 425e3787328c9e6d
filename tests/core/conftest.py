"""Fixtures shared by the tests of ``core``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.persist import mark_latest, save_bundle
from core.pipelines import TrainedModel
from core.settings import Settings


@pytest.fixture(scope="session")
def saved_model(trained_model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's trained model saved once (skops serialises it in about half a second; a copy
    of the files takes milliseconds). Read-only: tests get a copy (``trained_var``)."""
    return save_bundle(trained_model.bundle, tmp_path_factory.mktemp("saved-model") / "bundle")


@pytest.fixture(name="trained_var")
def fixture_trained_var(settings: Settings, saved_model: Path) -> Settings:
    """The session's trained model saved as the latest bundle of the test's VAR_DIR."""
    mark_latest(shutil.copytree(saved_model, settings.var_dir / "models" / "session-hgb"))
    return settings
