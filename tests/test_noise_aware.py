"""Noise-aware results: repeats, rungs and promotion, per-placement grouping, ``promote``.

Studies here replay a handmade ground-truth table (the table evaluator), so every expected
number is known in advance: a placement's accuracy at each budget and seed is a formula.
"""

from __future__ import annotations

import itertools
import math
import statistics
import subprocess
import sys
import warnings
from pathlib import Path

import optuna
import pytest
from search_helpers import sqlite_url, write_study
from test_table import _row, two_kind_space

from placement_search.errors import UserError
from placement_search.space import load_space
from placement_search.study import SearchDriver, load_study_config
from placement_search.study.config import Fidelity, stored_study_config
from placement_search.study.estimates import (
    Estimate,
    estimates,
    front_estimates,
    front_hypervolume,
    pooled_sd,
    shared_seed_noise,
)
from placement_search.study.ladder import Ladder, Run
from placement_search.study.records import run_fields, trial_attrs, write_started
from placement_search.study.storage import open_storage, pareto_rows, study_status
from placement_search.table import write_table

#: trainer seed -> its offset from a placement's mean accuracy (mean 0: the seeds' mean is the base)
OFFSET = {0: -0.03, 1: 0.0, 2: 0.03}


def proxy_acc(p: str) -> float:
    t = [c == "3d" for c in p.split()]
    return 0.2 + 0.3 * t[0] + 0.25 * t[4] + 0.02 * sum(t[1:4])


def ref_acc(p: str) -> float:
    """At the long budget a temporal op in the middle helps too (the proxy underrates it)."""
    t = [c == "3d" for c in p.split()]
    return proxy_acc(p) + 0.1 * t[2]


@pytest.fixture()
def replay(tmp_path):
    """A 2-kind space (32 placements), a table with 3 seeds at 6 steps and at 12 steps, and a
    function writing a study that replays it."""
    space_file = two_kind_space(tmp_path)
    space = load_space(str(space_file))
    groups = [g.name for g in space.groups]
    rows = []
    for combo in itertools.product(["2d", "3d"], repeat=5):
        p = " ".join(combo)
        for seed, d in OFFSET.items():
            rows.append(_row(p, "proxy", seed, round(proxy_acc(p) + d, 6), groups))
            rows.append(_row(p, "reference", seed, round(ref_acc(p) + d, 6), groups, steps=12))
    table = tmp_path / "hand.csv"
    write_table(table, rows, groups, ["appearance"])

    def study(
        *, trials: int, top: str = "", extra: str = "", sampler: str = "grid", name: str = "small", first=None
    ) -> Path:
        text = write_study(
            tmp_path, name=name, sampler=sampler, trials=trials, extra=extra, evaluate_first=first
        ).read_text()
        text = text.replace('space = "tiny"', f'space = "{space_file}"').replace(
            "[proxy]\n", f'[proxy]\nevaluator = "table:{table.name}"\n'
        )
        if top:
            text = text.replace("seed = 0\n", f"seed = 0\n{top}\n", 1)
        if "[fidelity]" in extra:
            text = text.replace("steps = 6\n", "", 1)
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        return path

    return study


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``placement-search ARGS`` in a subprocess, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "placement_search", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def _study(url: str, name: str = "small") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url, create=False))


def _runs(st: optuna.Study) -> list[tuple[str, int, int, str, str]]:
    out = []
    for t in st.trials:
        ua = trial_attrs(t)
        steps, seed, kind = run_fields(ua)
        out.append((ua.get("placement_string"), steps, seed, kind, ua.get("status")))
    return out


# -- the ladder's rule, by hand ---------------------------------------------------------------


def test_ladder_promotes_the_front_first_within_its_quota():
    """Six placements at rung 0 with promote 1/3: two go up. Costs and accuracies chosen so
    that the front is {a (cheap), d (accurate)}; b is dominated by a, c by d."""
    lad = Ladder(Fidelity(steps=(10, 30), promote=1 / 3), base_seed=0)
    accs = {"a": 0.50, "b": 0.45, "c": 0.70, "d": 0.80, "e": 0.30, "f": 0.20}
    costs = {"a": [1.0], "b": [2.0], "c": [5.0], "d": [4.0], "e": [3.0], "f": [6.0]}
    runs = {k: [Run(10, 0, "ok", a)] for k, a in accs.items()}
    first = lad.next(runs, costs)
    assert first is not None and first.kind == "promotion" and first.steps == 30 and first.seed == 0
    taken = {(first.key, 30, 0)}
    second = lad.next(runs, costs, taken)
    assert second is not None
    assert {first.key, second.key} == {"a", "d"}  # the two non-dominated ones
    taken.add((second.key, 30, 0))
    assert lad.next(runs, costs, taken) is None  # quota floor(6 / 3) = 2 reached


