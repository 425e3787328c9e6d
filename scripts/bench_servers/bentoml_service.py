"""The champion as a BentoML service, with BentoML's documented defaults but the worker count
(``BENCH_WORKERS``): ``bentoml serve bentoml_service:Churn``; ``POST /predict`` with
``{"customer": {...}}``."""

from __future__ import annotations

import os
from typing import Any

# bentoml is installed in the bench venv only
import bentoml  # type: ignore[import-not-found]  # pylint: disable=import-error

from scripts.bench_servers import churn_scorer


@bentoml.service(workers=int(os.environ.get("BENCH_WORKERS", "2")))
class Churn:
    """One customer in, its churn probability and label out."""

    def __init__(self) -> None:
        self.score = churn_scorer()

    @bentoml.api  # type: ignore[misc]
    def predict(self, customer: dict[str, Any]) -> dict[str, Any]:
        """Score one customer."""
        return self.score(customer)
