"""The promotion gate's rules, as pure functions: which rows it compares on, and its decision.

No MLflow here. :func:`fair_holdout` keeps the holdout rows that neither the challenger nor the
champion was trained on (recognised by the fingerprints each model keeps, :mod:`core.fingerprints`);
:func:`decide` takes both models' :class:`~core.labelled.Quality` on those rows and returns the
:class:`GateDecision` that :func:`core.registry.versions.gate` records and acts on. In order:

1. **Enough rows?** The rows must satisfy :class:`~core.labelled.SampleRule` (at least
   ``GATE_MIN_CLASS_ROWS`` churners and as many non-churners, a ROC-AUC interval at most
   ``GATE_MAX_INTERVAL_WIDTH`` wide); otherwise the verdict is ``not_enough_rows`` and the
   champion stays.
2. **Floors**: the challenger must not be *shown* below the absolute floors
   (:meth:`core.evaluate.QualityThresholds.shown_failures`: the whole 95 % interval beyond a
   floor); otherwise ``rejected``.
3. **Champion**: with no champion, ``promoted``; else the challenger's ``GATE_METRIC`` must reach
   the champion's on the same rows plus ``GATE_MARGIN``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from core.evaluate import QUALITY_THRESHOLDS, QualityThresholds
from core.fingerprints import seen_mask
from core.labelled import Quality, SampleRule
from core.settings import GateMetric, Settings

Verdict = Literal["promoted", "rejected", "not_enough_rows", "rolled_back"]


class ComparisonRows(BaseModel):
    """Which holdout rows the gate compared the two models on."""

    model_config = ConfigDict(frozen=True)

    holdout_rows: int = Field(description="Rows of the challenger's holdout.")
    seen_by_champion: int = Field(description="Of them, rows the champion was trained on.")
    seen_by_challenger: int = Field(description="Of them, rows the challenger was trained on.")
    compared_rows: int = Field(description="Rows neither model was trained on: the comparison.")
    churners: int = Field(description="Churners among the compared rows.")
    champion_fingerprinted: bool = Field(
        True, description="False when the champion keeps no training-row fingerprints."
    )

    @property
    def excluded_rows(self) -> int:
        """Holdout rows left out because a model was trained on them."""
        return self.holdout_rows - self.compared_rows


@dataclass(frozen=True)
class FairHoldout:
    """The rows both models are scored on, and how they were chosen.

    Attributes:
        x: raw features of the rows neither model was trained on.
        y: their 0/1 labels.
        rows: the counts.
    """

    x: pd.DataFrame
    y: np.ndarray
    rows: ComparisonRows


def fair_holdout(
    x: pd.DataFrame,
    y: np.ndarray,
    challenger_seen: np.ndarray | None,
    champion_seen: np.ndarray | None,
) -> FairHoldout:
    """Keep the holdout rows neither model was trained on (a pure function of its inputs).

    Args:
        x: validated raw features of the challenger's holdout (canonical columns).
        y: their 0/1 labels.
        challenger_seen: the challenger's training-row fingerprints (None: it keeps none).
        champion_seen: the champion's (an empty array when there is no champion; None when the
            champion keeps none, so rows it saw cannot be told and none is left out for it).

    Returns:
        The :class:`FairHoldout` (new frames; the inputs are not modified).
    """
    y = np.asarray(y)
    by_challenger = seen_mask(x, challenger_seen) if challenger_seen is not None else None
    by_champion = seen_mask(x, champion_seen) if champion_seen is not None else None
    none = np.zeros(len(x), dtype=bool)
    keep = ~(
        (none if by_challenger is None else by_challenger)
        | (none if by_champion is None else by_champion)
    )
    return FairHoldout(
        x=x.loc[keep].copy(),
        y=y[keep].copy(),
        rows=ComparisonRows(
            holdout_rows=len(x),
            seen_by_champion=int(0 if by_champion is None else by_champion.sum()),
            seen_by_challenger=int(0 if by_challenger is None else by_challenger.sum()),
            compared_rows=int(keep.sum()),
            churners=int(y[keep].sum()),
            champion_fingerprinted=champion_seen is not None,
        ),
    )


class GatePolicy(BaseModel):
    """What the gate asks of a challenger (from Settings, shared with tests and monitoring)."""

    model_config = ConfigDict(frozen=True)

    metric: GateMetric = "f1"
    margin: float = 0.002
    floors: QualityThresholds = QUALITY_THRESHOLDS
    sample: SampleRule = Field(default_factory=SampleRule)

    @classmethod
    def from_settings(cls, settings: Settings) -> GatePolicy:
        """``GATE_METRIC``, ``GATE_MARGIN``, ``GATE_MIN_CLASS_ROWS``, ``GATE_MAX_INTERVAL_WIDTH``
        and the shared floors :data:`core.evaluate.QUALITY_THRESHOLDS`."""
        return cls(
            metric=settings.gate_metric,
            margin=settings.gate_margin,
            sample=SampleRule.from_settings(settings),
        )


class GateDecision(BaseModel):
    """The outcome of the gate (or of a manual promotion/rollback), recorded on the version."""

    model_config = ConfigDict(frozen=True)

    version: str
    promoted: bool
    verdict: Verdict = Field(
        description="promoted, rejected or not_enough_rows (the gate); promoted (by hand) or "
        "rolled_back (rollback)."
    )
    reason: str
    metric: str
    margin: float
    challenger_score: float | None = None
    champion_score: float | None = None
    champion_version: str | None = None
    failed_floors: list[str] = Field(default_factory=list)
    rows: ComparisonRows | None = Field(None, description="The compared rows (None: manual).")
    challenger_interval: tuple[float | None, float | None] | None = None
    champion_interval: tuple[float | None, float | None] | None = None


def _on_rows(rows: ComparisonRows) -> str:
    text = f"on {rows.compared_rows} holdout rows neither model was trained on"
    left_out = []
    if rows.seen_by_champion:
        left_out.append(f"{rows.seen_by_champion} the champion was trained on")
    if rows.seen_by_challenger:
        left_out.append(f"{rows.seen_by_challenger} the challenger was trained on")
    if left_out:
        text += f" ({' and '.join(left_out)} left out)"
    if not rows.champion_fingerprinted:
        text += "; the champion keeps no training-row fingerprints, so rows it saw stay in"
    return text


def _scores_there(metric: str, score: float | None, champion: float | None, who: str) -> str:
    """The scores a verdict of not_enough_rows did not judge, for the record."""
    shown = [f"challenger {score:.4f}"] if score is not None else []
    shown += [f"{who} {champion:.4f}"] if champion is not None else []
    return f" ({metric} there: {', '.join(shown)})" if shown else ""


def _bounds(quality: Quality, metric: str) -> tuple[float | None, float | None]:
    figure = quality.figure(metric)
    return figure.low, figure.high


def decide(
    version: str,
    challenger: Quality,
    champion: Quality | None,
    champion_version: str | None,
    rows: ComparisonRows,
    policy: GatePolicy,
) -> GateDecision:
    """Promote only a challenger judged on enough fair rows, above the floors, beating the champion.

    Args:
        version: the challenger's version.
        challenger: the challenger's quality on the compared rows (:func:`fair_holdout`).
        champion: the champion's quality on the same rows (None: there is no champion, or the
            challenger is the champion).
        champion_version: the champion's version (None without one).
        rows: how the compared rows were chosen.
        policy: the metric, margin, floors and sample rule.

    Returns:
        The decision with both scores, their intervals, the rows and a one-line reason.
    """
    metric = policy.metric
    score = challenger.figure(metric).value
    champion_score = None if champion is None else champion.figure(metric).value
    where = _on_rows(rows)
    failed: list[str] = []
    shortfall = policy.sample.shortfall(challenger)
    who = f"champion v{champion_version or '?'}"
    verdict: Verdict
    if shortfall is not None or score is None:
        verdict = "not_enough_rows"
        reason = f"not enough rows to judge {where}: {shortfall or f'{metric} undefined'}"
        reason += _scores_there(metric, score, champion_score, who)
    elif failed := policy.floors.shown_failures(
        {
            name: (challenger.figure(name).value, *_bounds(challenger, name))
            for name in ("f1", "roc_auc", "brier")
        }
    ):
        verdict, reason = "rejected", f"below the quality floors {where}: {'; '.join(failed)}"
    elif champion is None:
        verdict = "promoted"
        reason = (
            f"passes the quality floors and there is no champion ({challenger.text(metric)} "
            f"{where})"
        )
    elif champion_score is not None and score >= champion_score + policy.margin:
        verdict = "promoted"
        reason = (
            f"{metric} {score:.4f} beats {who} {champion_score:.4f} by >= {policy.margin:g} {where}"
        )
    else:
        verdict = "rejected"
        theirs = "undefined" if champion_score is None else f"{champion_score:.4f}"
        reason = f"{metric} {score:.4f} does not beat {who} {theirs} by {policy.margin:g} {where}"
    return GateDecision(
        version=str(version),
        promoted=verdict == "promoted",
        verdict=verdict,
        reason=reason,
        metric=metric,
        margin=policy.margin,
        challenger_score=score,
        champion_score=champion_score,
        champion_version=champion_version,
        failed_floors=failed,
        rows=rows,
        challenger_interval=_bounds(challenger, metric),
        champion_interval=None if champion is None else _bounds(champion, metric),
    )
