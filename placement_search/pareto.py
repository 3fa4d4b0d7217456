"""Pareto dominance, non-dominated fronts and exact hypervolume: the one place they are computed.

Every objective is minimised here; callers turn "accuracy up" into ``-accuracy`` (or ``1 - accuracy``)
before asking. Exact algorithms, no sampling: a sweep in two dimensions and slicing along the
last objective above that (the "hypervolume by slicing objectives" scheme of While et al. 2006),
which is quick for the few hundred points and two or three objectives of a study.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["dominates", "front", "hypervolume"]


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
