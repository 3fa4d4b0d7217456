"""Measurements on a table: complete seeds, the reference's own agreement, and the correction
for its noise. The expected numbers come from handmade tables and from simulated scores whose
noise-free ranking is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_table import _row

from placement_search.table import read_table, write_table
from placement_search.table.analysis import (
    curve_means,
    disattenuated_tau,
    kendall_tau,
    mean_reliability,
    reference_points,
    seed_agreement,
    tau_ceiling,
)

GROUPS = ["stem", "layer1.0"]


def _table(tmp_path, rows):
    path = tmp_path / "t.csv"
    write_table(path, rows, GROUPS, ["appearance"])
    return read_table(path)


def test_a_seed_being_built_does_not_enter_the_truth(tmp_path):
    # seed 1 of the reference exists for one placement only: the truth stays seed 0's values
    rows = [
        _row("2d 2d", "reference", 0, 0.50, GROUPS, macs=1),
        _row("2d 3d", "reference", 0, 0.70, GROUPS, macs=2),
        _row("3d 3d", "reference", 0, 0.90, GROUPS, macs=3),
        _row("3d 3d", "reference", 1, 0.60, GROUPS, macs=3),
    ]
    t = _table(tmp_path, rows)
    assert t.seeds("reference") == [0, 1]
    assert t.complete_seeds("reference") == [0]
    pts, ref = reference_points(t)
    assert pts == {"2d 2d": (0.50, 1.0), "2d 3d": (0.70, 2.0), "3d 3d": (0.90, 3.0)}
    assert ref == (0.50, pytest.approx(3.3))
    # once every placement has seed 1, the truth is the mean of both
    rows += [_row("2d 2d", "reference", 1, 0.60, GROUPS, macs=1), _row("2d 3d", "reference", 1, 0.80, GROUPS, macs=2)]
    t = _table(tmp_path, rows)
    assert t.complete_seeds("reference") == [0, 1]
    pts, _ = reference_points(t)
    assert pts["3d 3d"][0] == pytest.approx(0.75) and pts["2d 2d"][0] == pytest.approx(0.55)


def test_seed_agreement_on_the_shared_placements(tmp_path):
    accs = {"2d 2d": (0.1, 0.4), "2d 3d": (0.2, 0.3), "3d 2d": (0.3, 0.2), "3d 3d": (0.4, 0.1)}
    rows = [_row(p, "reference", s, a[s], GROUPS) for p, a in accs.items() for s in (0, 1)]
    rows.append(_row("2d sep", "reference", 0, 0.9, GROUPS))  # no seed 1: left out of the pair
    n, tau, r = seed_agreement(_table(tmp_path, rows), "reference")
    assert (n, tau, r) == (4, pytest.approx(-1.0), pytest.approx(-1.0))  # seed 1 reverses seed 0
    assert seed_agreement(_table(tmp_path, rows[:2]), "reference") is None  # one placement shares both
    # two complete seeds that agree, and a third still being built on three placements, against
    # them: the agreement is the complete seeds' (a chosen few would read as a narrower range)
    accs = {"2d 2d": (0.1, 0.2, 0.9), "2d 3d": (0.2, 0.3, 0.8), "3d 2d": (0.3, 0.4, 0.7), "3d 3d": (0.4, 0.5, None)}
    rows = [_row(p, "reference", s, a[s], GROUPS) for p, a in accs.items() for s in (0, 1, 2) if a[s] is not None]
    assert seed_agreement(_table(tmp_path, rows), "reference") == (4, pytest.approx(1.0), pytest.approx(1.0))


def test_spearman_brown():
    # two seeds with reliability 1/2: their mean has 2 * 0.5 / 1.5 = 2/3
    assert mean_reliability(0.5, 2) == pytest.approx(2 / 3)
    assert mean_reliability(0.5, 1) == 0.5 and mean_reliability(1.0, 5) == 1.0 and mean_reliability(-0.2, 3) == 0.0
    # Greiner: an exact ranking against one seed of reliability r = sin(pi/6)^2 = 1/4 has
    # rho = 1/2, tau = 2/pi * pi/6 = 1/3
    assert tau_ceiling(0.25, 1) == pytest.approx(1 / 3)


def test_the_correction_recovers_the_noise_free_tau():
    """Simulated placements: a true score z, reference seeds z + noise of reliability 0.4, a
    proxy that sees z through its own noise. The ceiling predicts the tau of z against the
    reference mean, and the corrected tau of the proxy predicts its tau against z."""
    rng = np.random.default_rng(0)
    n = 4000
    z = rng.standard_normal(n)
    sd = math.sqrt(1 / 0.4 - 1)  # var(z) / (var(z) + sd^2) = 0.4
    seeds = [z + sd * rng.standard_normal(n) for _ in range(3)]
    proxy = z + 0.8 * rng.standard_normal(n)
    r = math.sin(math.pi * kendall_tau(seeds[0], seeds[1]) / 2)  # as seed_agreement estimates it
    assert r == pytest.approx(0.4, abs=0.04)
    # a monotone transform of the scores (here a strong skew) changes Pearson's r, not this r
    skewed = [np.exp(2 * x) for x in seeds]
    assert math.sin(math.pi * kendall_tau(skewed[0], skewed[1]) / 2) == pytest.approx(r)
    assert float(np.corrcoef(skewed[0], skewed[1])[0, 1]) < r - 0.1
    for m in (1, 2, 3):
        ref = np.mean(seeds[:m], axis=0)
        assert tau_ceiling(r, m) == pytest.approx(kendall_tau(z, ref), abs=0.03)
        measured = kendall_tau(proxy, ref)
        assert measured < kendall_tau(proxy, z) - 0.1  # the noise in the reference hides agreement
        assert disattenuated_tau(measured, r, m) == pytest.approx(kendall_tau(proxy, z), abs=0.04)


def test_the_data_card_says_which_seed_is_still_being_built():
    from placement_search.inspect.table_export import _seeds_cell

    rows = [{"placement": p, "budget": "reference", "seed": 0, "status": "ok"} for p in ("a", "b", "c")]
    rows += [
        {"placement": "a", "budget": "reference", "seed": 1, "status": "ok"},
        {"placement": "b", "budget": "reference", "seed": 1, "status": "failed"},
    ]
    assert _seeds_cell(rows, "reference", [0, 1], 3) == "0, 1 (1 of 3 placements so far)"
    assert _seeds_cell(rows, "reference", [0], 3) == "0"


# -- the search benchmark's judgement of a reported front ------------------------------------------


def test_a_front_is_judged_by_the_reference_and_by_the_seeds_the_study_did_not_draw(tmp_path):
    """Three placements at 1, 2 and 3 GMACs, two reference seeds. The hypervolumes below are
    the areas of the rectangles between each point and the reference point (lowest mean
    accuracy 0.55; 1.1 x 3 GMACs), worked out by hand."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from search_efficiency import shares

    groups = ["stem", "layer1.0"]
    accs = {("2d 2d", 1): (0.6, 0.5), ("2d 3d", 2): (0.8, 0.6), ("3d 3d", 3): (0.9, 0.9)}
    rows = [
        _row(p, "reference", seed, a[seed], groups, macs=g * 10**9, steps=12)
        for (p, g), a in accs.items()
        for seed in (0, 1)
    ]
    path = tmp_path / "t.csv"
    write_table(path, rows, groups, ["appearance"])
    table = read_table(path)
    places = ["2d 2d", "2d 3d", "3d 3d"]
    # the true front: (0.7, 2) and (0.9, 3) -> 0.15 x 1.3 + 0.35 x 0.3 - 0.15 x 0.3 = 0.255 (x 1e9)
    total = 0.255
    seen0 = frozenset({0})
    reported = {"2d 3d": (0.8, 2 * 10**9, seen0), "3d 3d": (0.9, 3 * 10**9, seen0)}
    true, claimed, held = shares(table, reported, places)
    assert true == pytest.approx(1.0)
    # claimed: (0.8, 2), (0.9, 3) -> 0.25 x 1.3 + 0.35 x 0.3 - 0.25 x 0.3 = 0.355
    assert claimed == pytest.approx(0.355 / total)
    # held out (seed 1 only): (0.6, 2), (0.9, 3) -> 0.05 x 1.3 + 0.35 x 0.3 - 0.05 x 0.3 = 0.155
    assert held == pytest.approx(0.155 / total)
    # a study that saw no reference run is judged by every seed: held out is the truth
    assert shares(table, {p: (r[0], r[1], frozenset()) for p, r in reported.items()}, places)[2] == pytest.approx(1.0)
    # one that drew both seeds of a placement leaves nothing to hold out
    assert shares(table, {**reported, "3d 3d": (0.9, 3 * 10**9, frozenset({0, 1}))}, places)[2] is None
    # a third seed still being built, held by "3d 3d" only: it holds that placement out of a study
    # that drew seeds 0 and 1 there, and leaves the truth (the complete seeds' mean) alone
    rows.append(_row("3d 3d", "reference", 2, 0.7, groups, macs=3 * 10**9, steps=12))
    write_table(path, rows, groups, ["appearance"])
    table = read_table(path)
    both = {"2d 3d": (0.8, 2 * 10**9, seen0), "3d 3d": (0.9, 3 * 10**9, frozenset({0, 1}))}
    true, claimed, held = shares(table, both, places)
    assert true == pytest.approx(1.0) and claimed == pytest.approx(0.355 / total)
    # held out: (0.6, 2) by seed 1 and (0.7, 3) by seed 2, over the nadir 0.55:
    # 0.05 x 1.3 + 0.1 x 0.3 = 0.095 (x 1e9)
    assert held == pytest.approx(0.095 / total)


