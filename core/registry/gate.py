"""The promotion gate's decision: a pure function of two models' scores on the same rows.

No MLflow here: :func:`decide` takes the challenger's and the champion's metrics (computed by
:func:`core.registry.versions.gate` on rows neither was trained on) and returns the
:class:`GateDecision` that the registry records and acts on.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.evaluate import QUALITY_THRESHOLDS, Metrics, QualityThresholds

GateMetric = Literal["f1", "roc_auc", "pr_auc"]


class GateDecision(BaseModel):
    """The outcome of the gate (or of a manual promotion/rollback), recorded on the version."""

    model_config = ConfigDict(frozen=True)

    version: str
    promoted: bool
    reason: str
    metric: str
    margin: float
    challenger_score: float
    champion_score: float | None = None
    champion_version: str | None = None
    failed_floors: list[str] = Field(default_factory=list)


def decide(
    version: str,
    challenger: Metrics,
    champion: Metrics | None,
    champion_version: str | None,
    *,
    metric: GateMetric,
    margin: float,
    floors: QualityThresholds = QUALITY_THRESHOLDS,
) -> GateDecision:
    """Promote only a challenger that passes the quality floors and beats the champion.

    Args:
        version: the challenger's version.
        challenger: the challenger's metrics on the comparison rows.
        champion: the champion's metrics on the same rows (None: there is no champion, or the
            challenger is the champion).
        champion_version: the champion's version (None without one).
        metric: the compared metric.
        margin: how much the challenger must lead by (``score >= champion + margin``).
        floors: the absolute floors every champion must pass.

    Returns:
        The decision with both scores and a one-line reason.
    """
    score = float(getattr(challenger, metric))
    failed = floors.failures(challenger)
    champion_score = None if champion is None else float(getattr(champion, metric))
    who = f"champion v{champion_version or '?'}"
    if failed:
        promoted, reason = False, f"below the quality floors: {'; '.join(failed)}"
    elif champion_score is None:
        promoted = True
        reason = f"passes the quality floors and there is no champion ({metric}={score:.4f})"
    elif score >= champion_score + margin:
        promoted = True
        reason = f"{metric} {score:.4f} beats {who} {champion_score:.4f} by >= {margin:g}"
    else:
        promoted = False
        reason = f"{metric} {score:.4f} does not beat {who} {champion_score:.4f} by {margin:g}"
    return GateDecision(
        version=str(version),
        promoted=promoted,
        reason=reason,
        metric=metric,
        margin=margin,
        challenger_score=score,
        champion_score=champion_score,
        champion_version=champion_version,
        failed_floors=list(failed),
    )
