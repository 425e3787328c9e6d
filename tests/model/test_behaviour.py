"""Behavioural tests of the default model (directional, invariance, minimum functionality)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from core.predict import ServedModel
from core.tables import PROBABILITY
from core.schema import EXAMPLE_CHURNER, EXAMPLE_LOYAL, SPECS, US_STATES, Customer

Change = Callable[[pd.DataFrame], pd.DataFrame]


def _more_service_calls(extra: int) -> Change:
    cap = SPECS["number_customer_service_calls"].maximum or 30

    def change(frame: pd.DataFrame) -> pd.DataFrame:
        calls = (frame["number_customer_service_calls"] + extra).clip(upper=cap)
        return frame.assign(number_customer_service_calls=calls)

    return change


def _add_international_plan(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["international_plan"] == "no"].assign(international_plan="yes")


def _higher_day_charge(extra_usd: float) -> Change:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        rate = (frame["total_day_charge"] / frame["total_day_minutes"]).median()  # USD per minute
        return frame.assign(
            total_day_charge=frame["total_day_charge"] + extra_usd,
            total_day_minutes=frame["total_day_minutes"] + extra_usd / rate,
        )

    return change


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_more_service_calls(1), id="service-calls+1"),
        pytest.param(_more_service_calls(3), id="service-calls+3"),
        pytest.param(_add_international_plan, id="add-international-plan"),
        pytest.param(_higher_day_charge(5.0), id="day-charge+5USD"),
        pytest.param(_higher_day_charge(15.0), id="day-charge+15USD"),
    ],
)
def test_directional_change_never_lowers_churn_on_average(
    served: ServedModel, holdout: tuple[pd.DataFrame, np.ndarray], change: Change
) -> None:
    x_test, _ = holdout
    changed = change(x_test)
    assert len(changed) > 100
    before = served.predict_frame(x_test.loc[changed.index])[PROBABILITY]
    after = served.predict_frame(changed)[PROBABILITY]
    assert (after - before).mean() >= 0.0
    assert not x_test.loc[changed.index].equals(changed)


@pytest.mark.parametrize("state", ["AK", "CA", "NJ", "TX", "WY"])
def test_state_does_not_move_the_probability(
    served: ServedModel, holdout: tuple[pd.DataFrame, np.ndarray], state: str
) -> None:
    x_test, _ = holdout
    assert state in US_STATES
    before = served.predict_frame(x_test)[PROBABILITY]
    after = served.predict_frame(x_test.assign(state=state))[PROBABILITY]
    assert float((after - before).abs().max()) < 0.05


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        pytest.param(EXAMPLE_CHURNER, "yes", id="churner"),
        pytest.param(EXAMPLE_LOYAL, "no", id="loyal"),
    ],
)
def test_documented_examples_are_scored_as_documented(
    served: ServedModel, record: dict[str, object], expected: str
) -> None:
    probability = served.score_one(Customer.model_validate(record).features())
    assert served.label(probability) == expected
    assert (probability >= served.threshold) == (expected == "yes")