def test_ladder_waits_for_enough_runs_and_fills_seeds_at_the_top():
    lad = Ladder(Fidelity(steps=(10, 30), promote=1 / 3, seeds_at_top=3), base_seed=5)
    costs = {"a": [1.0], "b": [2.0]}
    runs = {"a": [Run(10, 5, "ok", 0.5)], "b": [Run(10, 5, "ok", 0.4)]}
    assert lad.next(runs, costs) is None  # floor(2 / 3) = 0: nothing promoted yet
    runs["a"].append(Run(30, 5, "ok", 0.6))  # a reached the top: seeds 6 and 7 there follow
    fu = lad.next(runs, costs)
    assert (fu.key, fu.steps, fu.seed, fu.kind) == ("a", 30, 6, "repeat")
    fu2 = lad.next(runs, costs, {("a", 30, 6)})
    assert (fu2.key, fu2.seed) == ("a", 7)
    assert lad.next(runs, costs, {("a", 30, 6), ("a", 30, 7)}) is None


def test_ladder_margin_auto_is_the_seed_noise_at_the_top():
    lad = Ladder(Fidelity(steps=(10, 30), promote=0.5, margin=None), base_seed=0)
    runs = {
        "a": [Run(30, 0, "ok", 0.50), Run(30, 1, "ok", 0.60)],  # variance 0.005
        "b": [Run(30, 0, "ok", 0.40), Run(30, 1, "ok", 0.50), Run(30, 2, "ok", 0.60)],  # variance 0.01
        "c": [Run(10, 0, "ok", 0.3)],
    }
    # pooled over degrees of freedom: (0.005 x 1 + 0.01 x 2) / 3
    assert lad.margin(runs) == pytest.approx(math.sqrt((0.005 + 0.02) / 3))
    # with a margin, a placement just behind the front shares its rank
    lad2 = Ladder(Fidelity(steps=(10, 30), promote=0.5, margin=0.05), base_seed=0)
    runs2 = {
        "x": [Run(10, 0, "ok", 0.80)],
        "y": [Run(10, 0, "ok", 0.78)],
        "z": [Run(10, 0, "ok", 0.50)],
        "w": [Run(10, 0, "ok", 0.40)],
    }
    costs2 = {"x": [1.0], "y": [1.0], "z": [1.0], "w": [1.0]}
    got = set()
    taken: set = set()
    while (fu := lad2.next(runs2, costs2, taken)) is not None:
        got.add(fu.key)
        taken.add((fu.key, 30, 0))
    assert got == {"x", "y"}  # quota 2: x, and y within 0.05 of it (z, w are not)


# -- grouping ----------------------------------------------------------------------------------


def test_estimates_mean_se_and_top_budget_front():
    """Trials made by hand: A has 3 runs at 12 steps, B one at 12, C only at 6 steps (better
    than both): C is a candidate, not on the front."""
    st = optuna.create_study(directions=["maximize", "minimize"])
    with warnings.catch_warnings():  # Optuna marks set_metric_names experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        st.set_metric_names(["accuracy", "macs"])
    dist = {"x": optuna.distributions.CategoricalDistribution(["A", "B", "C"])}

    def add(name, acc, macs, steps, seed):
        placement = {"schema_version": 1, "backbone": "tiny", "choices": {"stem": {"kind": name}}}
        st.add_trial(
            optuna.trial.create_trial(
                params={"x": name},
                distributions=dist,
                values=[acc, macs],
                user_attrs={
                    "placement": placement,
                    "placement_string": name,
                    "macs": macs,
                    "status": "ok",
                    "budget_steps": steps,
                    "trainer_seed": seed,
                },
            )
        )

    for seed, acc in enumerate([0.5, 0.6, 0.7]):
        add("A", acc, 100, 12, seed)
    add("A", 0.3, 100, 6, 0)
    add("B", 0.55, 50, 12, 0)
    add("C", 0.99, 10, 6, 0)
    ests = estimates(st.trials, st.metric_names)
    a = next(e for e in ests.values() if e.placement_string == "A")
    assert a.mean == pytest.approx(0.6) and a.n == 3 and a.steps == 12
    assert a.se == pytest.approx(0.1 / math.sqrt(3))  # stdev 0.1 of (0.5, 0.6, 0.7), over sqrt(3)
    assert a.runs_by_steps == {6: 1, 12: 3}
    front = {e.placement_string for e in front_estimates(ests, ["maximize", "minimize"])}
    assert front == {"A", "B"}  # C was only seen at 6 steps
    # seed noise: only A has several runs at its top budget: variance 0.01 over 2 degrees of freedom
    assert pooled_sd(ests) == (pytest.approx(0.1), 1)
    add("B", 0.75, 50, 12, 1)  # B: (0.55, 0.75), variance 0.02, 1 degree of freedom
    assert pooled_sd(estimates(st.trials, st.metric_names)) == (pytest.approx(math.sqrt((0.02 + 0.02) / 3)), 2)


