"""Dominance, fronts and hypervolume (placement_search.pareto), against boxes counted by hand
and against a brute-force grid count."""

from __future__ import annotations

import itertools
import random

import pytest

from placement_search.pareto import dominates, front, hypervolume


def test_dominance_is_strict_somewhere():
    assert dominates((1, 2), (1, 3)) and dominates((0, 0), (1, 1))
    assert not dominates((1, 2), (1, 2))  # equal: neither dominates
    assert not dominates((1, 3), (2, 2)) and not dominates((2, 2), (1, 3))


def test_front_keeps_the_first_of_equal_points():
    pts = [(2, 2), (1, 3), (2, 2), (3, 1), (3, 3), (1, 3)]
    # (3, 3) is dominated by (2, 2); the second (2, 2) and (1, 3) repeat earlier ones
    assert front(pts) == [0, 1, 3]
    assert front([]) == []


def test_hypervolume_of_known_points():
    # union of [1,4]x[3,4] (area 3) and [2,4]x[1,4] (area 6), overlapping in [2,4]x[3,4] (area 2): 7
    assert hypervolume([(1, 3), (2, 1)], (4, 4)) == pytest.approx(7.0)
    # a dominated point adds nothing; a point outside the box adds nothing
    assert hypervolume([(1, 3), (2, 1), (3, 3), (5, 0)], (4, 4)) == pytest.approx(7.0)
    assert hypervolume([], (1, 1)) == 0.0
    # three objectives: a single point is a box; two boxes by inclusion-exclusion:
    # [0.5,1]^3 = 0.125, [0,1]x[0.75,1]x[0.75,1] = 0.0625, overlap [0.5,1]x[0.75,1]^2 = 0.03125
    assert hypervolume([(0.5, 0.5, 0.5)], (1, 1, 1)) == pytest.approx(0.125)
    assert hypervolume([(0.5, 0.5, 0.5), (0, 0.75, 0.75)], (1, 1, 1)) == pytest.approx(0.125 + 0.0625 - 0.03125)


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_matches_a_grid_count(dims):
    """On integer points, the dominated volume is the number of unit cells [c, c+1)^d whose lower
    corner some point dominates weakly: counted cell by cell, independently of the algorithm."""
    rng = random.Random(dims)
    ref = (6,) * dims
    for _ in range(20):
        pts = [tuple(rng.randrange(0, 7) for _ in range(dims)) for _ in range(rng.randrange(1, 9))]
        cells = sum(
            1
            for c in itertools.product(range(6), repeat=dims)
            if any(all(p[k] <= c[k] for k in range(dims)) for p in pts if all(v < 6 for v in p))
        )
        assert hypervolume(pts, ref) == pytest.approx(cells)


def test_ranks_are_nsga2_fronts():
    from placement_search.pareto import ranks

    # minimised pairs: a staircase (0,3) (1,1) (3,0) is front 0; (2,2) and (1,3) are dominated by
    # (1,1) only -> front 1; (3,3) is dominated by (2,2) too -> front 2
    pts = [(0, 3), (1, 1), (3, 0), (2, 2), (1, 3), (3, 3)]
    assert ranks(pts) == [0, 0, 0, 1, 1, 2]
    # a margin of 0.1 on the second objective: (1, 1.05) is within it of (1, 1), so not dominated;
    # (1, 1.2) is beyond it
    assert ranks([(1, 1), (1, 1.05)], [0.0, 0.1]) == [0, 0]
    assert ranks([(1, 1), (1, 1.2)], [0.0, 0.1]) == [0, 1]


def test_crowding_distance_by_hand():
    from placement_search.pareto import crowding, nondominated_order

    # four points on a line: ends infinite; inner ones sum the normalised neighbour gaps
    pts = [(0.0, 4.0), (1.0, 3.0), (3.0, 1.0), (4.0, 0.0)]
    c = crowding(pts)
    assert c[0] == c[3] == float("inf")
    assert c[1] == pytest.approx((3 - 0) / 4 + (4 - 1) / 4)
    assert c[2] == pytest.approx((4 - 1) / 4 + (3 - 0) / 4)
    # order: front first (ends before the middle), then the dominated point
    order = nondominated_order([(0.0, 4.0), (2.0, 2.0), (4.0, 0.0), (3.0, 3.0)])
    assert order[:2] == [0, 2] and order[2:] == [1, 3]
