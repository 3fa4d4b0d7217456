"""What a study knows about each placement: its runs grouped, the mean at its highest budget.

A placement may be trained several times: with more trainer seeds (``repeats``), at bigger
budgets (``[fidelity]`` rungs, ``placement-search promote``). Every reader of results (``pareto``,
the report, the figures, ``export --pareto``) and the sampler's view of the study work on one
:class:`Estimate` per placement: the mean held-out accuracy of its ``ok`` runs at the **highest
budget it reached**, with the standard error of that mean and the number of runs, and the budget
(steps) the number comes from. Cost objectives are exact (MACs, params) or measured once
(latency), so they are taken from the placement's first run.

The front users see is built from the placements evaluated at the study's **top budget** only
(the largest number of steps any ``ok`` run has): a placement seen only at a lower budget is a
candidate, never a result.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..pareto import front
from ..placement import placement_key
from .records import run_fields, trial_attrs, trial_status

__all__ = ["Estimate", "estimates", "front_estimates", "pooled_sd", "top_steps"]


@dataclass
class Estimate:
    """One placement's result, from its runs at the highest budget it reached."""

    key: str
    placement_string: str
    #: the budget (training steps) the numbers come from; None for runs that record none
    steps: int | None
    #: mean held-out accuracy of the ok runs at ``steps``, its standard error (None: one run)
    mean: float
    se: float | None
    accuracies: list[float]
    #: trial numbers of those runs
    trials: list[int]
    #: the objective values, accuracy replaced by ``mean`` (study order)
    values: list[float]
    #: the attributes of the placement's first ok run (costs, placement JSON, name)
    attrs: dict[str, Any]
    #: ok runs at each budget, steps -> count
    runs_by_steps: dict[int, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.accuracies)

    @property
    def trial(self) -> int:
        """The first of its runs at its highest budget (what ``export --trial`` takes)."""
        return self.trials[0]


def _feasible(t: Any) -> bool:
    """Within every budget (Optuna's constraint values, feasible when <= 0)."""
    c = getattr(t, "constraints", None) or {}
    return all(v <= 0 for v in (c.values() if isinstance(c, dict) else c))


def estimates(trials: Sequence[Any], metric_names: Sequence[str] | None) -> dict[str, Estimate]:
    """One :class:`Estimate` per placement with an ``ok``, feasible run (trials that reused an
    earlier trial's result are the same run, and are left out)."""
    from optuna.trial import TrialState

    names = list(metric_names or [])
    acc_i = names.index("accuracy") if "accuracy" in names else 0
    groups: dict[str, list[tuple[int, int, float, Any, dict[str, Any]]]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if t.state != TrialState.COMPLETE or not t.values or not _feasible(t):
            continue
        ua = trial_attrs(t)
        if trial_status(t, ua) != "ok" or ua.get("placement") is None:
            continue
        steps, _, _ = run_fields(ua)
        key = placement_key(ua["placement"])
        groups.setdefault(key, []).append((t.number, steps or 0, float(t.values[acc_i]), t, ua))
    out: dict[str, Estimate] = {}
    for key, runs in groups.items():
        by_steps: dict[int, int] = {}
        for _, s, _, _, _ in runs:
            by_steps[s] = by_steps.get(s, 0) + 1
        top = max(by_steps)
        at_top = [r for r in runs if r[1] == top]
        accs = [r[2] for r in at_top]
        mean = statistics.fmean(accs)
        se = statistics.stdev(accs) / math.sqrt(len(accs)) if len(accs) > 1 else None
        first = runs[0]
        values = list(first[3].values)
        values[acc_i] = mean
        out[key] = Estimate(
            key=key,
            placement_string=str(first[4].get("placement_string", key)),
            steps=top or None,
            mean=mean,
            se=se,
            accuracies=accs,
            trials=[r[0] for r in at_top],
            values=values,
            attrs=first[4],
            runs_by_steps=dict(sorted(by_steps.items())),
        )
    return out


def top_steps(ests: Mapping[str, Estimate]) -> int | None:
    """The study's top budget: the most steps any placement's ok runs have."""
    steps = [e.steps for e in ests.values() if e.steps is not None]
    return max(steps) if steps else None


def front_estimates(
    ests: Mapping[str, Estimate], directions: Sequence[str], *, top: int | None = None
) -> list[Estimate]:
    """The non-dominated placements among those evaluated at the top budget (``top``: the
    study's, by default), by their mean accuracy and costs; equal points all kept."""
    top = top_steps(ests) if top is None else top
    pool = [e for e in ests.values() if e.steps == top]
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]
    points = [tuple(s * v for s, v in zip(signs, e.values)) for e in pool]
    kept = set(front(points))
    best = {points[i] for i in kept}
    return [e for e, p in zip(pool, points) if p in best]


def pooled_sd(ests: Mapping[str, Estimate]) -> tuple[float, int] | None:
    """The seed noise the study measured: the pooled standard deviation of one run over the
    placements with several runs at their top budget, and how many placements that is (None:
    no placement has two runs)."""
    many = [e for e in ests.values() if e.n > 1]
    if not many:
        return None
    dof = sum(e.n - 1 for e in many)
    ss = sum(statistics.variance(e.accuracies) * (e.n - 1) for e in many)
    return math.sqrt(ss / dof), len(many)