def test_settings_that_take_every_run_the_table_holds_are_flagged(tmp_path):
    """A setting whose front reads every run the table holds of a placement at its top budget
    gets the same numbers in every replay: its spread over sampler seeds has no trainer luck in
    it, so the search benchmark flags it. Proxy (80 steps): 3 seeds; candidate (200): 1;
    reference (400): 2."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from search_efficiency import every_run_settings

    groups = ["stem", "layer1.0"]
    budgets = {"proxy": (80, 3), "proxy200": (200, 1), "reference": (400, 2)}
    rows = [
        _row(p, b, seed, 0.5, groups, steps=st)
        for p in ("2d 2d", "3d 3d")
        for b, (st, n) in budgets.items()
        for seed in range(n)
    ]
    path = tmp_path / "t.csv"
    write_table(path, rows, groups, ["appearance"])
    table = read_table(path)
    fill = {"steps": 80, "ref_steps": 400, "proxy_seeds": 3}
    rungs = '[fidelity]\nsteps = [{steps}, {ref_steps}]\npromote = "1/3"\n'
    settings = {
        "plain": ("tpe", "", "", 80),  # one of 3 seeds a placement
        "two of three": ("tpe", "repeats = 2\n", "", 80),
        "all three": ("tpe", "repeats = {proxy_seeds}\n", "", 80),
        "one of one": ("tpe", "", "", 200),  # the candidate holds one run a placement
        "rungs": ("tpe", "", rungs, 80),  # one of the 2 reference seeds at the top
        "rungs, both at the top": ("tpe", "", rungs + "seeds_at_top = 2\n", 80),
        "rungs to the candidate": ("tpe", "", '[fidelity]\nsteps = [80, 200]\npromote = "1/3"\n', 80),
        # seeds_at_top wins over repeats, as in the study config: one of the 2 reference seeds
        "repeats, one at the top": ("tpe", "repeats = 3\n", rungs + "seeds_at_top = 1\n", 80),
    }
    assert every_run_settings(table, settings, fill) == {
        "all three",
        "one of one",
        "rungs, both at the top",
        "rungs to the candidate",
    }


def test_promotion_ceiling_promotes_by_non_dominated_layers_cheapest_first(tmp_path):
    """The search benchmark's idealised two-stage search: every placement's proxy score, the k
    best by non-dominated sorting on (score, cost) (a layer cut short keeps its cheapest), one
    reference run each, the front of those judged by the reference. Four placements at 1-4
    GMACs; the reference is noise-free (both seeds agree): A 0.5, B 0.7, C 0.6, D 0.9. Proxy
    seed 0 scores B above C, seed 1 C above B; A is always lowest and D highest."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from search_efficiency import promotion_ceiling

    groups = ["stem", "layer1.0"]
    names = {"A": "2d 2d", "B": "2d 3d", "C": "3d 2d", "D": "3d 3d"}
    ref = {"A": 0.5, "B": 0.7, "C": 0.6, "D": 0.9}
    proxy = {0: {"A": 0.1, "B": 0.5, "C": 0.2, "D": 0.6}, 1: {"A": 0.1, "B": 0.2, "C": 0.5, "D": 0.6}}
    rows = []
    for i, (k, p) in enumerate(names.items()):
        for seed in (0, 1):
            rows.append(_row(p, "reference", seed, ref[k], groups, macs=(i + 1) * 10**9, steps=400))
            rows.append(_row(p, "proxy", seed, proxy[seed][k], groups, macs=(i + 1) * 10**9, steps=80))
    path = tmp_path / "t.csv"
    write_table(path, rows, groups, ["appearance"])
    table = read_table(path)
    places = list(names.values())
    # reference point: the lowest reference accuracy 0.5, 1.1 x 4 GMACs; the true front B, D:
    # 0.2 x 2.4 + 0.2 x 0.4 = 0.56 (x 1e9), of which B alone holds 0.48
    # B is always on the first layer (only A is cheaper, and scores lower); C joins it only when
    # it drew seed 1 and B seed 1 too (1 in 4; B at 0.5 would dominate C at 0.5 or 0.2), and then k=3 promotes A, B, C (cheapest first) and
    # misses D: 0.48 / 0.56; otherwise A, B, D: the whole front
    got = promotion_ceiling(table, places, ks=(1, 2, 3, 4), draws=4000, seed=1)
    assert got[1] == pytest.approx((0.0, 0.0, 4 + 5))  # A alone lies on the accuracy floor
    assert got[2] == pytest.approx((0.48 / 0.56, 0.0, 4 + 10))  # A, B
    mean3, sd3, work3 = got[3]
    expected = 0.75 * 1.0 + 0.25 * 0.48 / 0.56
    assert mean3 == pytest.approx(expected, abs=0.005)
    assert sd3 == pytest.approx(math.sqrt(0.25 * 0.75) * (1 - 0.48 / 0.56), abs=0.005)
    assert work3 == 4 + 15
    assert got[4][:2] == pytest.approx((1.0, 0.0))  # every placement promoted


