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
    "shared_seed_noise",
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
    #: the trainer seed of each run at ``steps`` (a table-evaluated run: the table's seed that
    #: answered it), in the order of ``accuracies``; None where a run records none
    seeds: list[int | None] = field(default_factory=list)

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
    groups: dict[str, list[tuple[int, int, float, Any, dict[str, Any], int | None]]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if t.state != TrialState.COMPLETE or not t.values or not _feasible(t):
            continue
        ua = trial_attrs(t)
        if trial_status(t, ua) != "ok" or ua.get("placement") is None:
            continue
        steps, seed, _ = run_fields(ua)
        seed = ua.get("table_seed", seed)  # the seed whose run answered (table evaluator)
        key = placement_key(ua["placement"])
        groups.setdefault(key, []).append(
            (t.number, steps or 0, float(t.values[acc_i]), t, ua, None if seed is None else int(seed))
        )
    out: dict[str, Estimate] = {}
    for key, runs in groups.items():
        by_steps: dict[int, int] = {}
        for _, s, _, _, _, _ in runs:
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
            seeds=[r[5] for r in at_top],
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


def shared_seed_noise(pool: Sequence[Estimate]) -> tuple[float, int, int] | None:
    """The seed noise that tells placements apart when every placement with several runs ran
    with the same trainer seeds (as a study's repeats and promotions do: a placement's k-th seed
    is the same for every placement): the residual standard deviation of the two-way additive
    model accuracy = placement + seed, its degrees of freedom ((P - 1)(S - 1)) and P. A seed's
    offset common to every placement moves the whole front, not one placement against another,
    so it is no part of a front's luck. None when the runs do not share one set of seeds (the
    ground-truth table's replays draw each placement's seeds apart) or no placement has two."""
    many = [e for e in pool if e.n > 1]
    if not many:
        return None
    first = many[0].seeds
    if None in first or len(set(first)) != len(first):
        return None
    order = sorted(first)  # type: ignore[type-var]
    if any(sorted(e.seeds) != order or len(set(e.seeds)) != e.n for e in many):  # type: ignore[type-var]
        return None
    a = [[dict(zip(e.seeds, e.accuracies))[sd] for sd in order] for e in many]
    p_, s_ = len(a), len(order)
    dof = (p_ - 1) * (s_ - 1)
    if dof < 1:
        return None
    row = [statistics.fmean(r) for r in a]
    col = [statistics.fmean(a[i][j] for i in range(p_)) for j in range(s_)]
    grand = statistics.fmean(row)
    ss = sum((a[i][j] - row[i] - col[j] + grand) ** 2 for i in range(p_) for j in range(s_))
    return math.sqrt(ss / dof), dof, p_


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
    #: the placements shared their trainer seeds, and the noise is the residual of the two-way
    #: model placement + seed (:func:`shared_seed_noise`), not the plain pooled one
    shared_seeds: bool = False

    @property
    def bias(self) -> float | None:
        return None if self.corrected is None else self.value - self.corrected


def reference_box(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[float]:
    """The reference point of the dashboard's hypervolume history and of the front's claim, over
    the objective ``values`` of a study's trials or placements: accuracy (every maximised
    objective) 0, each minimised cost 1.1 x its largest value."""
    ref = []
    for i, d in enumerate(directions):
        if d.lower() == "maximize":
            ref.append(0.0)  # accuracy 0 (minimised as -accuracy: reference 0)
        else:
            ref.append(1.1 * max((v[i] for v in values), default=1.0) or 1.0)
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
    correction. Where the placements share their trainer seeds (a study's repeats and
    promotions give every placement the same ones), the noise is the residual of the two-way
    model placement + seed (:func:`shared_seed_noise`): a seed's offset common to every
    placement moves the whole front and is no part of its luck.

    On the ground-truth table, for a promoted study with two seeds at the top, this brings the
    claim from about +0.02 of the reference hypervolume above the truth and +0.03 above runs the
    study never drew to within about 0.01 and 0.02 of them (docs/ground_truth.md, "Noise-aware
    search"); those replays mostly draw each placement's table seeds apart, so they measure the
    pooled-noise path. Only the accuracy is redrawn: costs are exact (MACs, params) or measured
    once (latency). Deterministic for a given ``seed``. Placements that no redraw can bring onto
    the front are left out of the redraws (a speed-up, exact but for six-sigma noise)."""
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
    shared = shared_seed_noise(pool)
    if shared is not None:  # the placements share their seeds: their common offsets are no luck
        sd, dof, k = shared
    if dof < MIN_DOF:
        return FrontHypervolume(value, None, sd, k, dof, top, 0, shared is not None)
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
    return FrontHypervolume(value, value - bias, sd, k, dof, top, draws, shared is not None)
