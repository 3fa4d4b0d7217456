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

from ..pareto import front, hypervolume
from ..placement import placement_key
from .records import run_fields, trial_attrs, trial_status

__all__ = [
    "Estimate",
    "FrontHypervolume",
    "estimates",
    "front_estimates",
    "front_hypervolume",
    "pooled_sd",
    "reference_box",
    "top_steps",
]


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


#: the fewest degrees of freedom of the measured seed noise the correction accepts: below three
#: the noise's posterior has no finite variance, and the correction would be as noisy as the claim
MIN_DOF = 3


@dataclass(frozen=True)
class FrontHypervolume:
    """The hypervolume of the front users see, as the study's means give it and corrected for the
    luck of a front picked on noisy means."""

    #: hypervolume of the placements at the top budget under their mean accuracies
    value: float
    #: ``value`` less its bootstrap estimate of bias (None: the seed noise at the top budget is
    #: measured on fewer than :data:`MIN_DOF` degrees of freedom, or not at all)
    corrected: float | None
    #: the seed noise measured at the top budget: the pooled standard deviation of one run, over
    #: how many placements with several runs, with how many degrees of freedom
    noise_sd: float | None
    noise_placements: int
    dof: int
    #: the top budget (steps)
    steps: int | None
    draws: int

    @property
    def bias(self) -> float | None:
        return None if self.corrected is None else self.value - self.corrected


def reference_box(ests: Mapping[str, Estimate], directions: Sequence[str]) -> list[float]:
    """The reference point the dashboard's hypervolume history uses: accuracy (every maximised
    objective) 0, each minimised cost 1.1 x its largest value over the study's placements."""
    ref = []
    for i, d in enumerate(directions):
        if d == "maximize":
            ref.append(0.0)
        else:
            ref.append(1.1 * max((e.values[i] for e in ests.values()), default=1.0) or 1.0)
    return ref


def front_hypervolume(
    ests: Mapping[str, Estimate],
    directions: Sequence[str],
    reference: Sequence[float],
    metric_names: Sequence[str] | None = None,
    *,
    draws: int = 400,
    seed: int = 0,
) -> FrontHypervolume:
    """The hypervolume (bounded by ``reference``, in objective units) of the placements at the
    study's top budget under their mean accuracies, and that value corrected for selection.

    A front is picked on noisy means, and the hypervolume is a convex, maximum-like function of
    them: placements whose runs came out lucky are on it and push it up more than unlucky ones
    pull it down, so its expected value over trainer seeds is above the hypervolume of the true
    accuracies (Jensen). The correction is the parametric bootstrap's estimate of that bias
    (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 10): redraw every
    top-budget mean from a normal with its standard error (the seed noise the study measured
    there, pooled over its placements with several runs, over the square root of the
    placement's runs), take the hypervolume of each redraw, and subtract the redraws' mean
    excess over ``value`` (never less than 0: the excess is not negative in expectation). The
    seed noise is itself measured on few runs, so each redraw first draws its own from the
    noise's posterior (sd^2 x dof / chi2(dof), under the usual flat prior on log sd): a rough
    noise estimate widens the correction; below :data:`MIN_DOF` degrees of freedom there is no
    correction. On the ground-truth table, for a promoted study with two seeds at the top, this
    brings the claim from about +0.02 of the reference hypervolume above the truth and +0.03
    above runs the study never drew to within about 0.01 and 0.02 of them (docs/ground_truth.md,
    "Noise-aware search"). There every placement's runs had seeds of their own; in a real study
    the placements share their trainer seeds, and a seed's offset common to every placement
    counts in the measured noise but not in the front's luck, so the correction is likely
    larger than needed there (not measured). Only the accuracy is
    redrawn: costs are exact (MACs, params) or measured once (latency). Deterministic for a
    given ``seed``. Placements that no redraw can bring onto the front are left out of the
    redraws (a speed-up, exact but for six-sigma noise)."""
    import numpy as np

    names = list(metric_names or [])
    acc_i = names.index("accuracy") if "accuracy" in names else 0
    top = top_steps(ests)
    pool = [e for e in ests.values() if e.steps == top]
    signs = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    ref = signs * np.asarray(reference, dtype=float)
    points = np.array([e.values for e in pool], dtype=float).reshape(len(pool), len(directions)) * signs
    value = hypervolume(points.tolist(), ref.tolist())
    noise = pooled_sd({e.key: e for e in pool})
    if noise is None:
        return FrontHypervolume(value, None, None, 0, 0, top, 0)
    sd, k = noise
    dof = sum(e.n - 1 for e in pool if e.n > 1)
    if dof < MIN_DOF:
        return FrontHypervolume(value, None, sd, k, dof, top, 0)
    rng = np.random.default_rng(seed)
    # the seed noise of each redraw, from its posterior given dof degrees of freedom
    noise_draws = sd * np.sqrt(dof / rng.chisquare(dof, size=draws))
    scale = np.array([1.0 / math.sqrt(e.n) for e in pool])
    # leave out a placement that another beats by six redrawn standard errors on both sides,
    # costing no more: no redraw brings it onto the front
    band = 6.0 * float(noise_draws.max()) * scale
    acc = signs[acc_i] * points[:, acc_i]  # accuracies, larger better
    costs = np.delete(points, acc_i, axis=1)
    keep = np.ones(len(pool), dtype=bool)
    low, high = acc - band, acc + band
    for i in range(len(pool)):
        cheaper = np.all(costs <= costs[i], axis=1)
        keep[i] = not np.any(cheaper & (low > high[i]))
    # each placement's standard normals in a block of its own: leaving one out does not change
    # the others' draws
    z = rng.standard_normal((len(pool), draws))[keep].T
    pts, acc, scale = points[keep], acc[keep], scale[keep]
    redrawn = np.empty(draws)
    for d in range(draws):
        p = pts.copy()
        p[:, acc_i] = signs[acc_i] * (acc + noise_draws[d] * scale * z[d])
        redrawn[d] = hypervolume(p.tolist(), ref.tolist())
    bias = max(0.0, float(redrawn.mean()) - value)
    return FrontHypervolume(value, value - bias, sd, k, dof, top, draws)
