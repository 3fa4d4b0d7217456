"""How well does the proxy rank placements? Measured on the committed ground-truth table.

Reads ``benchmarks/tables/tiny_sub243.csv`` (``placement-search table build studies/table_tiny.toml``;
every placement of the tiny space with op kinds 2d/3d/sep, 3 trainer seeds at the proxy budget of
the quickstart, 1 to 3 seeds at a reference budget of 5x the steps) and prints, over the placements
that hold every run at both budgets (the reference is the mean of its complete seeds, those every
placement holds; a seed still being built enters (e) only):

(a) Kendall tau and top-10% overlap between two trainer seeds at the proxy budget (each pair);
(b) between one proxy seed and the reference (each seed);
(c) between the mean of k proxy seeds and the reference, k = 1, 2, 3 (each subset of seeds);
(d) candidate proxies and their cost: the proxy run read at its intermediate evaluations (steps
    20, 40, 60: a run of 80 steps stopped early, which is not a shorter cosine schedule), the
    mean of k proxy seeds, the table's candidate budgets (``[table.NAME]``: other steps, clips or
    held-out sets, each with its seeds), and the reference run read at its own intermediate evaluations
    (steps 100, 200, 300: 1 seed, so its tau against the reference at 400 is optimistic: the
    same run), and the mean of the proxy run's held-out accuracies over its evaluations (the area
    under its learning curve: the same runs, read differently); cost = the mean measured wall
    time of a proxy run x k x (step / steps);
(e) the reference against itself, where placements hold two or more reference seeds: their tau and
    r = sin(pi tau / 2) (one reference run's reliability as a ranking, on normal scores), the tau an exact ranking could reach against the
    mean of m reference seeds (Spearman-Brown for the mean, Greiner's tau = 2/pi arcsin rho), and
    the taus of (c) corrected for the reference's noise (Spearman's correction for attenuation):
    a tau of 0.6 cannot be measured against a reference that agrees with itself less.

It also prints the held-out set's own noise (binomial standard error at the table's mean
accuracy) beside the seed-to-seed spread, and names the cheapest candidate with tau >= 0.6 (the
chosen proxy); its tau is the last line.

    python benchmarks/proxy_fidelity.py [--table PATH]

Runs in a few seconds from the committed table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from placement_search.table import Table, read_table
from placement_search.table.analysis import (
    curve_means,
    disattenuated_tau,
    kendall_tau,
    mean_of_seeds,
    seed_agreement,
    seed_subsets,
    tau_ceiling,
    top_overlap,
)

DEFAULT = Path(__file__).resolve().parent / "tables" / "tiny_sub243.csv"
GOAL = 0.6


def _ms(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:+.3f}"
    return f"{statistics.fmean(values):+.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=DEFAULT)
    args = parser.parse_args()
    t = read_table(args.table)
    pseeds, rseeds = t.seeds("proxy"), t.complete_seeds("reference")
    places = [
        p
        for p in t.placements("proxy")
        if all(t.accuracy(p, "proxy", s) is not None for s in pseeds)
        and all(t.accuracy(p, "reference", s) is not None for s in rseeds)
    ]
    if len(places) < 10:
        raise SystemExit(f"{args.table}: only {len(places)} placements hold every run at both budgets; build on")
    ref = mean_of_seeds(t, places, "reference", rseeds)
    n_all = len(t.placements())
    proxy_rows = [r for p in places for r in t.runs(p, "proxy")]
    ref_rows = [r for p in places for r in t.runs(p, "reference") if r.seed in rseeds]
    proxy_steps = proxy_rows[0].steps
    ref_steps = ref_rows[0].steps
    proxy_wall = statistics.fmean(r.wall_time_s for r in proxy_rows)
    ref_wall = statistics.fmean(r.wall_time_s for r in ref_rows)
    print(
        f"table {args.table.name}: {len(places)} of {n_all} placements with every run; proxy: {proxy_steps} steps, "
        f"seeds {pseeds}, {proxy_wall:.1f} s a run; reference: {ref_steps} steps, seeds {rseeds}, {ref_wall:.1f} s a run"
    )
    for s in t.seeds("reference"):
        if s not in rseeds:
            have = sum(t.accuracy(p, "reference", s) is not None for p in places)
            print(f"reference seed {s}: {have} of {len(places)} placements so far (being built: left out of the means)")
    accs = [r.accuracy for r in proxy_rows if r.accuracy is not None]
    spreads = [max(a) - min(a) for p in places if len(a := [t.accuracy(p, "proxy", s) or 0.0 for s in pseeds]) > 1]
    clips = int(json.loads(proxy_rows[0].extra.get("data") or "{}").get("eval_clips", 0))
    m = statistics.fmean(accs)
    print(
        f"proxy accuracy: mean {100 * m:.1f}%; seed-to-seed range per placement: median {100 * statistics.median(spreads):.1f} "
        f"points (max {100 * max(spreads):.1f}); held-out noise alone (binomial SE at {clips} clips): "
        f"{100 * math.sqrt(m * (1 - m) / max(clips, 1)):.1f} points"
    )

    print("\n(a) proxy seed vs proxy seed")
    for s1, s2 in seed_subsets(pseeds, 2):
        a, b = mean_of_seeds(t, places, "proxy", [s1]), mean_of_seeds(t, places, "proxy", [s2])
        print(f"    seeds {s1} / {s2}: tau {kendall_tau(a, b):+.3f}, top-10% overlap {top_overlap(a, b):.2f}")

    print("(b) one proxy seed vs reference")
    for s in pseeds:
        a = mean_of_seeds(t, places, "proxy", [s])
        print(f"    seed {s}: tau {kendall_tau(a, ref):+.3f}, top-10% overlap {top_overlap(a, ref):.2f}")

    print("(c) mean of k proxy seeds vs reference (mean ± std over subsets of seeds)")
    taus_k: dict[int, list[float]] = {}
    for k in range(1, len(pseeds) + 1):
        taus, overlaps = [], []
        for sub in seed_subsets(pseeds, k):
            a = mean_of_seeds(t, places, "proxy", sub)
            taus.append(kendall_tau(a, ref))
            overlaps.append(top_overlap(a, ref))
        taus_k[k] = taus
        print(f"    k={k}: tau {_ms(taus)}, top-10% overlap {statistics.fmean(overlaps):.2f} ({len(taus)} subsets)")

    print("(d) candidate proxies: tau vs reference against cost (s of one worker per placement)")
    cands: list[tuple[str, float, float]] = []
    for step in sorted({s for r in proxy_rows for s, _ in r.eval_curve}):
        for k in range(1, len(pseeds) + 1):
            taus = []
            for sub in seed_subsets(pseeds, k):
                a = [
                    statistics.fmean(dict(t.row(p, "proxy", s).eval_curve).get(step, math.nan) for s in sub)  # type: ignore[union-attr]
                    for p in places
                ]
                if any(math.isnan(x) for x in a):
                    break
                taus.append(kendall_tau(a, ref))
            if taus:
                cost = proxy_wall * k * step / proxy_steps
                cands.append((f"proxy {step}/{proxy_steps} steps x {k} seed(s)", statistics.fmean(taus), cost))
    # the area under the proxy run's held-out accuracy curve (the mean of its evaluations): the
    # same runs read differently, at no extra cost; a learning-curve score in the spirit of Ru
    # et al. 2021 (the sum of training losses), which rewards a placement that learns early
    steps_seen = sorted({s for r in proxy_rows for s, _ in r.eval_curve})
    if len(steps_seen) > 1:
        for k in range(1, len(pseeds) + 1):
            taus = []
            for sub in seed_subsets(pseeds, k):
                taus.append(kendall_tau(curve_means(t, places, "proxy", sub), ref))
            cands.append(
                (
                    f"proxy curve mean ({steps_seen[0]}..{steps_seen[-1]} steps) x {k} seed(s)",
                    statistics.fmean(taus),
                    proxy_wall * k,
                )
            )
    for step in sorted({s for r in ref_rows for s, _ in r.eval_curve}):
        if step >= ref_steps:
            continue
        a = [
            statistics.fmean(dict(t.row(p, "reference", s).eval_curve).get(step, math.nan) for s in rseeds)  # type: ignore[union-attr]
            for p in places
        ]
        if not any(math.isnan(x) for x in a):
            cands.append(
                (
                    f"reference run at {step}/{ref_steps} steps (same run as the reference)",
                    kendall_tau(a, ref),
                    ref_wall * step / ref_steps,
                )
            )
    cands += _candidate_budgets(t, places, ref)
    cands.sort(key=lambda c: c[2])
    for name, tau, cost in cands:
        print(f"    {name:58s} tau {tau:+.3f}  cost {cost:6.1f} s  tau per 100 s {100 * tau / cost:+.2f}")
    r = _reference_noise(t, places, len(rseeds), taus_k, cands)
    ok = [c for c in cands if c[1] >= GOAL and not c[0].startswith("reference")]  # the proxy's and candidates' runs
    if ok:
        name, tau, cost = ok[0]
        print(f"chosen proxy (cheapest with tau >= {GOAL}): {name}, {cost:.1f} s a placement")
        print(f"chosen proxy Kendall tau vs reference: {tau:.3f}")
    else:
        best = max((c for c in cands if not c[0].startswith("reference")), key=lambda c: c[1])
        print(
            f"no proxy candidate in the table reaches tau >= {GOAL}; the best: {best[0]}, {best[2]:.1f} s a placement"
        )
        noise = (
            ""
            if r is None
            else f"; {disattenuated_tau(best[1], r, len(rseeds)):.2f} corrected for the reference's noise"
        )
        print(f"best proxy Kendall tau vs reference: {best[1]:.3f} (goal {GOAL} not met{noise})")


def _clips(t: Table, budget: str) -> int:
    first = next(r for p in t.placements(budget) for r in t.runs(p, budget))
    return max(1, int(json.loads(first.extra.get("data") or "{}").get("eval_clips", 1)))


def _candidate_budgets(t: Table, places: list[str], ref: list[float]) -> list[tuple[str, float, float]]:
    """(d) for the table's candidate budgets (``[table.NAME]`` other than the reference): the
    mean of k of its seeds against the reference, on the placements that hold those seeds (a
    candidate still being built is measured on the uniform sample it holds so far)."""
    by_place = dict(zip(places, ref))
    out = []
    for b in t.budgets:
        if b in ("proxy", "reference"):
            continue
        seeds = t.seeds(b)
        for k in range(1, len(seeds) + 1):
            taus, walls, n = [], [], 0
            for sub in seed_subsets(seeds, k):
                have = [p for p in places if all(t.accuracy(p, b, s) is not None for s in sub)]
                if len(have) < 10:
                    continue
                taus.append(kendall_tau(mean_of_seeds(t, have, b, sub), [by_place[p] for p in have]))
                walls += [r.wall_time_s for p in have for r in t.runs(p, b) if r.seed in sub]
                n = max(n, len(have))
            if taus:
                first = next(r for p in places for r in t.runs(p, b))
                data = json.loads(first.extra.get("data") or "{}")
                what = (
                    f"{first.steps} steps, {data.get('frames')}x{data.get('size')}px, {data.get('eval_clips')} held-out"
                )
                where = "" if n == len(places) else f", {n} placements"
                out.append((f"{b} ({what}{where}) x {k} seed(s)", statistics.fmean(taus), statistics.fmean(walls) * k))
    return out


def _reference_noise(
    t: Table, places: list[str], m: int, taus_k: dict[int, list[float]], cands: list[tuple[str, float, float]]
) -> float | None:
    """(e): how well the reference agrees with itself, what that allows any proxy, and the
    measured taus corrected for it. Returns one reference seed's reliability (None: one seed)."""
    agree = seed_agreement(t, "reference")
    if agree is None:
        print("(e) the reference against itself: one reference seed, so its own noise is not measured")
        return None
    n, tau_rr, r = agree
    lo, hi = (math.tanh(math.atanh(max(min(r, 0.999), -0.999)) + z / math.sqrt(max(n - 3, 1))) for z in (-1.96, 1.96))
    print(f"(e) the reference against itself, on the {n} placements that hold two or more reference seeds")
    print(
        f"    reference seed vs reference seed: tau {tau_rr:+.3f}, so r = sin(pi tau / 2) = {r:.2f} (about "
        f"{lo:.2f}-{hi:.2f} at 95%): one reference run's reliability as a ranking"
    )
    complete = t.complete_seeds("reference")
    s0, s1 = (complete if len(complete) > 1 else t.seeds("reference"))[:2]
    pairs = [
        (a, b)
        for p in places
        if (a := t.accuracy(p, "reference", s0)) is not None and (b := t.accuracy(p, "reference", s1)) is not None
    ]
    gaps = [abs(a - b) for a, b in pairs]
    # |a - b| of two binomial readings of the same accuracy m: half-normal, median 0.674 sd
    clips = _clips(t, "reference")
    sampling = [0.674 * math.sqrt(2 * m * (1 - m) / clips) for m in ((a + b) / 2 for a, b in pairs)]
    print(
        f"    a placement's two reference runs differ by {100 * statistics.median(gaps):.1f} points (median; "
        f"largest {100 * max(gaps):.1f}); the held-out set's sampling alone would give "
        f"{100 * statistics.median(sampling):.1f} ({clips} clips): the rest is the trainer seed"
    )
    ceil = ", ".join(f"m={k} {tau_ceiling(r, k):.2f}" for k in (1, 2, 3, 4, 6))
    print(
        "    an exact ranking (each placement's expected reference accuracy) would reach, against the mean of m "
        f"reference seeds, tau {ceil} (Spearman-Brown, Greiner)"
    )
    need = next((k for k in range(1, 33) if tau_ceiling(r, k) >= GOAL), None)
    print(
        f"    tau >= {GOAL} is reachable only against the mean of >= {need or '> 32'} reference seeds; this table has {m}"
    )
    rs = t.complete_seeds("reference") if len(t.complete_seeds("reference")) > 1 else t.seeds("reference")
    shared = [p for p in places if all(t.accuracy(p, "reference", s) is not None for s in rs)]
    if len(shared) >= 10 and len(pseeds := t.seeds("proxy")) > 1:
        a = mean_of_seeds(t, shared, "proxy", pseeds)
        one = mean_of_seeds(t, shared, "reference", [rs[0]])
        both = mean_of_seeds(t, shared, "reference", rs)
        print(
            f"    on those placements, the mean of {len(pseeds)} proxy seeds: tau {kendall_tau(a, one):+.3f} vs reference "
            f"seed {rs[0]}, {kendall_tau(a, both):+.3f} vs the mean of {len(rs)}"
        )
    corr = ", ".join(f"k={k} {disattenuated_tau(statistics.fmean(v), r, m):.2f}" for k, v in sorted(taus_k.items()))
    print(f"    (c) corrected for the reference's noise (tau vs the noise-free reference, estimated): {corr}")
    return r


if __name__ == "__main__":
    main()