def _est(name: str, accs: list[float], macs: float, steps: int = 12) -> Estimate:
    mean = statistics.fmean(accs)
    se = statistics.stdev(accs) / math.sqrt(len(accs)) if len(accs) > 1 else None
    return Estimate(name, name, steps, mean, se, accs, list(range(len(accs))), [mean, macs], {"macs": macs})


def test_front_hypervolume_is_not_corrected_without_measured_noise():
    # one run each at the top budget (two runs at a lower budget do not measure the noise there)
    ests = {e.key: e for e in (_est("A", [0.8], 10), _est("B", [0.6], 5), _est("C", [0.9, 0.7], 1, steps=6))}
    fh = front_hypervolume(ests, ["maximize", "minimize"], [0.0, 20.0], ["accuracy", "macs"])
    # the staircase by hand: B (0.6, 5) up to cost 20 and A's extra 0.2 from cost 10 to 20
    assert fh.value == pytest.approx(0.6 * 15 + 0.2 * 10)
    assert fh.corrected is None and fh.bias is None and fh.noise_sd is None and fh.steps == 12


def test_front_hypervolume_of_one_placement_has_no_selection_to_correct():
    # a single placement: the hypervolume is linear in its accuracy, so the redraws' mean is the
    # value itself, up to Monte Carlo (and a correction is never upwards)
    ests = {"A": _est("A", [0.4, 0.5, 0.6, 0.5], 2.0)}
    fh = front_hypervolume(ests, ["maximize", "minimize"], [0.0, 4.0], ["accuracy", "macs"], draws=4000)
    assert fh.value == pytest.approx(0.5 * 2.0)
    assert fh.noise_sd == pytest.approx(math.sqrt(0.02 / 3)) and fh.noise_placements == 1 and fh.dof == 3
    assert fh.corrected is not None and fh.value - 0.01 <= fh.corrected <= fh.value


def test_front_hypervolume_needs_three_degrees_of_freedom_of_noise():
    # two placements with two runs each: 2 degrees of freedom, too rough a noise to correct by
    ests = {e.key: e for e in (_est("A", [0.7, 0.8], 10), _est("B", [0.5, 0.7], 5))}
    fh = front_hypervolume(ests, ["maximize", "minimize"], [0.0, 20.0], ["accuracy", "macs"])
    assert fh.corrected is None and fh.dof == 2 and fh.noise_placements == 2
    assert fh.noise_sd == pytest.approx(math.sqrt((0.005 + 0.02) / 2))


def test_front_hypervolume_reads_accuracy_where_it_is_and_any_number_of_costs():
    # the same study with accuracy second and a third objective equal for every placement: the
    # hypervolume (and its correction, the same redraws) is the 2-objective one x that side
    def est3(e: Estimate) -> Estimate:
        return Estimate(e.key, e.key, e.steps, e.mean, e.se, e.accuracies, e.trials, [e.values[1], e.mean, 2.0], {})

    two = {
        e.key: e
        for e in (
            _est("A", [0.7, 0.8, 0.75], 10),
            _est("B", [0.5, 0.7], 5),
            _est("C", [0.72, 0.74], 6),
            _est("D", [0.3], 1),
        )
    }
    three = {k: est3(e) for k, e in two.items()}
    fh2 = front_hypervolume(two, ["maximize", "minimize"], [0.0, 20.0], ["accuracy", "macs"])
    fh3 = front_hypervolume(
        three, ["minimize", "maximize", "minimize"], [20.0, 0.0, 5.0], ["macs", "accuracy", "params"]
    )
    assert fh2.corrected is not None and fh2.dof == 4
    assert fh3.value == pytest.approx(fh2.value * 3.0) and fh3.corrected == pytest.approx(fh2.corrected * 3.0)
    assert fh2.corrected < fh2.value  # A, B and C overlap within their noise: a real selection


