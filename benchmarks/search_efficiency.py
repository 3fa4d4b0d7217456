"""How good is the front a search reports, after how many trials? Replayed on the ground truth.

Each study runs the real driver (samplers, early stopping, dedup, SQLite storage, Ray workers)
with the table evaluator: a worker looks each placement up in the committed table
(``benchmarks/tables/tiny_sub243.csv``) at the proxy budget, with a trainer seed drawn per trial
(from the replay's seed: each replay has its own trainer luck, as its own study would), instead
of training it. The space is the table's sub-space (tiny, op kinds 2d/3d/sep: 243
placements); the study is the quickstart's (accuracy vs MACs at 16x112x112, early stopping on).

For each sampler (TPE, NSGA-II, GP, random, and the paper's ``families``: the uniform and the
bottom-/top-heavy placements, 11 here) and sampler seed, after 20, 40, 60, 100 and 200 trained
trials (ok, stopped early or failed: the trial budget's count), the front the study reports
(``placement-search pareto``: its Pareto-optimal trials by proxy accuracy) is judged by the
reference: the hypervolume of those placements under their reference accuracy and exact target
MACs, as a share of the hypervolume of the true reference front (reference point: the table's lowest reference accuracy,
1.1 x the largest MACs). Then the tool's settings: ``rungs`` (promotion from the proxy to the
reference budget), ``repeats`` (three trainer seeds a placement), the cost-aware sampler, and
``+families`` (the study evaluates the families first, ``evaluate_first``, as the quickstart
does; ``repeats2``: two seeds, the quickstart's setting). Where the table holds a candidate
budget of S steps (``[table.proxy200]``), settings that search there too: ``tpe@S`` (every
trial S steps), ``costaware@S``, ``tpe+rungs@S`` (promotion from the proxy to S) and
``tpe+rungs@S-R`` (on to the reference). Printed: mean ± std over sampler seeds; how much the
study over-claims its front (claimed - true, and claimed - held out: judged only by the
reference seeds its own runs did not draw); last line: the training work the best plain
sampler and the best of the tool's settings need to reach 0.95 (the mean over seeds less two standard errors).

    python benchmarks/search_efficiency.py [--table PATH] [--seeds N] [--samplers tpe,random,...|all]

Under a minute on 2 quiet CPU cores with the defaults (10 sampler seeds of 11 settings, about
0.5-0.6 s a replay, one BLAS thread a worker: 30-37 s); ``--samplers all`` replays the other settings too (tpe+rungs/5, costaware
alone, costaware+repeats, costaware+rungs, costaware+families, the other candidate settings). Optuna's GP sampler takes
30-60 s a replay here (a GP fit and acquisition search per proposal: 31-57 s over 40 replays,
two at a time on 2 cores), so its replays are run on request with ``--recompute-gp`` and kept in ``benchmarks/tables/search_efficiency_gp.json``,
one entry per sampler seed, written after each replay (a stopped recompute resumes with the seeds
still missing), keyed by the table's SHA-256, the Optuna version and the checkpoints; a run whose
table or Optuna differs says so and leaves GP out rather than printing stale numbers. The GP row
says how many replays it holds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from placement_search.study.estimates import (
    FrontHypervolume,
    estimates,
    front_estimates,
    front_hypervolume,
    top_steps,
)
from placement_search.study.records import COUNTED, run_fields, trial_attrs
from placement_search.table import read_table
from placement_search.table.analysis import curve_means, front, hypervolume, mean_of_seeds, reference_points

DEFAULT = Path(__file__).resolve().parent / "tables" / "tiny_sub243.csv"
CHECKPOINTS = (20, 40, 60, 100, 200)
#: noise-aware settings: name -> (sampler, study-file lines at the top, extra sections); the
#: rungs are the table's budgets (its proxy and reference steps, filled in at run time)
NOISE_AWARE = {
    "tpe+rungs": ("tpe", "", '[fidelity]\nsteps = [{steps}, {ref_steps}]\npromote = "1/3"\n'),
    "tpe+rungs/5": ("tpe", "", '[fidelity]\nsteps = [{steps}, {ref_steps}]\npromote = "1/5"\n'),
    "tpe+repeats": ("tpe", "repeats = {proxy_seeds}\n", ""),
    "tpe+repeats2": ("tpe", "repeats = 2\n", ""),
    "costaware": ("costaware", "", ""),
    "costaware+repeats": ("costaware", "repeats = {proxy_seeds}\n", ""),
    "costaware+rungs": ("costaware", "", '[fidelity]\nsteps = [{steps}, {ref_steps}]\npromote = "1/3"\n'),
    # two trainer seeds for every placement that reaches the top: the cure for a front's luck
    "tpe+rungs+top2": ("tpe", "", '[fidelity]\nsteps = [{steps}, {ref_steps}]\npromote = "1/3"\nseeds_at_top = 2\n'),
    "costaware+rungs+top2": (
        "costaware",
        "",
        '[fidelity]\nsteps = [{steps}, {ref_steps}]\npromote = "1/3"\nseeds_at_top = 2\n',
    ),
}
# the same settings starting from the paper's families (``evaluate_first``, as the quickstart does)
NOISE_AWARE.update(
    {
        f"{k}+families": NOISE_AWARE.get(k, ("tpe", "", ""))
        for k in ("tpe", "tpe+repeats", "tpe+repeats2", "costaware", "costaware+repeats")
    }
)
PLAIN = ("tpe", "nsga2", "gp", "random", "families")


def _candidates(table) -> list[tuple[str, int, int]]:
    """The table's candidate budgets that hold every judged placement: (name, steps, seeds)."""
    judged = _judged(table)
    out = []
    for b in table.budgets:
        if b in ("proxy", "reference") or not table.complete_seeds(b):
            continue
        held = set(table.placements(b))
        if all(p in held for p in judged):
            out.append((b, table.runs(judged[0], b)[0].steps, len(table.complete_seeds(b))))
    return out


