"""The multi-objective early-stopping rule.

Optuna has no pruning for multi-objective studies (``Trial.report`` raises there), so the
search carries its own rule, applied on the worker at each intermediate evaluation:

    stop a run at step ``s`` when at least ``min_dominating`` finished trials that cost no
    more (MACs at the target input <= this run's) reached accuracy >= this run's + ``margin``
    at the same step ``s``, once the study holds at least ``min_trials`` finished trials with
    an evaluation at ``s``.

A stopped run cannot end on the Pareto front unless it would gain more than ``margin``
over its dominators in the remaining steps. The reference set is the study's finished
trials when the run is dispatched. Stopped trials are recorded PRUNED with the numbers of
the trials that dominated them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Reference", "dominators", "should_stop"]


@dataclass(frozen=True)
class Reference:
    """A finished trial as the rule sees it: its cost and its accuracy at each evaluated step."""

    trial: int
    macs: int
    curve: dict[int, float] = field(default_factory=dict)


def dominators(step: int, accuracy: float, macs: int, reference: Sequence[Reference], margin: float) -> list[int]:
    """Trials that cost no more and were at least ``margin`` more accurate at ``step``."""
    return [
        r.trial for r in reference if r.macs <= macs and step in r.curve and r.curve[step] >= accuracy + margin - 1e-12
    ]


def should_stop(
    step: int,
    accuracy: float,
    macs: int,
    reference: Sequence[Reference],
    *,
    margin: float,
    min_trials: int,
    min_dominating: int,
) -> list[int]:
    """The dominating trials if the run should stop at ``step``, else an empty list."""
    if sum(1 for r in reference if step in r.curve) < min_trials:
        return []
    dom = dominators(step, accuracy, macs, reference, margin)
    return dom if len(dom) >= min_dominating else []