def test_front_hypervolume_corrects_the_expected_maximum_of_two_equal_placements():
    # two placements of equal cost and equal mean accuracy mu: the hypervolume is
    # (max of their means) x the cost width, and for two independent normal means with standard
    # error s, E[max] = mu + s / sqrt(pi). Fifty runs each pin the noise (98 degrees of freedom).
    # A cheaper placement C far below them adds its own (linear, unbiased) area, and a far
    # dominated, dearer one D adds nothing.
    runs = [0.6 + (0.05 if i % 2 else -0.05) for i in range(50)]
    ests = {k: _est(k, runs, 1.0) for k in ("A", "B")}
    ests["C"] = _est("C", [a - 0.5 for a in runs], 0.5)
    ests["D"] = _est("D", [0.05], 2.0)
    fh = front_hypervolume(ests, ["maximize", "minimize"], [0.0, 3.0], ["accuracy", "macs"], draws=4000)
    s = statistics.stdev(runs) / math.sqrt(50)
    assert fh.value == pytest.approx(0.1 * 2.5 + 0.5 * 2.0)
    assert fh.bias == pytest.approx(2.0 * s / math.sqrt(math.pi), rel=0.08)
    assert fh.corrected == pytest.approx(fh.value - 2.0 * s / math.sqrt(math.pi), abs=2.0 * s * 0.08)
    # deterministic for a seed
    again = front_hypervolume(ests, ["maximize", "minimize"], [0.0, 3.0], ["accuracy", "macs"], draws=4000)
    assert again == fh


def test_front_noise_leaves_out_seed_offsets_common_to_every_placement():
    # four placements, each run with seeds 0 and 1; seed 1 lifts every placement by 0.2
    accs = {"A": (0.50, 0.71), "B": (0.60, 0.79), "C": (0.55, 0.76), "D": (0.40, 0.60)}
    pool = []
    for i, (k, (a0, a1)) in enumerate(accs.items()):
        e = _est(k, [a0, a1], 1.0 + i)
        e.seeds = [0, 1]
        pool.append(e)
    # balanced two-seed design: the residual variance is the variance of the paired differences / 2
    diffs = [a1 - a0 for a0, a1 in accs.values()]
    sd, dof, k = shared_seed_noise(pool)
    assert sd == pytest.approx(math.sqrt(statistics.variance(diffs) / 2)) and dof == 3 and k == 4
    pooled = pooled_sd({e.key: e for e in pool})
    assert pooled is not None and pooled[0] > 10 * sd  # the 0.2 offset dominates the plain pooled noise
    fh = front_hypervolume({e.key: e for e in pool}, ["maximize", "minimize"], [0.0, 6.0], ["accuracy", "macs"])
    assert fh.shared_seeds and fh.noise_sd == pytest.approx(sd) and fh.dof == 3
    # seeds drawn apart (as the table's replays do): the plain pooled noise
    pool[0].seeds = [1, 2]
    assert shared_seed_noise(pool) is None
    fh = front_hypervolume({e.key: e for e in pool}, ["maximize", "minimize"], [0.0, 6.0], ["accuracy", "macs"])
    assert not fh.shared_seeds and fh.noise_sd == pytest.approx(pooled[0]) and fh.dof == 4


def test_old_trials_read_as_their_proxy_budget():
    assert run_fields({"proxy_budget": {"steps": 80, "seed": 3}}) == (80, 3, "sampled")
    assert run_fields({"budget_steps": 400, "trainer_seed": 1, "run_kind": "promotion"}) == (400, 1, "promotion")


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, match",
    [
        ("[fidelity]\nsteps = [12, 6]\n", "ascending"),
        ("[fidelity]\nsteps = []\n", "ascending"),
        ("[fidelity]\nsteps = [1, 6]\n", "warmup_steps"),
        ('[fidelity]\nsteps = [6, 12]\npromote = "3/2"\n', "share"),
        ("[fidelity]\nsteps = [6, 12]\npromote = 0\n", "share"),
        ("[fidelity]\nsteps = [6, 12]\nseeds_at_top = 0\n", "seeds_at_top"),
        ('[fidelity]\nsteps = [6, 12]\nmargin = "wide"\n', "margin"),
        ("[fidelity]\nsteps = [6, 12]\nrungs = 3\n", "rungs"),
    ],
)
def test_fidelity_errors(tmp_path, extra, match):
    path = write_study(tmp_path, extra=extra)
    path.write_text(path.read_text().replace("steps = 6\n", "", 1))
    with pytest.raises(UserError, match=match):
        load_study_config(path)


