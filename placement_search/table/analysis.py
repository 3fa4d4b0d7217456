"""Measurements on a ground-truth table: rank agreement between budgets and seeds, and the
quality of a reported front judged by the reference.

Plain data in, numbers out (numpy and scipy): the benchmarks ``proxy_fidelity.py`` and
``search_efficiency.py`` and the docs' figures use these.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from itertools import combinations

import numpy as np

from .. import pareto
from .table import Table

__all__ = [
    "curve_means",
    "disattenuated_tau",
    "front",
    "hypervolume",
    "kendall_tau",
    "mean_of_seeds",
    "mean_reliability",
    "reference_hv_share",
    "reference_points",
    "seed_agreement",
    "tau_ceiling",
    "top_overlap",
]


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b between two score lists over the same items (ties handled)."""
    from scipy.stats import kendalltau

    if len(a) != len(b) or len(a) < 2:
        raise ValueError("kendall_tau: two lists of the same length >= 2")
    tau = kendalltau(np.asarray(a, dtype=float), np.asarray(b, dtype=float)).statistic
    return float(tau) if np.isfinite(tau) else 0.0


def top_overlap(a: Sequence[float], b: Sequence[float], share: float = 0.1) -> float:
    """Share of the top ``share`` of items by ``a`` that are also in the top ``share`` by ``b``."""
    k = max(1, round(share * len(a)))
    ta = set(np.argsort(-np.asarray(a, dtype=float), kind="stable")[:k].tolist())
    tb = set(np.argsort(-np.asarray(b, dtype=float), kind="stable")[:k].tolist())
    return len(ta & tb) / k


def _seed_means(
    placements: Sequence[str], budget: str, seeds: Iterable[int], read: Callable[[str, int], float | None]
) -> list[float]:
    """Each placement's mean over ``seeds`` of ``read(placement, seed)`` (every seed must be there)."""
    seeds = list(seeds)
    out = []
    for p in placements:
        vals = [read(p, s) for s in seeds]
        if any(v is None for v in vals):
            raise KeyError(f"{p}: no {budget} run for some of seeds {seeds}")
        out.append(statistics.fmean(v for v in vals if v is not None))
    return out


def mean_of_seeds(table: Table, placements: Sequence[str], budget: str, seeds: Iterable[int]) -> list[float]:
    """Each placement's mean accuracy over ``seeds`` at ``budget`` (every seed must be there)."""
    return _seed_means(placements, budget, seeds, lambda p, s: table.accuracy(p, budget, s))


def curve_means(table: Table, placements: Sequence[str], budget: str, seeds: Iterable[int]) -> list[float]:
    """Each placement's runs at ``budget`` read as learning curves: the mean over ``seeds`` of
    each run's mean held-out accuracy over its evaluations (the area under its curve)."""

    def read(p: str, s: int) -> float | None:
        row = table.row(p, budget, s)
        return statistics.fmean(v for _, v in row.eval_curve) if row is not None and row.eval_curve else None

    return _seed_means(placements, budget, seeds, read)


def seed_subsets(seeds: Sequence[int], k: int) -> list[tuple[int, ...]]:
    return list(combinations(seeds, k))


def front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the Pareto-optimal points, maximising the first value (accuracy) and
    minimising the second (cost); of equal points, the first."""
    return pareto.front([(-a, c) for a, c in points])


def hypervolume(points: Iterable[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by ``points`` (accuracy up, cost down) and bounded by ``ref``
    (accuracy floor, cost ceiling): the 2D hypervolume."""
    return pareto.hypervolume([(-a, c) for a, c in points], (-ref[0], ref[1]))


def reference_points(
    table: Table, placements: Sequence[str] | None = None, *, budget: str = "reference", cost_margin: float = 1.1
) -> tuple[dict[str, tuple[float, float]], tuple[float, float]]:
    """Every placement's ``(budget mean accuracy, exact target MACs)`` and the hypervolume
    reference point: the nadir of the table (its lowest accuracy; ``cost_margin`` x its largest
    MACs). An accuracy floor of 0 would make every share look high: accuracies here live in
    70-95%, and the area below them would swamp the differences between fronts.

    The mean is over the budget's complete seeds (:meth:`Table.complete_seeds`), so that a seed
    still being built does not make some placements two-seed means and others single runs (a
    single run is more often extreme, and the true front would favour it)."""
    universe = list(placements) if placements is not None else table.placements(budget)
    seeds = table.complete_seeds(budget) or table.seeds(budget)
    pts: dict[str, tuple[float, float]] = {}
    for p in universe:
        accs = [a for s in seeds if (a := table.accuracy(p, budget, s)) is not None]
        if accs:
            pts[p] = (statistics.fmean(accs), float(table.cost(p)[0]))
    ref = (min(a for a, _ in pts.values()), cost_margin * max(c for _, c in pts.values()))
    return pts, ref