def _candidate_settings(table) -> dict[str, tuple[tuple[str, str, str, int], int, bool]]:
    """name -> (setting, the candidate's steps, whether its front is of the candidate's runs)."""
    judged = _judged(table)
    proxy_steps = table.runs(judged[0], "proxy")[0].steps
    ref_steps = table.runs(judged[0], "reference")[0].steps
    out: dict[str, tuple[tuple[str, str, str, int], int, bool]] = {}
    for _, st, n_seeds in _candidates(table):
        if not proxy_steps < st < ref_steps:  # rungs ascend; the evaluator finds a budget by its steps
            continue
        for sampler in ("tpe", "costaware"):
            out[f"{sampler}@{st}"] = ((sampler, "", "", st), st, True)
            out[f"{sampler}@{st}+families"] = ((sampler, "", "", st), st, True)
            if n_seeds > 1:  # each placement the mean of two runs at S steps
                out[f"{sampler}@{st}+repeats2+families"] = ((sampler, "repeats = 2\n", "", st), st, True)
        rungs = f'[fidelity]\nsteps = [{proxy_steps}, {st}]\npromote = "1/3"\n'
        out[f"tpe+rungs@{st}"] = (("tpe", "", rungs, proxy_steps), st, True)
        out[f"tpe+rungs@{st}+families"] = (("tpe", "", rungs, proxy_steps), st, True)
        rungs3 = f'[fidelity]\nsteps = [{proxy_steps}, {st}, {ref_steps}]\npromote = "1/3"\n'
        # its front is of reference runs, with the table's seeds drawn: only promotion uses S
        out[f"tpe+rungs@{st}-{ref_steps}"] = (("tpe", "", rungs3, proxy_steps), st, False)
    return out


def candidate_settings(table) -> dict[str, tuple[str, str, str, int]]:
    """Settings that search at a candidate budget of the table (a ``[table.NAME]`` with more
    steps than the proxy and fewer than the reference, once it holds every placement): name ->
    (sampler, study-file lines at the top, extra sections, the study's proxy steps). ``tpe@S``
    trains every trial for S steps; ``rungs@S`` promotes from the proxy to S, ``rungs@S-R`` on
    to the reference."""
    return {k: v[0] for k, v in _candidate_settings(table).items()}


def every_run_settings(table, settings: dict[str, tuple[str, str, str, int]], fill: dict) -> set[str]:
    """The settings whose front is of runs that take every run the table holds of a placement at
    its top budget (one run a placement there, or ``repeats`` / ``seeds_at_top`` as many as the
    table's seeds): every replay reads the same numbers for a placement, so the spread over
    sampler seeds leaves out trainer luck, and a share "reached" is one draw of it. A setting
    whose top budget is the reference is judged by the very runs it chose its front on."""
    judged = _judged(table)[0]
    by_steps: dict[int, int] = {}
    for b in table.budgets:
        if runs := table.runs(judged, b):  # a budget still being built may not hold it yet
            # the first budget with those steps, as the table evaluator finds it
            by_steps.setdefault(runs[0].steps, len(table.complete_seeds(b)))
    out = set()
    for name, (_, top, sections, steps) in settings.items():
        text = top.format(**fill) + sections.format(**fill)
        rungs = re.search(r"steps = \[([0-9, ]+)\]", text)
        front = int(rungs.group(1).split(",")[-1]) if rungs else steps
        # seeds_at_top wins over repeats, as in the study config
        draws = re.search(r"seeds_at_top = (\d+)", text) or re.search(r"repeats = (\d+)", text)
        if by_steps.get(front, 0) and (int(draws.group(1)) if draws else 1) >= by_steps[front]:
            out.add(name)
    return out