def test_fidelity_and_proxy_steps_must_agree(tmp_path):
    with pytest.raises(UserError, match=r"\[proxy\] steps = 6"):
        load_study_config(write_study(tmp_path, extra="[fidelity]\nsteps = [8, 16]\n"))
    path = write_study(tmp_path)
    path.write_text(path.read_text().replace("seed = 0\n", "seed = 0\nrepeats = 0\n", 1))
    with pytest.raises(UserError, match="repeats"):
        load_study_config(path)


def test_fidelity_parses_and_the_stored_config_reads_back(tmp_path):
    path = write_study(
        tmp_path, extra='[fidelity]\nsteps = [6, 12, 24]\npromote = "1/4"\nseeds_at_top = 2\nmargin = "auto"\n'
    )
    path.write_text(path.read_text().replace("steps = 6\n", "", 1))
    cfg = load_study_config(path)
    assert cfg.fidelity == Fidelity(steps=(6, 12, 24), promote=0.25, seeds_at_top=2, margin=None)
    assert cfg.proxy.steps == 6 and cfg.runs_per_placement
    import json

    back = stored_study_config(json.loads(json.dumps(cfg.to_dict(), default=str)), "test")
    assert back.fidelity == cfg.fidelity and back.identity() == cfg.identity()


# -- whole studies against the table --------------------------------------------------------------


def test_repeats_give_every_placement_distinct_seeds_and_the_mean(replay, tmp_path):
    study = replay
    url = sqlite_url(tmp_path)
    cfg = load_study_config(study(trials=24, top="repeats = 3"))
    r = SearchDriver(cfg, storage=url, executor="inline").run()
    assert r.counted == 24  # 8 placements x 3 seeds
    st = _study(url)
    by_p: dict[str, list[int]] = {}
    for p, steps, seed, _kind, status in _runs(st):
        assert steps == 6 and status == "ok"
        by_p.setdefault(p, []).append(seed)
    assert len(by_p) == 8 and all(sorted(s) == [0, 1, 2] for s in by_p.values())
    # each run records the table row that answered it: its accuracy is that seed's offset
    table_seeds: dict[str, list[int]] = {}
    for t in st.get_trials():
        ua = trial_attrs(t)
        assert ua["accuracy"] == pytest.approx(proxy_acc(ua["placement_string"]) + OFFSET[ua["table_seed"]])
        table_seeds.setdefault(ua["placement_string"], []).append(ua["table_seed"])
    assert all(sorted(s) == [0, 1, 2] for s in table_seeds.values())
    for row in pareto_rows(st):
        # the table's three seeds: base - 0.03, base, base + 0.03 -> mean base, s.e. 0.03 / sqrt(3)
        assert row["runs"] == 3 and row["steps"] == 6
        assert row["accuracy"] == pytest.approx(proxy_acc(row["placement"]))
        assert row["accuracy_se"] == pytest.approx(0.03 / math.sqrt(3))


def test_pareto_says_which_front_placements_ran_once(replay, tmp_path):
    from placement_search.cli.study import reliability

    study = replay
    url = sqlite_url(tmp_path)
    # 11 runs with two seeds a placement: five placements twice, the sixth once (on the front,
    # for this seed: the sampler and the inline executor are deterministic)
    cfg = load_study_config(study(trials=11, top="repeats = 2", sampler="random"))
    SearchDriver(cfg, storage=url, executor="inline").run()
    st = _study(url)
    rows = pareto_rows(st)
    once = [r for r in rows if r["runs"] == 1]
    text = reliability(st, rows, "--study small")
    assert "one run's accuracy varies by" in text
    assert len(once) == 1 and len(rows) == 2
    assert "1 of the front's 2 placements ran once at their budget" in text and "promote --study small" in text
    # the same study with every front placement repeated says nothing of single runs
    assert "ran once" not in reliability(st, [r for r in rows if r["runs"] > 1], "--study small")
    # and `pareto` says it under its table
    out = _cli(tmp_path, "pareto", "--storage", url, "--study", "small")
    assert out.returncode == 0 and "1 of the front's 2 placements ran once" in out.stdout


def test_families_with_repeats_train_each_named_placement_with_every_seed_and_nothing_else(replay, tmp_path):
    study = replay
    url = sqlite_url(tmp_path)
    cfg = load_study_config(study(trials=30, top="repeats = 3", sampler="families", first=["all_2d", "all_3d"]))
    r = SearchDriver(cfg, storage=url, executor="inline").run()
    assert r.stop_reason.startswith("every placement of evaluate_first")
    runs = sorted((p, seed) for p, _, seed, _, _ in _runs(_study(url)))
    assert runs == [(p, s) for p in ("2d 2d 2d 2d 2d", "3d 3d 3d 3d 3d") for s in (0, 1, 2)]


