"""The same champion served by the frameworks ML teams pick instead of churnops (``make bench``).

Each runs in its own venv (``var/bench-envs/<name>``) with the project on ``PYTHONPATH``; the model
is the champion's bundle exported by ``scripts/bench.py`` (``CHURN_BUNDLE``), scored by
:func:`churn_scorer`: the same validation (:data:`core.schema.Customer`), compiled scorer and
threshold rule (:class:`core.predict.ServedModel`) as churnops, so the comparison is of the
serving frameworks alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.persist import load_bundle
from core.predict import ServedModel
from core.schema import Customer


def churn_scorer() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Load ``CHURN_BUNDLE`` once; a function from one customer (JSON object) to
    ``{"churn_probability", "label", "model_version"}``.

    Raises:
        pydantic.ValidationError: from the returned function, for an invalid customer.
    """
    model = ServedModel.build(load_bundle(Path(os.environ["CHURN_BUNDLE"])), "bench")

    def score(customer: dict[str, Any]) -> dict[str, Any]:
        probability = model.score_one(Customer.model_validate(customer).features())
        return {
            "churn_probability": probability,
            "label": model.label(probability),
            "model_version": model.version,
        }

    return score