def reference_hv_share(
    table: Table,
    reported: Iterable[str],
    *,
    budget: str = "reference",
    placements: Sequence[str] | None = None,
    cost_margin: float = 1.1,
) -> float:
    """Hypervolume of ``reported`` placements under their ``budget`` mean accuracy and exact
    target MACs, as a share of the hypervolume of the true front of that budget over
    ``placements`` (default: every placement the table holds at that budget), from the
    reference point of :func:`reference_points`."""
    pts, ref = reference_points(table, placements, budget=budget, cost_margin=cost_margin)
    true = hypervolume(pts.values(), ref)
    got = hypervolume((pts[p] for p in set(reported) if p in pts), ref)
    return got / true if true > 0 else 0.0


# -- how reliable is a ranking? ----------------------------------------------------------------
# A budget's seeds do not agree with each other perfectly, so no proxy can agree with one seed
# (or a mean of a few) perfectly either. The classical correction for attenuation (Spearman,
# 1904) says how far: the reliability of the mean of m seeds is m r / (1 + (m - 1) r)
# (Spearman-Brown) for one seed's reliability r (the correlation of two seeds over the
# placements), and a ranking that were exact would correlate with that mean at the square root
# of it. Kendall's tau sees only ranks, so r is taken on normal scores (a Gaussian copula, which
# any monotone transform of the accuracies leaves alone): r = sin(pi tau / 2) from the tau of two
# seeds (Greiner's relation), not Pearson's r of the raw accuracies, which their skew (a few
# placements far below the rest) pulls down. The same relation carries the results back to tau.


def seed_agreement(table: Table, budget: str) -> tuple[int, float, float] | None:
    """``(placements, Kendall tau, r)`` between a budget's seeds, averaged over pairs of seeds,
    on the placements that hold both seeds of a pair (None: no pair shares 3); r = sin(pi tau /
    2), the correlation of normal scores: one seed's reliability as a ranking. Where two or more
    seeds hold every placement, only those: a seed still being built may hold a chosen few (say,
    near the front), whose narrower range would read as worse agreement."""
    taus, ns = [], []
    complete = table.complete_seeds(budget)
    for s1, s2 in combinations(complete if len(complete) > 1 else table.seeds(budget), 2):
        pairs = [
            (a, b)
            for p in table.placements(budget)
            if (a := table.accuracy(p, budget, s1)) is not None and (b := table.accuracy(p, budget, s2)) is not None
        ]
        if len(pairs) < 3:
            continue
        x, y = zip(*pairs)
        taus.append(kendall_tau(x, y))
        ns.append(len(pairs))
    if not taus:
        return None
    tau = statistics.fmean(taus)
    return min(ns), tau, float(np.sin(np.pi * tau / 2))


def mean_reliability(r: float, m: int) -> float:
    """Reliability of the mean of ``m`` seeds for one seed's reliability ``r`` (Spearman-Brown)."""
    r = min(max(r, 0.0), 1.0)
    return m * r / (1 + (m - 1) * r) if r > 0 else 0.0


def tau_ceiling(r: float, m: int) -> float:
    """The Kendall tau an exact ranking (each placement's expected accuracy) would reach against
    the mean of ``m`` seeds, for one seed's reliability ``r``."""
    return float(2 / np.pi * np.arcsin(np.sqrt(mean_reliability(r, m))))


def disattenuated_tau(tau: float, r: float, m: int) -> float:
    """A measured tau against the mean of ``m`` seeds, corrected for those seeds' own noise: the
    estimated tau against the noise-free ranking (each placement's expected accuracy). Capped at
    1; an estimate, as uncertain as ``r`` is."""
    rel = mean_reliability(r, m)
    if rel <= 0:
        return float("nan")
    rho = np.sin(np.pi * tau / 2) / np.sqrt(rel)
    return float(2 / np.pi * np.arcsin(np.clip(rho, -1.0, 1.0)))