def test_promotion_trains_the_rung_front_at_the_top_and_reports_only_the_top(replay, tmp_path):
    study = replay
    url = sqlite_url(tmp_path)
    extra = '[fidelity]\nsteps = [6, 12]\npromote = "1/4"\nseeds_at_top = 2\n'
    cfg = load_study_config(study(trials=64, extra=extra))
    r = SearchDriver(cfg, storage=url, executor="inline").run()
    st = _study(url)
    runs = _runs(st)
    low = {p for p, s, _, k, st_ in runs if s == 6 and st_ == "ok"}
    high = {p for p, s, _, _, st_ in runs if s == 12}
    assert high and high <= low  # only placements seen at the lowest rung go up
    assert len(high) <= math.floor(len(low) / 4)  # the quota
    for p in high:  # two seeds at the top, distinct
        assert sorted(sd for q, s, sd, _, _ in runs if q == p and s == 12) == [0, 1]
    # the work counted: runs at 12 steps count 2
    work = sum(2 if s == 12 else 1 for _, s, _, _, st_ in runs if st_ == "ok")
    assert study_status(st)["work"] == pytest.approx(work) and r.counted == len([x for x in runs if x[4] == "ok"])
    assert 64 <= work <= 65  # the budget, overshot by at most the last run's extra work
    # the reported front: placements at 12 steps only, means of the two table seeds there
    rows = pareto_rows(st)
    assert rows and all(row["steps"] == 12 and row["runs"] == 2 for row in rows)
    for row in rows:  # two distinct table seeds (offsets from -0.03, 0, +0.03), and their mean
        offs = [trial_attrs(t)["accuracy"] - ref_acc(row["placement"]) for t in st.trials if t.number in row["trials"]]
        assert len({round(o, 6) for o in offs}) == 2 and all(
            min(abs(o - d) for d in OFFSET.values()) < 1e-6 for o in offs
        )
        assert row["accuracy"] == pytest.approx(ref_acc(row["placement"]) + statistics.fmean(offs))
        assert row["accuracy_se"] == pytest.approx(statistics.stdev(offs) / math.sqrt(2))
    # each promotion took a placement that no other placement still waiting at the lowest rung
    # dominated (accuracy there vs exact MACs), among the runs finished when it was made (the
    # inline executor runs one trial at a time, in number order)
    seen: dict[str, tuple[float, int]] = {}
    up: set[str] = set()
    for t in sorted(st.trials, key=lambda t: t.number):
        ua = trial_attrs(t)
        steps, _, kind = run_fields(ua)
        if kind == "promotion":
            p = ua["placement_string"]
            a, m = seen[p]
            rivals = [(a2, m2) for q, (a2, m2) in seen.items() if q not in up and q != p]
            assert not any(a2 >= a and m2 <= m and (a2 > a or m2 < m) for a2, m2 in rivals), p
            up.add(p)
        elif steps == 6 and ua.get("status") == "ok":
            seen[ua["placement_string"]] = (ua["accuracy"], ua["macs"])
    assert up == high


def test_resume_during_promotion_and_after_a_dead_driver(replay, tmp_path):
    study = replay
    url = sqlite_url(tmp_path)
    extra = '[fidelity]\nsteps = [6, 12]\npromote = "1/2"\n'
    path = study(trials=20, extra=extra)
    SearchDriver(load_study_config(path), storage=url, executor="inline").run()
    st = _study(url)
    promoted = [t for t in st.trials if trial_attrs(t).get("run_kind") == "promotion"]
    assert promoted, "the first sitting promoted something"
    # a driver killed while a promotion ran leaves it RUNNING: write one such trial by hand
    src = promoted[0]
    ua = {k: v for k, v in src.user_attrs.items() if k != "result"}
    ua.update(status="running", trainer_seed=1, run_kind="repeat")
    storage = open_storage(url, create=False)
    from optuna.trial import TrialState

    write_started(
        storage,
        st._study_id,
        state=TrialState.RUNNING,
        params=src.params,
        distributions=src.distributions,
        user_attrs=ua,
        system_attrs={},
    )
    r = SearchDriver(load_study_config(path), storage=url, trials=40, executor="inline").run()
    assert r.recovered == 1
    st = _study(url)
    runs = _runs(st)
    done = [(p, s, sd) for p, s, sd, _, status in runs if status == "ok"]
    assert len(done) == len(set(done))  # no run trained twice
    p0 = trial_attrs(src)["placement_string"]
    assert (p0, 12, 1) in done  # the dead driver's run, queued again as the same run
    assert not [t for t in st.trials if t.state == TrialState.RUNNING]


