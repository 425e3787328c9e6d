"""Fixtures shared by the tests of ``core``."""

from __future__ import annotations

import pytest

from core.persist import mark_latest, save_bundle
from core.pipelines import TrainedModel
from core.settings import Settings


@pytest.fixture(name="trained_var")
def fixture_trained_var(settings: Settings, trained_model: TrainedModel) -> Settings:
    """The session's trained model saved as the latest bundle of the test's VAR_DIR."""
    mark_latest(save_bundle(trained_model.bundle, settings.var_dir / "models" / "session-hgb"))
    return settings
