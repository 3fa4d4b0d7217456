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

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Reference", "compact", "dominators", "should_stop"]


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
    counts: dict[int, int] | None = None,
) -> list[int]:
    """The dominating trials if the run should stop at ``step``, else an empty list.
    ``counts``: finished trials evaluated at each step, where ``reference`` is a
    :func:`compact` one (default: counted from ``reference``)."""
    n = counts.get(step, 0) if counts is not None else sum(1 for r in reference if step in r.curve)
    if n < min_trials:
        return []
    dom = dominators(step, accuracy, macs, reference, margin)
    return dom if len(dom) >= min_dominating else []


def compact(reference: Sequence[Reference], macs: int, keep: int) -> tuple[list[Reference], dict[int, int]]:
    """What a run of cost ``macs`` needs of ``reference``: at each step the ``keep`` most
    accurate trials that cost no more (only they can dominate it), and how many finished
    trials were evaluated at each step. :func:`should_stop` decides the same on it, so a
    dispatched trial carries a few entries instead of the whole study."""
    counts: dict[int, int] = {}
    for r in reference:
        for s in r.curve:
            counts[s] = counts.get(s, 0) + 1
    cheaper = [r for r in reference if r.macs <= macs]
    chosen: dict[int, Reference] = {}
    for s in {s for r in cheaper for s in r.curve}:
        for r in heapq.nlargest(keep, (r for r in cheaper if s in r.curve), key=lambda r: r.curve[s]):
            chosen[r.trial] = r
    return sorted(chosen.values(), key=lambda r: r.trial), counts
