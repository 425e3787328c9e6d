"""The champion as a BentoML service, with BentoML's documented defaults but the worker count
(``BENCH_WORKERS``): ``bentoml serve bentoml_service:Churn``; ``POST /predict`` with
``{"customer": {...}}``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

# bentoml is installed in the bench venv only
import bentoml  # type: ignore[import-not-found]  # pylint: disable=import-error

from core.persist import load_bundle
from core.predict import Predictor


@bentoml.service(workers=int(os.environ.get("BENCH_WORKERS", "2")))
class Churn:
    """One customer in, its churn probability and label out."""

    def __init__(self) -> None:
        self.predictor = Predictor(load_bundle(Path(os.environ["CHURN_BUNDLE"])))

    @bentoml.api  # type: ignore[misc]
    def predict(self, customer: dict[str, Any]) -> dict[str, Any]:
        """Score one customer."""
        return self.predictor.predict_records([customer])[0].model_dump()
