"""core.persist: a bundle keeps its training rows' fingerprints beside the model (no pickle)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from core import fingerprints
from core.persist import BUNDLE_FILE, MODEL_FILE, load_bundle, save_bundle
from core.pipelines import TrainedModel


def test_fingerprints_round_trip_with_the_bundle(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    """fit_and_evaluate keeps the train + validation rows; save/load gives them back."""
    bundle = trained_model.bundle
    split = trained_model.split
    assert bundle.meta.fingerprint_format == fingerprints.FORMAT
    assert len(bundle.fingerprints) == len(split.train) + len(split.valid)
    assert not fingerprints.seen_mask(split.test, bundle.fingerprints).any()
    directory = save_bundle(bundle, tmp_path / "m")
    assert sorted(p.name for p in directory.iterdir()) == [
        BUNDLE_FILE,
        fingerprints.FILE,
        MODEL_FILE,
    ]
    loaded = load_bundle(directory)
    assert loaded.seen_rows is not None and np.array_equal(loaded.seen_rows, bundle.fingerprints)


def test_a_bundle_without_fingerprints_says_so(trained_model: TrainedModel, tmp_path: Path) -> None:
    """Bundles saved before fingerprints were kept (no format, no file) and bundles whose file
    was lost load with seen_rows None: nothing is assumed unseen."""
    bundle = trained_model.bundle
    older = replace(bundle, meta=bundle.meta.model_copy(update={"fingerprint_format": ""}))
    directory = save_bundle(older, tmp_path / "old")
    assert not (directory / fingerprints.FILE).exists()
    assert load_bundle(directory).seen_rows is None
    lost = save_bundle(bundle, tmp_path / "lost")
    (lost / fingerprints.FILE).unlink()
    assert load_bundle(lost).seen_rows is None
    document = json.loads((lost / BUNDLE_FILE).read_text(encoding="utf-8"))
    assert document["meta"]["fingerprint_format"] == fingerprints.FORMAT
    other = replace(bundle, meta=bundle.meta.model_copy(update={"fingerprint_format": "v0"}))
    assert other.seen_rows is None  # a format this code does not compute is never compared
