"""Measurements on a ground-truth table: rank agreement between budgets and seeds, and the
quality of a reported front judged by the reference.

Plain data in, numbers out (numpy and scipy): the benchmarks ``proxy_fidelity.py`` and
``search_efficiency.py`` and the docs' figures use these.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from itertools import combinations

import numpy as np

from .. import pareto
from .table import Table

__all__ = [
    "front",
    "hypervolume",
    "kendall_tau",
    "mean_of_seeds",
    "reference_hv_share",
    "reference_points",
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


def mean_of_seeds(table: Table, placements: Sequence[str], budget: str, seeds: Iterable[int]) -> list[float]:
    """Each placement's mean accuracy over ``seeds`` at ``budget`` (every seed must be there)."""
    seeds = list(seeds)
    out = []
    for p in placements:
        accs = [table.accuracy(p, budget, s) for s in seeds]
        if any(a is None for a in accs):
            raise KeyError(f"{p}: no {budget} run for some of seeds {seeds}")
        out.append(statistics.fmean(a for a in accs if a is not None))
    return out


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
    70-95%, and the area below them would swamp the differences between fronts."""
    universe = list(placements) if placements is not None else table.placements(budget)
    pts: dict[str, tuple[float, float]] = {}
    for p in universe:
        acc = table.accuracy(p, budget)
        if acc is not None:
            pts[p] = (acc, float(table.cost(p)[0]))
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
