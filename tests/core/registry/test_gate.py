"""The promotion gate's rules alone (core.registry.gate): pure functions, no MLflow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.evaluate import QUALITY_THRESHOLDS
from core.fingerprints import fingerprint_set
from core.labelled import Quality, SampleRule, labelled_quality
from core.registry import ComparisonRows, GatePolicy, decide, fair_holdout
from tests.factories import dataset

POLICY = GatePolicy(metric="f1", margin=0.002)


def _quality(tp: int, fn: int, fp: int, tn: int) -> Quality:
    """A model's quality on rows where it catches ``tp`` of ``tp + fn`` churners and raises
    ``fp`` false alarms among ``fp + tn`` customers who stay (threshold 0.5)."""
    y = np.array([1] * (tp + fn) + [0] * (fp + tn))
    p = np.array([0.9] * tp + [0.2] * fn + [0.8] * fp + [0.1] * tn)
    return labelled_quality(y, p, 0.5)


def _rows(quality: Quality, excluded: int = 0) -> ComparisonRows:
    return ComparisonRows(
        holdout_rows=quality.n + excluded,
        seen_by_champion=excluded,
        seen_by_challenger=0,
        compared_rows=quality.n,
        churners=quality.churners,
    )


GOOD = _quality(130, 11, 10, 849)  # the bundled data's holdout size: F1 0.925
OK = _quality(126, 15, 12, 847)  # same rows, a few more mistakes: F1 0.903
SMALL_GOOD = _quality(65, 12, 6, 451)  # BigML-80's holdout size: F1 0.878, within reach of 0.92
BAD = _quality(60, 81, 20, 839)  # F1 0.54: clearly below the floor


def test_no_champion_promotes_a_challenger_above_the_floors() -> None:
    decision = decide("3", GOOD, None, None, _rows(GOOD), POLICY)
    assert decision.promoted and decision.verdict == "promoted"
    assert "no champion" in decision.reason and "on 1000 holdout rows" in decision.reason
    assert decision.champion_score is None and decision.failed_floors == []
    low, high = decision.challenger_interval or (None, None)
    assert low is not None and high is not None and GOOD.f1.value is not None
    assert low < GOOD.f1.value < high


def test_a_floor_is_failed_only_when_the_interval_shows_it() -> None:
    """F1 0.878 on 534 rows is below the 0.92 floor by a distance its interval covers: not
    failed; F1 0.54 on 1,000 rows is shown to be below it: rejected."""
    assert SMALL_GOOD.f1.value is not None and SMALL_GOOD.f1.high is not None
    assert SMALL_GOOD.f1.value < QUALITY_THRESHOLDS.min_f1 <= SMALL_GOOD.f1.high
    small = decide("3", SMALL_GOOD, None, None, _rows(SMALL_GOOD), POLICY)
    assert small.promoted and small.failed_floors == []

    bad = decide("3", BAD, None, None, _rows(BAD), POLICY)
    assert not bad.promoted and bad.verdict == "rejected"
    assert "quality floors" in bad.reason
    assert [f.split()[0] for f in bad.failed_floors] == ["f1", "brier"]
    assert bad.failed_floors[0].startswith("f1 0.5430 (interval 0.46")
    bounds = {
        n: (BAD.figure(n).value, BAD.figure(n).low, BAD.figure(n).high)
        for n in ("f1", "roc_auc", "brier")
    }
    assert bad.failed_floors == QUALITY_THRESHOLDS.shown_failures(bounds)


@pytest.mark.parametrize(
    ("quality", "why"),
    [
        (_quality(18, 3, 2, 94), "21 churners and 96 non-churners; at least 30 of each"),
        (_quality(25, 15, 15, 25), "interval of roc_auc is"),
    ],
    ids=["few-churners", "wide-interval"],
)
def test_too_few_rows_to_judge_says_so(quality: Quality, why: str) -> None:
    """Too few churners, or a ROC-AUC interval wider than 0.1: not_enough_rows, both scores kept
    for the record, the champion stays."""
    rows = _rows(quality, excluded=417)
    decision = decide("4", quality, quality, "2", rows, POLICY)
    assert not decision.promoted and decision.verdict == "not_enough_rows"
    assert why in decision.reason and "417 the champion was trained on left out" in decision.reason
    assert f"(f1 there: challenger {quality.f1.value:.4f}, champion v2 " in decision.reason
    assert decision.challenger_score == pytest.approx(quality.f1.value)
    assert decision.champion_score == pytest.approx(quality.f1.value)
    assert decision.rows == rows and decision.rows.excluded_rows == 417


def test_the_sample_rule_is_the_policys() -> None:
    """A looser rule (from Settings) judges what the default one does not."""
    few = _quality(18, 3, 2, 94)
    loose = GatePolicy(sample=SampleRule(min_class_rows=10, max_interval_width=0.3))
    assert decide("4", few, None, None, _rows(few), loose).verdict != "not_enough_rows"


@pytest.mark.parametrize(
    ("challenger", "champion", "margin", "promoted"),
    [(GOOD, OK, 0.002, True), (OK, GOOD, 0.002, False), (GOOD, GOOD, 0.0, True),
     (GOOD, GOOD, 0.01, False)],
    ids=["better", "worse", "tie-no-margin", "tie-margin"],
)  # fmt: skip
def test_the_challenger_must_lead_by_the_margin(
    challenger: Quality, champion: Quality, margin: float, promoted: bool
) -> None:
    policy = GatePolicy(metric="f1", margin=margin)
    decision = decide("4", challenger, champion, "2", _rows(challenger), policy)
    assert decision.promoted is promoted
    assert decision.verdict == ("promoted" if promoted else "rejected")
    assert decision.champion_version == "2" and decision.margin == margin
    assert decision.challenger_score == pytest.approx(challenger.f1.value)
    assert decision.champion_score == pytest.approx(champion.f1.value)
    assert ("beats champion v2" in decision.reason) is promoted


def test_the_compared_metric_is_the_one_asked() -> None:
    policy = GatePolicy(metric="roc_auc", margin=0.0)
    decision = decide("4", GOOD, OK, "2", _rows(GOOD), policy)
    assert decision.metric == "roc_auc"
    assert decision.challenger_score == pytest.approx(GOOD.roc_auc.value)
    assert decision.champion_interval == (OK.roc_auc.low, OK.roc_auc.high)


def test_fair_holdout_leaves_out_rows_either_model_saw() -> None:
    """Rows the champion or the challenger was trained on are left out, counted apart; the
    inputs are untouched."""
    table = dataset().head(300).reset_index(drop=True)
    x = table.drop(columns="churn")
    y = (table["churn"] == "yes").to_numpy().astype(int)
    snapshot = x.copy()
    champion_seen = fingerprint_set(x.iloc[:100])
    challenger_seen = fingerprint_set(x.iloc[80:120])
    fair = fair_holdout(x, y, challenger_seen, champion_seen)
    assert x.equals(snapshot)
    assert list(fair.x.index) == list(range(120, 300))
    assert np.array_equal(fair.y, y[120:])
    rows = fair.rows
    assert (rows.holdout_rows, rows.seen_by_champion, rows.seen_by_challenger) == (300, 100, 40)
    assert (rows.compared_rows, rows.excluded_rows) == (180, 120)
    assert rows.churners == int(y[120:].sum()) and rows.champion_fingerprinted

    unknown = fair_holdout(x, y, challenger_seen, None)  # a champion that keeps no fingerprints
    assert unknown.rows.compared_rows == 260 and not unknown.rows.champion_fingerprinted
    decision = decide("4", GOOD, GOOD, "2", unknown.rows, POLICY)
    assert "keeps no training-row fingerprints" in decision.reason


def test_fair_holdout_of_an_empty_frame() -> None:
    x = pd.DataFrame(columns=list(dataset().columns[:-1]))
    fair = fair_holdout(x, np.empty(0, int), None, np.empty(0, np.uint64))
    assert fair.rows.compared_rows == 0 and fair.x.empty