def test_promote_command_re_evaluates_the_front(replay, tmp_path):
    study = replay
    url = sqlite_url(tmp_path)
    path = study(trials=12, sampler="random")
    SearchDriver(load_study_config(path), storage=url, executor="inline").run()
    before = pareto_rows(_study(url))
    assert before and all(r["runs"] == 1 and r["steps"] == 6 for r in before)
    # one run a placement: the claim stands uncorrected, and `status` says why
    assert study_status(_study(url))["front_hypervolume"]["corrected"] is None
    status = _cli(tmp_path, "status", "--storage", url, "--study", "small")
    assert status.returncode == 0 and "not corrected for the front's luck: no placement has two runs" in status.stdout
    cmd = [sys.executable, "-m", "placement_search", "promote", "--storage", url, "--study", "small"]
    out = subprocess.run(
        [*cmd, "--top", "3", "--seeds", "2", "--steps", "12", "--ray-address", "local"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("queued: ") == 6
    st = _study(url)
    rows = pareto_rows(st)
    assert rows and all(r["steps"] == 12 and r["runs"] == 2 for r in rows)
    for r in rows:  # seeds drawn in turn from the table: two distinct ones of (-0.03, 0, +0.03)
        accs = [trial_attrs(t)["accuracy"] - ref_acc(r["placement"]) for t in st.trials if t.number in r["trials"]]
        assert len({round(a, 6) for a in accs}) == 2
        assert r["accuracy"] == pytest.approx(ref_acc(r["placement"]) + statistics.fmean(accs))
    assert "± " in out.stdout and "runs" in out.stdout
    assert "reliability: one run's accuracy varies by" in out.stdout
    # the front's hypervolume: by the means (a staircase worked here), and corrected, now that
    # two runs a placement at the top measure the seed noise there
    claim = study_status(st)["front_hypervolume"]
    ceiling = 1.1 * max(trial_attrs(t)["macs"] for t in st.trials if t.values)
    area, best = 0.0, 0.0
    for r in sorted(rows, key=lambda r: r["macs"]):  # cheapest first: each adds its accuracy gain
        area += (r["accuracy"] - best) * (ceiling - r["macs"])
        best = max(best, r["accuracy"])
    assert claim["hypervolume"] == pytest.approx(area / ceiling)
    assert claim["steps"] == 12
    # which table seeds answered the three placements' two runs at 12 steps
    drawn = {frozenset(trial_attrs(t)["table_seed"] for t in st.trials if t.number in r["trials"]) for r in rows}
    if len(drawn) == 1:
        # the same two seeds for every placement: the table's offsets are common to all, no luck
        # (residual noise 0), and 3 placements x 2 seeds leave (3 - 1)(2 - 1) = 2 degrees of freedom
        assert claim["shared_seeds"] and claim["dof"] == 2 and claim["noise_sd"] == pytest.approx(0.0, abs=1e-9)
        assert claim["corrected"] is None
        assert "measured on 2 degrees of freedom" in out.stdout and "--top 3 --seeds 2" in out.stdout
    else:  # seeds apart: the plain pooled noise, 3 degrees of freedom
        assert not claim["shared_seeds"] and claim["dof"] == 3
        assert claim["corrected"] is not None and claim["corrected"] <= claim["hypervolume"]
        assert f"{claim['corrected']:.4f} corrected for the luck" in out.stdout
    assert f"front hypervolume: {claim['hypervolume']:.4f}" in out.stdout
    assert st.user_attrs["target_trials"] == 12  # the search's own budget, not promote's
    # asking again queues nothing new
    again = subprocess.run(
        [*cmd, "--top", "3", "--seeds", "2", "--steps", "12", "--no-run"], capture_output=True, text=True, cwd=tmp_path
    )
    assert again.returncode == 0 and "nothing to queue" in again.stdout
    bad = subprocess.run([*cmd, "--top", "3", "--steps", "6"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode != 0 and "top budget is already 12" in bad.stderr and "Traceback" not in bad.stderr


# -- the cost-aware sampler ---------------------------------------------------------------------


def test_costaware_fills_the_cost_axis_then_never_repeats_or_breaks_a_budget(replay, tmp_path):
    study = replay
    url = sqlite_url(tmp_path)
    path = study(trials=20, sampler="costaware")
    cfg = load_study_config(path)
    space = load_space(cfg.space)
    costs = space.costs(frames=16, size=112, num_classes=400)
    macs = {
        " ".join(c): costs.cost(space.from_group_tokens(list(c)))[0] for c in itertools.product(["2d", "3d"], repeat=5)
    }
    budget = sorted(macs.values())[20]  # 21 placements within it
    path.write_text(path.read_text() + f"\n[constraints]\nmax_macs = {budget}\n")
    r = SearchDriver(load_study_config(path), storage=url, executor="inline").run()
    assert r.by_status.get("infeasible", 0) == 0 and "repeat" not in r.by_status
    st = _study(url)
    order = [trial_attrs(t)["placement_string"] for t in sorted(st.trials, key=lambda t: t.number)]
    feasible = {p for p, m in macs.items() if m <= budget}
    assert set(order) <= feasible and len(order) == len(set(order)) == 20
    # the first proposal is the cheapest placement, the second the dearest within the budget
    assert macs[order[0]] == min(macs.values())
    assert macs[order[1]] == max(macs[p] for p in feasible)


def test_costaware_model_finds_the_best_placement_of_an_additive_accuracy():
    """Accuracy additive in the choices (81 placements), every cost equal: right after the
    start-up (8 proposals), the model's optimism must pick the one best placement, all-"c"
    (uniform sampling would need about 40 proposals on average)."""
    from placement_search.study.costaware import CostAwareSampler

    groups = {f"g{i}": ["a", "b", "c"] for i in range(4)}
    gain = {"a": 0.0, "b": 0.05, "c": 0.1}
    for seed in range(3):
        sampler = CostAwareSampler(groups, lambda p: ([1.0e6], True), seed=seed, n_startup_trials=8)
        st = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        dists = {g: optuna.distributions.CategoricalDistribution(tuple(t)) for g, t in groups.items()}
        found = None
        for i in range(12):
            t = st.ask(dists)
            p = {g: t.params[g] for g in groups}
            st.tell(t, [0.3 + sum(gain[v] for v in p.values()), 1.0e6])
            if all(v == "c" for v in p.values()):
                found = i
                break
        assert found is not None and found >= 8, (seed, found)


def test_front_of_a_study_with_budgets_and_promote_on_an_exhausted_space(replay, tmp_path):
    """Constraints (Optuna keeps them as a dict) do not break the per-placement front; queued
    runs are trained even when every placement of the space has been evaluated."""
    from placement_search.study.promote import queue_promotions

    study = replay
    url = sqlite_url(tmp_path)
    path = study(trials=32, extra="[constraints]\nmax_macs = 1e15\n")
    cfg = load_study_config(path)
    SearchDriver(cfg, storage=url, executor="inline").run()
    st = _study(url)
    rows = pareto_rows(st)
    assert rows and all(r["runs"] == 1 for r in rows)
    queued = queue_promotions(st, cfg, load_space(cfg.space), top=2, seeds=2)
    assert len(queued) == 2  # seed 1 for each (seed 0 ran)
    r = SearchDriver(cfg, storage=url, executor="inline", trials=34, queued_only=True).run()
    assert r.stop_reason == "every queued run has been dispatched"
    st = _study(url)
    assert not [t for t in st.trials if t.state.name == "WAITING"]
    assert sum(1 for row in pareto_rows(st) if row["runs"] == 2) >= 1


def test_ladder_does_not_ask_again_for_a_run_over_a_latency_budget():
    lad = Ladder(Fidelity(steps=(10,), promote=1.0, seeds_at_top=2), base_seed=0)
    runs = {"a": [Run(10, 0, "ok", 0.5), Run(10, 1, "infeasible")]}
    assert lad.next(runs, {"a": [1.0]}) is None


def test_promote_reads_the_space_the_study_stored_not_the_file(replay, tmp_path, ray_local, capsys):
    """The space file has moved since the search: promote builds the study's space from the text
    the study stored, as export does."""
    from placement_search.cli import main

    url = sqlite_url(tmp_path)
    path = replay(trials=8, sampler="random")
    cfg = load_study_config(path)
    SearchDriver(cfg, storage=url, executor="inline").run()
    Path(cfg.space).rename(Path(cfg.space).with_suffix(".moved"))
    assert main(["promote", "--storage", url, "--study", "small", "--top", "2", "--seeds", "2"]) == 0
    assert capsys.readouterr().out.count("queued: ") == 2  # a second seed for each of the two
    rows = pareto_rows(_study(url))
    assert any(r["runs"] == 2 for r in rows)
