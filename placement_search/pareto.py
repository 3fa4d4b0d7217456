"""Pareto dominance, non-dominated fronts and exact hypervolume: the one place they are computed.

Every objective is minimised here; callers turn "accuracy up" into ``-accuracy`` (or ``1 - accuracy``)
before asking. Exact algorithms, no sampling: a sweep in two dimensions and slicing along the
last objective above that (the "hypervolume by slicing objectives" scheme of While et al. 2006),
which is quick for the few hundred points and two or three objectives of a study.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["crowding", "dominates", "front", "hypervolume", "nondominated_order", "ranks"]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Pareto dominance, every objective minimised: ``a`` is no worse anywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices (ascending) of the non-dominated points; of several equal points, the first."""
    order = sorted(range(len(points)), key=lambda i: (tuple(points[i]), i))
    kept: list[int] = []
    for i in order:
        p = tuple(points[i])
        # sorted lexicographically, a point can only be dominated by (or equal to) one before it
        if not any(tuple(points[j]) == p or dominates(points[j], p) for j in kept):
            kept.append(i)
    return sorted(kept)


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (every objective minimised);
    points not strictly better than the reference in every objective add nothing."""
    pts = [tuple(float(v) for v in p) for p in points if all(v < r for v, r in zip(p, reference))]
    ref = tuple(float(r) for r in reference)
    if not pts:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in pts)
    if len(ref) == 2:
        area, best_y = 0.0, ref[1]
        for x, y in sorted(pts):
            if y < best_y:
                area += (ref[0] - x) * (best_y - y)
                best_y = y
        return area
    pts = [pts[i] for i in front(pts)]
    pts.sort(key=lambda p: p[-1])
    volume = 0.0
    for i, p in enumerate(pts):
        top = pts[i + 1][-1] if i + 1 < len(pts) else ref[-1]
        if top > p[-1]:
            volume += hypervolume([q[:-1] for q in pts[: i + 1]], ref[:-1]) * (top - p[-1])
    return volume


def _eps_dominates(a: Sequence[float], b: Sequence[float], eps: Sequence[float]) -> bool:
    """``a`` dominates ``b`` by a margin: better by at least ``eps`` in every objective that has
    one and no worse in the others, and strictly better somewhere (with ``eps`` all zero: plain
    dominance). A margin on accuracy: dominated only by one that costs no more and is at
    least ``margin`` more accurate."""
    return all(x + e <= y for x, y, e in zip(a, b, eps)) and any(x + e < y for x, y, e in zip(a, b, eps))


def ranks(points: Sequence[Sequence[float]], eps: Sequence[float] | None = None) -> list[int]:
    """Non-dominated sorting (NSGA-II's fronts, every objective minimised): rank 0 for the points
    no other point dominates, rank 1 for those only rank-0 points dominate, and so on. With
    ``eps``, a point is only dominated by one better by more than its margin somewhere: the
    points *near* a front share its rank (the margin is the noise the comparison allows)."""
    eps = [0.0] * (len(points[0]) if points else 0) if eps is None else list(eps)
    n = len(points)
    beaten_by = [0] * n
    beats: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if _eps_dominates(points[i], points[j], eps):
                beats[i].append(j)
                beaten_by[j] += 1
            elif _eps_dominates(points[j], points[i], eps):
                beats[j].append(i)
                beaten_by[i] += 1
    out = [0] * n
    current = [i for i in range(n) if beaten_by[i] == 0]
    rank = 0
    while current:
        nxt = []
        for i in current:
            out[i] = rank
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    nxt.append(j)
        current, rank = nxt, rank + 1
    return out


def crowding(points: Sequence[Sequence[float]]) -> list[float]:
    """NSGA-II's crowding distance of each point among ``points`` (one front): the sum over
    objectives of the normalised gap between its neighbours; the ends of each objective get
    infinity. Larger: a lonelier point, worth more to the front's spread."""
    n = len(points)
    out = [0.0] * n
    if n == 0:
        return out
    for m in range(len(points[0])):
        order = sorted(range(n), key=lambda i: points[i][m])
        lo, hi = points[order[0]][m], points[order[-1]][m]
        out[order[0]] = out[order[-1]] = math.inf
        if hi == lo:
            continue
        for a, i, b in zip(order, order[1:], order[2:]):
            out[i] += (points[b][m] - points[a][m]) / (hi - lo)
    return out


def nondominated_order(points: Sequence[Sequence[float]], eps: Sequence[float] | None = None) -> list[int]:
    """Indices of ``points`` best first: by (ε-)non-dominated rank, then by crowding distance
    within a rank (NSGA-II's survival order), then by index."""
    r = ranks(points, eps)
    crowd = [0.0] * len(points)
    for k in set(r):
        members = [i for i in range(len(points)) if r[i] == k]
        for i, c in zip(members, crowding([points[i] for i in members])):
            crowd[i] = c
    return sorted(range(len(points)), key=lambda i: (r[i], -crowd[i], i))