DEFAULT_SETTINGS = (
    *PLAIN,
    "tpe+families",
    "tpe+repeats2+families",
    "tpe+rungs",
    "tpe+rungs+top2",
    "tpe+repeats+families",
    "costaware+repeats+families",
)
#: settings at a candidate budget the default run adds when the table holds one (S: its steps)
DEFAULT_AT_CANDIDATE = ("tpe@{S}",)
FAMILIES = ["all_2d", "all_3d", "all_sep", "bottom_heavy_*", "top_heavy_*"]

SPACE = """
schema_version = 1
name = "tiny_sub"
description = "the tiny space with op kinds 2d, 3d and sep (the ground-truth table's sub-space)"
backbone = "tiny"
tie = "block"
choices = ["2d", "3d", "sep"]
family_kind = "3d"
clip = {{ frames = 16, size = 64 }}

[backbone_args]
widths = [16, 32, 64, 128]
"""

STUDY = """
schema_version = 1
{top}name = "{name}"
space = "{space}"
sampler = "{sampler}"
seed = {seed}
trials = {trials}
objectives = ["accuracy", "macs"]
evaluate_first = {first}

[target]
frames = 16
size = 112
num_classes = 400

[data]
source = "synthetic"
version = 2
frames = 8
size = 32
eval_clips = 440

[proxy]
evaluator = "table:{table}"
seed = {seed}
{steps_line}eval_every = {eval_every}

[early_stopping]
enabled = true
margin = 0.08
min_trials = 4

[artifacts]
enabled = false

[resources]
cpus = 1

{sections}"""