def test_curve_means_average_each_runs_evaluations_then_the_seeds(tmp_path):
    """A run's curve mean is the mean of its held-out evaluations; over seeds, their mean. Seed
    0 evaluates 0.2, 0.4, 0.6 (mean 0.4), seed 1 0.3, 0.5 (mean 0.4 too, over fewer points):
    0.4 either way; a placement lacking a seed is an error, as for mean_of_seeds."""
    groups = ["stem", "layer1.0"]
    rows = [
        _row("2d 2d", "proxy", 0, 0.6, groups, curve=[[2, 0.2], [4, 0.4], [6, 0.6]]),
        _row("2d 2d", "proxy", 1, 0.5, groups, curve=[[3, 0.3], [6, 0.5]]),
        _row("3d 3d", "proxy", 0, 0.9, groups, curve=[[3, 0.5], [6, 0.9]]),
    ]
    path = tmp_path / "t.csv"
    write_table(path, rows, groups, ["appearance"])
    table = read_table(path)
    assert curve_means(table, ["2d 2d"], "proxy", [0]) == pytest.approx([0.4])
    assert curve_means(table, ["2d 2d"], "proxy", [0, 1]) == pytest.approx([0.4])
    assert curve_means(table, ["2d 2d", "3d 3d"], "proxy", [0]) == pytest.approx([0.4, 0.7])
    with pytest.raises(KeyError):
        curve_means(table, ["3d 3d"], "proxy", [0, 1])