def reported_fronts(
    study,
    checkpoints: tuple[int, ...],
    unit: int | None = None,
    ref_steps: int | None = None,
    reference: tuple[float, float] | None = None,
) -> dict[int, tuple[dict[str, tuple[float, int, frozenset]], FrontHypervolume | None]]:
    """The front the study reported once it had spent n trials' worth of training (runs of
    ``unit`` steps, by default the study's lowest budget; a run of k times the steps counts k),
    for each checkpoint n: (placement ->
    (its reported accuracy, the mean of its runs at the top budget; its target MACs; the table's
    seeds its runs of ``ref_steps`` steps, the reference's, drew: a held-out judgement leaves
    them out), the front's hypervolume as the study reports it, bounded by ``reference``
    (accuracy floor, MACs ceiling; None: not computed))."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.datetime_complete or t.datetime_start)
    names = study.metric_names
    directions = [d.name.lower() for d in study.directions]
    config = study.user_attrs["config"]
    base = config["proxy"]["steps"]
    unit = unit or base
    seen: dict[str, set[int]] = {}

    def reported(done):
        ests = estimates(done, names)
        # the corrected claim is judged only for fronts of reference-budget runs (and costs a
        # bootstrap): the others claim shorter runs' accuracies
        judged = reference is not None and top_steps(ests) == ref_steps
        fh = front_hypervolume(ests, directions, reference, names) if judged else None
        rep = {
            e.placement_string: (e.mean, int(e.attrs["macs"]), frozenset(seen.get(e.placement_string, ())))
            for e in front_estimates(ests, directions)
        }
        return rep, fh

    out: dict[int, tuple[dict[str, tuple[float, int, frozenset]], FrontHypervolume | None]] = {}
    done = []
    work = 0.0
    pending = list(checkpoints)
    for t in trials:
        done.append(t)
        ua = trial_attrs(t)
        if ua.get("status") in COUNTED:
            steps = run_fields(ua)[0] or base
            work += steps / unit
            if steps == ref_steps and "table_seed" in ua:
                seen.setdefault(ua["placement_string"], set()).add(int(ua["table_seed"]))
            while pending and work >= pending[0] - 1e-9:
                out[pending.pop(0)] = reported(done)
    final = reported(done)
    for n in checkpoints:
        out.setdefault(n, final)  # the study ended before n (the families, or the space exhausted)
    return out


def shares(table, reported: dict[str, tuple], places) -> tuple[float, float, float | None]:
    """(true, claimed, held out): the reference hypervolume share of the reported placements
    under their reference accuracy (the mean of the table's complete reference seeds), under the
    accuracy the study reported for them, and under the mean of the placement's reference runs
    the study's own runs did not draw (a seed still being built counts where it holds the
    placement; None where a placement has no other run). The truth shares the noise of the
    reference runs a study drew, so claimed - true shows part of a front's luck at the top
    budget (with k reference seeds and one drawn, about 1/k of it); claimed - held out shows
    all of it."""
    pts, ref = reference_points(table, places)
    total = hypervolume(pts.values(), ref)
    true = hypervolume((pts[p] for p in reported if p in pts), ref) / total
    claimed = hypervolume(((r[0], float(r[1])) for p, r in reported.items() if p in pts), ref) / total
    held: list[tuple[float, float]] = []
    for p, r in reported.items():
        if p not in pts:
            continue
        # every reference seed of the placement (a seed still being built holds some placements)
        rest = [row.seed for row in table.runs(p, "reference") if row.seed not in (r[2] if len(r) > 2 else ())]
        if not rest:
            return true, claimed, None
        held.append((statistics.fmean(table.accuracy(p, "reference", s) for s in rest), float(r[1])))
    return true, claimed, hypervolume(held, ref) / total


def _mean_se(v: list[float]) -> str:
    """``+mean ± standard error`` of a claimed-minus-judged gap over replays."""
    se = statistics.stdev(v) / len(v) ** 0.5 if len(v) > 1 else 0.0
    return f"{statistics.fmean(v):+.3f} ± {se:.3f}"


def _surely(runs: list[tuple], goal: float = 0.95) -> bool:
    """Whether the mean share over sampler seeds is at least ``goal`` by more than its noise:
    the mean less two standard errors. A mean over 10 seeds that brushes 0.95 is often a lucky
    draw of seeds (one setting read 0.952 over 10 and 0.944 over 40, against the two-seed truth)."""
    v = [r[0] for r in runs]
    se = statistics.stdev(v) / len(v) ** 0.5 if len(v) > 1 else 0.0
    return statistics.fmean(v) - 2 * se >= goal


def _judged(table) -> list[str]:
    """The placements fronts are judged on: those with runs at the proxy and the reference
    budget (a candidate budget still being built does not shrink them)."""
    return [p for p in table.placements("proxy") if table.runs(p, "reference")]


def _proxy_ceiling(table, places) -> None:
    """What no search on this proxy can beat by much: the front of the proxy's scores of every
    placement (one seed, and the mean of all; one seed's runs read as learning curves too),
    judged by the reference like a replay's; the same for each candidate budget the table
    holds."""
    costs = {p: table.cost(p)[0] for p in places}
    base = table.runs(places[0], "proxy")[0].steps

    def judged(scores: list[float]) -> float:
        rep = [places[i] for i in front([(a, float(costs[p])) for a, p in zip(scores, places)])]
        return shares(table, {p: (0.0, costs[p]) for p in rep}, places)[0]

    for b in table.budgets:
        if b == "reference" or not all(table.runs(p, b) for p in places):
            continue
        seeds = table.complete_seeds(b)
        if not seeds:
            continue
        steps = table.runs(places[0], b)[0].steps
        work = len(places) * steps / base
        one = [judged(mean_of_seeds(table, places, b, [s])) for s in seeds]
        line = (
            f"every placement evaluated at {b} ({steps} steps; its own ceiling): the front of {len(places)} scores "
            f"gives {statistics.fmean(one):.3f}"
            + (f" ± {statistics.stdev(one):.3f} with one seed" if len(one) > 1 else " with its one seed")
            + f" ({work:.0f} trials' worth)"
        )
        if len(seeds) > 1:
            every = judged(mean_of_seeds(table, places, b, seeds))
            line += f", {every:.3f} with the mean of {len(seeds)} ({len(seeds) * work:.0f})"
        else:
            line += (
                "; the table holds one run a placement at this budget, so its replays draw the same runs every "
                "time: their spread over sampler seeds leaves out trainer luck"
            )
        if all(len(table.row(p, b, s).eval_curve) > 1 for p in places for s in seeds):
            # the same runs read as learning curves (the mean of each run's held-out evaluations),
            # which rank the space better (benchmarks/proxy_fidelity.py)
            curve = [judged(curve_means(table, places, b, [s])) for s in seeds]
            line += f"; read as curve means (each run's mean held-out accuracy over its evaluations): {statistics.fmean(curve):.3f}"
            line += f" ± {statistics.stdev(curve):.3f} with one seed" if len(curve) > 1 else " with its one seed"
        print(line)


def promotion_ceiling(
    table, places: list[str], ks: tuple[int, ...] = (6, 10, 20, 40), draws: int = 100, seed: int = 0
) -> dict[int, tuple[float, float, float]]:
    """What promotion from the proxy can buy at best: an idealised two-stage search, no sampler,
    that scores every placement at the proxy (one run each, its table seed drawn per placement,
    as the table evaluator draws it), promotes the k best by non-dominated sorting on (proxy
    score, exact cost) (a layer cut short keeps its cheapest: the cheap end holds most of the
    hypervolume) to one reference run each (a drawn seed), and reports the front of those runs,
    judged like a replay's. k -> (mean share over ``draws`` draws of the seeds, its standard
    deviation, the training work in trials' worth: every placement's proxy run and the k
    reference runs by their steps). Each k draws its own seeds (from ``seed`` and k), so its
    result does not depend on the other ks asked for."""
    import random

    cost = {p: float(table.cost(p)[0]) for p in places}
    pseeds, rseeds = table.complete_seeds("proxy"), table.complete_seeds("reference")
    ratio = table.runs(places[0], "reference")[0].steps / table.runs(places[0], "proxy")[0].steps
    out = {}
    for k in ks:
        rng = random.Random(f"{seed}-{k}")
        got = []
        for _ in range(draws):
            score = {p: table.accuracy(p, "proxy", rng.choice(pseeds)) for p in places}
            rest, promoted = list(places), []
            while rest and len(promoted) < k:
                layer = sorted((rest[i] for i in front([(score[p], cost[p]) for p in rest])), key=cost.get)
                promoted += layer[: k - len(promoted)]
                rest = [p for p in rest if p not in layer]
            ref = {p: table.accuracy(p, "reference", rng.choice(rseeds)) for p in promoted}
            rep = [promoted[i] for i in front([(ref[p], cost[p]) for p in promoted])]
            got.append(shares(table, {p: (ref[p], cost[p]) for p in rep}, places)[0])
        sd = statistics.stdev(got) if len(got) > 1 else 0.0
        out[k] = (statistics.fmean(got), sd, len(places) + min(k, len(places)) * ratio)
    return out


def _reference_ceiling(table) -> None:
    """What the reference's own noise allows: on the placements holding every reference seed,
    the front one seed's runs pick (an exhaustive search at the reference budget), judged by the
    mean of the other seeds, and by the mean of them all (the truth, which shares that seed's
    luck, as a replay's truth shares the luck of the reference runs it drew); beside them the
    front of the proxy's mean. A search judged by the reference cannot expect much more than
    another reference run of every placement gets."""
    rseeds = table.complete_seeds("reference")  # a seed still being built would shrink the placements
    if len(rseeds) < 2:
        return
    shared = [
        p for p in table.placements("reference") if all(table.accuracy(p, "reference", s) is not None for s in rseeds)
    ]
    if len(shared) < 10:
        return
    _, ref = reference_points(table)  # the replays' reference point
    cost = {p: float(table.cost(p)[0]) for p in shared}
    by = {s: {p: table.accuracy(p, "reference", s) for p in shared} for s in rseeds}

    def judge(seeds) -> dict[str, tuple[float, float]]:
        return {p: (a, cost[p]) for p, a in zip(shared, mean_of_seeds(table, shared, "reference", seeds))}

    def share(pick: dict[str, float], pts: dict[str, tuple[float, float]]) -> float:
        names = list(pick)
        rep = [names[i] for i in front([(pick[p], cost[p]) for p in names])]
        return hypervolume((pts[p] for p in rep), ref) / hypervolume(pts.values(), ref)

    others = {s: judge([o for o in rseeds if o != s]) for s in rseeds}
    every = judge(rseeds)
    proxy = {p: table.accuracy(p, "proxy") for p in shared}
    work = len(shared) * table.runs(shared[0], "reference")[0].steps / table.runs(shared[0], "proxy")[0].steps
    judged_by = "the other" if len(rseeds) == 2 else "the mean of the others"
    print(
        f"the reference's own noise: on the {len(shared)} placements with reference seeds "
        f"{', '.join(map(str, rseeds))}, the front of one seed's runs ({work:.0f} trials' worth) judged by {judged_by} "
        f"gives {', '.join(f'{share(by[s], others[s]):.3f}' for s in rseeds)} (by the mean of all "
        f"{len(rseeds)}, its own included: {', '.join(f'{share(by[s], every):.3f}' for s in rseeds)}); the front "
        f"of the proxy's mean gives {', '.join(f'{share(proxy, others[s]):.3f}' for s in rseeds)} "
        f"(by the mean of all {len(rseeds)}: {share(proxy, every):.3f})"
    )


def replay(job: tuple[str, tuple, int, str, str, dict]) -> tuple[str, int, dict[int, tuple], float]:
    """One study against the table (in a worker process): the (true, claimed, held out,
    corrected claim or None) reference HV shares at each checkpoint."""
    setting, how, seed, table_path, folder, fill = job
    sampler, top, sections, steps = how
    import optuna

    from placement_search.study import SearchDriver, load_study_config
    from placement_search.study.storage import open_storage, quiet_optuna

    quiet_optuna()
    warnings.filterwarnings("ignore")
    table = _table(table_path)
    places = _judged(table)
    tmp = Path(folder)
    name = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', setting)}-{seed}"
    path = tmp / f"{name}.toml"
    path.write_text(
        STUDY.format(
            top=top.format(**fill),
            sections=sections.format(**fill),
            steps_line="" if "[fidelity]" in sections else f"steps = {steps}\n",
            name=name,
            space=tmp / "tiny_sub.toml",
            sampler=sampler,
            seed=seed,
            trials=-(-max(CHECKPOINTS) * fill["steps"] // steps),  # the work of 200 proxy runs
            first=str(FAMILIES if sampler == "families" or setting.endswith("+families") else []).replace("'", '"'),
            table=table_path,
            eval_every=fill["eval_every"],
        )
    )
    # Optuna's journal file: the same public storage API as SQLite, several times faster per write
    url = f"journal:///{tmp / (name + '.log')}"
    t0 = time.perf_counter()
    SearchDriver(load_study_config(path), storage=url, executor="inline").run()
    elapsed = time.perf_counter() - t0
    study = optuna.load_study(study_name=name, storage=open_storage(url, create=False))
    pts, ref = reference_points(table, places)
    total = hypervolume(pts.values(), ref)
    got = {}
    for n, (rep, fh) in reported_fronts(study, CHECKPOINTS, fill["steps"], fill["ref_steps"], ref).items():
        # (true, claimed, held out, the claim corrected for the front's luck or None)
        # only a front of reference-budget runs claims numbers the reference can judge
        ok = fh is not None and fh.corrected is not None and fh.steps == fill["ref_steps"]
        corrected = fh.corrected / total if ok else None
        got[n] = (*shares(table, rep, places), corrected)
    return setting, seed, got, elapsed


_TABLES: dict[str, object] = {}

GP_CACHE = Path(__file__).resolve().parent / "tables" / "search_efficiency_gp.json"


def _gp_key(table: Path) -> dict[str, object]:
    import hashlib

    import optuna

    return {
        "table_sha256": hashlib.sha256(table.read_bytes()).hexdigest(),
        "optuna": optuna.__version__,
        "checkpoints": list(CHECKPOINTS),
        # 5: trainer seeds drawn from the replay's seed; per sampler seed: (true, claimed, held
        # out or null) shares, checkpoints in training work; 6: a repeat's free placement found
        # farther than one decision away (GP's studies no longer stop at 60-80 trials)
        "format": 6,
    }


def _gp_cache(table: Path) -> dict[int, dict[int, tuple]]:
    """The stored GP replays of ``table`` by sampler seed (empty when none match it)."""
    import json

    if not GP_CACHE.is_file():
        return {}
    data = json.loads(GP_CACHE.read_text())
    if data.get("key") != _gp_key(table):
        return {}
    return {
        int(seed): {int(n): tuple(None if v is None else float(v) for v in r) for n, r in by_n.items()}
        for seed, by_n in data["replays"].items()
    }


def _store_gp_cache(table: Path, replays: dict[int, dict[int, tuple[float, float]]]) -> None:
    """Written after every replay (atomically), so a stopped ``--recompute-gp`` resumes."""
    import json

    tmp = GP_CACHE.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": _gp_key(table), "replays": replays}, indent=1, sort_keys=True) + "\n")
    tmp.replace(GP_CACHE)


@contextlib.contextmanager
def _one_blas_thread():
    """The environment of the worker processes started inside: one OpenMP / OpenBLAS / MKL thread."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    old = {k: os.environ.get(k) for k in names}
    os.environ.update(dict.fromkeys(names, "1"))
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _table(path: str):
    if path not in _TABLES:
        _TABLES[path] = read_table(path)
    return _TABLES[path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=DEFAULT)
    parser.add_argument("--seeds", type=int, default=10, help="sampler seeds per sampler")
    parser.add_argument(
        "--samplers",
        default=None,
        help=f"samplers and noise-aware settings, or 'all' (default: {','.join(DEFAULT_SETTINGS)}, and "
        f"{', '.join(DEFAULT_AT_CANDIDATE)} where the table holds a candidate budget of S steps)",
    )
    parser.add_argument(
        "--recompute-gp", action="store_true", help=f"replay GP now (slow) and store the result in {GP_CACHE.name}"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="replays at a time")
    args = parser.parse_args()
    import multiprocessing

    table = read_table(args.table)
    places = _judged(table)
    if len(places) < 243:
        print(
            f"note: {args.table.name} holds {len(places)} placements with runs at the proxy and reference budgets; "
            "fronts are judged on those"
        )
    first = table.runs(places[0], "proxy")[0]
    fill = {
        "steps": first.steps,
        "ref_steps": table.runs(places[0], "reference")[0].steps,
        "eval_every": first.eval_curve[0][0] if len(first.eval_curve) > 1 else 0,
        "proxy_seeds": len(table.seeds("proxy")),
    }
    settings: dict[str, tuple[str, str, str, int]] = {p: (p, "", "", fill["steps"]) for p in PLAIN}
    settings.update({k: (*v, fill["steps"]) for k, v in NOISE_AWARE.items()})
    candidates = candidate_settings(table)
    settings.update(candidates)
    if args.samplers is None:
        at = sorted({st for k, (_, st, _) in _candidate_settings(table).items() if k.startswith("tpe@")})
        samplers = [*DEFAULT_SETTINGS, *(d.format(S=st) for st in at for d in DEFAULT_AT_CANDIDATE)]
    else:
        samplers = list(settings) if args.samplers == "all" else args.samplers.split(",")
    for s_ in samplers:
        if s_ not in settings:
            parser.error(f"--samplers: unknown {s_!r}; known: {', '.join(settings)}")
    tmp = Path(tempfile.mkdtemp(prefix="ps-eff-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    (tmp / "tiny_sub.toml").write_text(SPACE.format())
    jobs = []
    gp_done = _gp_cache(args.table)
    gp_seeds = sorted(seed for seed in gp_done if seed < args.seeds)
    if "gp" in samplers and not args.recompute_gp and not gp_seeds:
        print(
            f"note: no GP replays of this table in {GP_CACHE.name} (table or Optuna version differ); "
            "GP left out: run with --recompute-gp (30-60 s a replay on 2 cores) to add them"
        )
        samplers = [s for s in samplers if s != "gp"]
        if not samplers:
            parser.exit(1, "nothing left to replay\n")
    for sampler in samplers:
        n_seeds = args.seeds  # the families too: each replay draws its own trainer seeds
        if sampler == "gp":  # replayed only on request, and only the seeds not stored yet
            todo = [seed for seed in range(n_seeds) if seed not in gp_done] if args.recompute_gp else []
        else:
            todo = list(range(n_seeds))
        jobs += [(sampler, settings[sampler], seed, str(args.table.resolve()), str(tmp), fill) for seed in todo]
    jobs.sort(key=lambda j: j[0] != "gp")  # the slowest first, for an even load
    results: dict[str, dict[int, list[tuple]]] = {s: {n: [] for n in CHECKPOINTS} for s in samplers}
    t0 = time.perf_counter()
    busy = 0.0
    try:
        # one BLAS thread a replay: each worker runs one single-threaded study, and numpy's
        # OpenBLAS threads in every worker otherwise fight over the cores (measured on 2 cores:
        # 41-66 s for the default run, 34-36 s with one thread; the same numbers either way).
        # Set before the workers start: a worker's numpy reads it when it is imported.
        with _one_blas_thread(), multiprocessing.get_context("spawn").Pool(max(1, args.workers)) as pool:
            for sampler, seed, got, elapsed in pool.imap_unordered(replay, jobs):
                busy += elapsed
                if sampler == "gp":
                    gp_done[seed] = dict(got)
                    _store_gp_cache(args.table, gp_done)
                    print(f"GP replay of sampler seed {seed} stored in {GP_CACHE.name} ({elapsed:.0f} s)", flush=True)
                    continue
                for n, v in got.items():
                    results[sampler][n].append(v)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - t0
    gp_seeds = sorted(seed for seed in gp_done if seed < args.seeds)
    if "gp" in results and not gp_seeds:
        del results["gp"]
    elif "gp" in results:
        results["gp"] = {n: [gp_done[seed][n] for seed in gp_seeds] for n in CHECKPOINTS}
    print(
        f"reference hypervolume share of the reported front ({table.path.name}; mean ± std over sampler seeds), "
        "by training work spent (trials' worth at the proxy budget; a promoted run counts by its steps)"
    )
    # settings that take every run the table holds of a placement at their top budget: every
    # replay reads the same numbers, so their spread leaves out trainer luck and a "reached" is
    # one draw's
    every_run = every_run_settings(table, {k: settings[k] for k in results if k != "gp"}, fill)
    width = max([13, *(len(k) for k in results)])
    print(
        f"{'setting':{width}s} {'seeds':>5s} "
        + " ".join(f"{'n=' + str(n):>13s}" for n in CHECKPOINTS)
        + "   to 0.95   claimed-true (± SE)        claimed-held out (± SE)    corrected-true  corrected-held out"
    )
    need: dict[str, float] = {}
    claims: dict[str, tuple[list[float], list[float], int]] = {}  # corrected - true, - held out, at n
    for sampler, by_n in results.items():
        cells = []
        for n in CHECKPOINTS:
            v = [r[0] for r in by_n[n]]
            cells.append(
                f"{statistics.fmean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}        "
            )
        reach = next((n for n in CHECKPOINTS if _surely(by_n[n])), None)
        need[sampler] = reach if reach is not None and sampler not in every_run else float("inf")
        at = reach if reach is not None else 60
        gap = _mean_se([r[1] - r[0] for r in by_n[at]])
        # GP's stored replays hold (true, claimed): no promotion, so held out is the truth
        held = [r[1] - (r[2] if len(r) > 2 else r[0]) for r in by_n[at] if len(r) < 3 or r[2] is not None]
        held_s = _mean_se(held) if held else "   n/a"
        if held and len(held) < len(by_n[at]):
            held_s += f" ({len(held)} of {len(by_n[at])})"
        # the claim the study makes once corrected for its front's luck (seed noise measured at
        # the top budget: None where no placement there has two runs)
        fixed = [r for r in by_n[at] if len(r) > 3 and r[3] is not None]
        fixed_s = ""
        if not fixed:
            fixed_s = "  n/a             n/a"
        else:
            fixed_s = f"  {_mean_se([r[3] - r[0] for r in fixed])}"
            fixed_held = [r[3] - r[2] for r in fixed if r[2] is not None]
            claims[sampler] = ([r[3] - r[0] for r in fixed], fixed_held, at)
            fixed_s += f"  {_mean_se(fixed_held)}" if fixed_held else "  n/a"
            if len(fixed) < len(by_n[at]):
                fixed_s += f" ({len(fixed)} of {len(by_n[at])} replays measured the noise)"
        print(
            f"{sampler:{width}s} {len(by_n[CHECKPOINTS[0]]):5d} "
            + " ".join(f"{c:>13s}" for c in cells)
            + f"   {(str(reach) + ('*' if sampler in every_run else '')) if reach else '> 200':>7s}"
            + f"   {gap} (n={at})  {held_s}{fixed_s}"
        )
    print(
        f"({len(jobs)} replays through the real driver: {wall:.0f} s wall, {busy / max(1, len(jobs)):.1f} s a replay"
        + (f"; GP: {len(gp_seeds)} replays stored in {GP_CACHE.name})" if "gp" in results else ")")
    )
    print(
        "to 0.95: the first work where the mean share less two standard errors (over sampler seeds) is at least "
        "0.95; claimed-true: the hypervolume share the study claims (its reported accuracies) minus the share the "
        "reference gives the same placements, at the work where it reaches 0.95 (else at 60); claimed-held out: "
        "the same, judged only by the reference seeds the study's own top-budget runs did not draw (the truth, "
        "the mean of the table's reference seeds, shares the luck of those a study drew, so claimed-true "
        "understates a front's winner's curse); both as mean ± standard error over the replays; corrected: the same for the front "
        "hypervolume the study reports corrected for its luck (placement_search.study.estimates.front_hypervolume: "
        "a bootstrap over the seed noise it measured at its top budget), for fronts of reference-budget runs with "
        "that noise measured on 3 or more degrees of freedom (n/a: none; the claims of the others are of shorter "
        "runs' accuracies)"
    )
    if every_run:
        print(
            f"*: the settings {', '.join(sorted(every_run))} take as many runs of a placement at their top budget as "
            "the table holds of every placement there: every replay reads the same numbers"
            + (
                " (for the placements a seed still being built does not hold)"
                if any(set(table.seeds(b)) != set(table.complete_seeds(b)) for b in table.budgets)
                else ""
            )
            + ", so their spread leaves out trainer luck and a share reached is one draw of it, not counted"
        )
    if claims:  # the second goal: a promoted study's claim within 0.02 of the truth
        parts = []

        def within(v: list[float]) -> str:
            return "n/a" if not v else "within 0.02" if abs(statistics.fmean(v)) <= 0.02 else "outside 0.02"

        for k, (vs_true, vs_held, at) in claims.items():
            parts.append(
                f"{k} at n={at}: {_mean_se(vs_true)} vs the truth ({within(vs_true)}), "
                f"{_mean_se(vs_held) if vs_held else 'n/a'} vs held-out runs ({within(vs_held)})"
            )
        print("claims of promoted fronts, corrected for their luck: " + "; ".join(parts))
    _proxy_ceiling(table, places)
    if table.complete_seeds("reference") and table.complete_seeds("proxy"):
        draws = 100
        best = promotion_ceiling(table, places, draws=draws)
        print(
            "promotion from the proxy, idealised (no search: every placement scored at the proxy, one seed each; its "
            "k best by non-dominated sorting given one reference run each; mean ± std over "
            f"{draws} draws of the seeds): "
            + ", ".join(f"k={k} {m:.3f} ± {sd:.3f} ({w:.0f} trials' worth)" for k, (m, sd, w) in best.items())
        )
    _reference_ceiling(table)
    plain = {s: v for s, v in need.items() if s in PLAIN and s != "families"}
    aware = {s: v for s, v in need.items() if s not in PLAIN}
    at60 = {s: statistics.fmean(r[0] for r in results[s][60]) for s in results}
    bp = min(plain, key=lambda s: (plain[s], -at60[s])) if plain else None
    ba = min(aware, key=lambda s: (aware[s], -at60[s])) if aware else None

    def show(v: float) -> str:
        return "> 200" if v == float("inf") else f"{v:.0f}"

    if bp is not None and ba is not None:
        if aware[ba] != float("inf"):
            ratio = (
                f"{plain[bp] / aware[ba]:.2f}x less"
                if plain[bp] != float("inf")
                else "more than 200/" + show(aware[ba]) + "x less"
            )
        else:
            ratio = f"neither reached it; at 60: {at60[bp]:.3f} vs {at60[ba]:.3f}"
        print(
            f"work to 0.95 of the reference hypervolume: best plain sampler ({bp}) {show(plain[bp])}, "
            f"best noise-aware setting ({ba}) {show(aware[ba])}: {ratio}"
        )
    else:
        best = min(need, key=lambda s: need[s])
        print(f"work the best setting ({best}) needs to reach 0.95 of the reference hypervolume: {show(need[best])}")


if __name__ == "__main__":
    main()
