"""How good is the front a search reports, after how many trials? Replayed on the ground truth.

Each study runs the real driver (samplers, early stopping, dedup, SQLite storage, Ray workers)
with the table evaluator: a worker looks each placement up in the committed table
(``benchmarks/tables/tiny_sub243.csv``) at the proxy budget, with a trainer seed drawn per trial,
instead of training it. The space is the table's sub-space (tiny, op kinds 2d/3d/sep: 243
placements); the study is the quickstart's (accuracy vs MACs at 16x112x112, early stopping on).

For each sampler (TPE, NSGA-II, GP, random, and the paper's ``families``: the uniform and the
bottom-/top-heavy placements, 11 here) and sampler seed, after 20, 40, 60, 100 and 200 trained
trials (ok, stopped early or failed: the trial budget's count), the front the study reports
(``placement-search pareto``: its Pareto-optimal trials by proxy accuracy) is judged by the
reference: the hypervolume of those placements under their reference accuracy and exact target
MACs, as a share of the hypervolume of the true reference front (reference point: accuracy 0,
1.1 x the largest MACs). Printed: mean ± std over sampler seeds; last line: the number of trials
the best sampler needs to reach 0.95 (mean over seeds).

    python benchmarks/search_efficiency.py [--table PATH] [--seeds N] [--samplers tpe,random,...]

About a minute on 2 CPU cores with the defaults (10 sampler seeds). Optuna's GP sampler takes
about 6 minutes a replay here (a GP fit and acquisition search per proposal), so its replays are
run once with ``--recompute-gp`` and kept in ``benchmarks/tables/search_efficiency_gp.json``,
keyed by the table's SHA-256, the Optuna version and the checkpoints; a run whose table or Optuna
differs says so and leaves GP out rather than printing stale numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from placement_search.study.records import COUNTED, trial_attrs
from placement_search.table import read_table
from placement_search.table.analysis import front, reference_hv_share

DEFAULT = Path(__file__).resolve().parent / "tables" / "tiny_sub243.csv"
CHECKPOINTS = (20, 40, 60, 100, 200)
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
name = "{name}"
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
steps = {steps}
eval_every = {eval_every}

[early_stopping]
enabled = true
margin = 0.08
min_trials = 4

[artifacts]
enabled = false

[resources]
cpus = 1
"""


def reported_fronts(study, checkpoints: tuple[int, ...]) -> dict[int, list[str]]:
    """The front the study reported once it had counted n trials, for each checkpoint n."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.datetime_complete or t.datetime_start)
    out: dict[int, list[str]] = {}
    ok: list[tuple[str, float, int]] = []
    counted = 0
    for t in trials:
        ua = trial_attrs(t)
        status = ua.get("status")
        if status == "ok" and t.values:
            ok.append((ua["placement_string"], float(ua["accuracy"]), int(ua["macs"])))
        if status in COUNTED:
            counted += 1
            for n in checkpoints:
                if counted == n:
                    out[n] = [ok[i][0] for i in front([(a, m) for _, a, m in ok])]
    final = [ok[i][0] for i in front([(a, m) for _, a, m in ok])]
    for n in checkpoints:
        out.setdefault(n, final)  # the study ended before n (the families, or the space exhausted)
    return out


def replay(job: tuple[str, int, str, str, int, int]) -> tuple[str, int, dict[int, float], float]:
    """One study against the table (in a worker process): the reference HV share at each checkpoint."""
    sampler, seed, table_path, folder, steps, eval_every = job
    import optuna

    from placement_search.study import SearchDriver, load_study_config
    from placement_search.study.storage import open_storage, quiet_optuna

    quiet_optuna()
    warnings.filterwarnings("ignore")
    table = _table(table_path)
    places = table.placements(complete=True)
    tmp = Path(folder)
    name = f"{sampler}-{seed}"
    path = tmp / f"{name}.toml"
    path.write_text(
        STUDY.format(
            name=name,
            space=tmp / "tiny_sub.toml",
            sampler=sampler,
            seed=seed,
            trials=max(CHECKPOINTS),
            first=str(FAMILIES if sampler == "families" else []).replace("'", '"'),
            table=table_path,
            steps=steps,
            eval_every=eval_every,
        )
    )
    # Optuna's journal file: the same public storage API as SQLite, several times faster per write
    url = f"journal:///{tmp / (name + '.log')}"
    t0 = time.perf_counter()
    SearchDriver(load_study_config(path), storage=url, executor="inline").run()
    elapsed = time.perf_counter() - t0
    study = optuna.load_study(study_name=name, storage=open_storage(url, create=False))
    shares = {
        n: reference_hv_share(table, rep, placements=places) for n, rep in reported_fronts(study, CHECKPOINTS).items()
    }
    return sampler, seed, shares, elapsed


_TABLES: dict[str, object] = {}

GP_CACHE = Path(__file__).resolve().parent / "tables" / "search_efficiency_gp.json"


def _gp_key(table: Path, seeds: int) -> dict[str, object]:
    import hashlib

    import optuna

    return {
        "table_sha256": hashlib.sha256(table.read_bytes()).hexdigest(),
        "optuna": optuna.__version__,
        "seeds": seeds,
        "checkpoints": list(CHECKPOINTS),
    }


def _gp_cache(table: Path, seeds: int) -> dict[int, list[float]] | None:
    import json

    if not GP_CACHE.is_file():
        return None
    data = json.loads(GP_CACHE.read_text())
    if data.get("key") != _gp_key(table, seeds):
        return None
    return {int(n): [float(v) for v in vs] for n, vs in data["shares"].items()}


def _store_gp_cache(table: Path, seeds: int, shares: dict[int, list[float]]) -> None:
    import json

    GP_CACHE.write_text(json.dumps({"key": _gp_key(table, seeds), "shares": shares}, indent=1) + "\n")
    print(f"stored the GP replays in {GP_CACHE}")


def _table(path: str):
    if path not in _TABLES:
        _TABLES[path] = read_table(path)
    return _TABLES[path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=DEFAULT)
    parser.add_argument("--seeds", type=int, default=10, help="sampler seeds per sampler")
    parser.add_argument("--samplers", default="tpe,nsga2,gp,random,families")
    parser.add_argument(
        "--recompute-gp", action="store_true", help=f"replay GP now (slow) and store the result in {GP_CACHE.name}"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="replays at a time")
    args = parser.parse_args()
    import multiprocessing

    table = read_table(args.table)
    places = table.placements(complete=True)
    if len(places) < 243:
        print(
            f"note: {args.table.name} holds {len(places)} placements with runs at every budget; fronts are judged on those"
        )
    first = table.runs(places[0], "proxy")[0]
    steps = first.steps
    eval_every = first.eval_curve[0][0] if len(first.eval_curve) > 1 else 0
    samplers = args.samplers.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="ps-eff-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    (tmp / "tiny_sub.toml").write_text(SPACE.format())
    jobs = []
    cached_gp = None
    if "gp" in samplers and not args.recompute_gp:
        cached_gp = _gp_cache(args.table, args.seeds)
        if cached_gp is None:
            print(
                f"note: no GP replays of this table in {GP_CACHE.name} (table, Optuna version or seeds differ); "
                "GP left out: run with --recompute-gp (about 6 minutes a replay on 2 cores) to add them"
            )
        samplers = [s for s in samplers if s != "gp"] + (["gp"] if cached_gp is not None else [])
    for sampler in samplers:
        if sampler == "gp" and cached_gp is not None:
            continue
        n_seeds = 1 if sampler == "families" else args.seeds
        jobs += [(sampler, seed, str(args.table.resolve()), str(tmp), steps, eval_every) for seed in range(n_seeds)]
    jobs.sort(key=lambda j: j[0] != "gp")  # the slowest first, for an even load
    results: dict[str, dict[int, list[float]]] = {s: {n: [] for n in CHECKPOINTS} for s in samplers}
    t0 = time.perf_counter()
    busy = 0.0
    try:
        with multiprocessing.get_context("spawn").Pool(max(1, args.workers)) as pool:
            for sampler, _seed, shares, elapsed in pool.imap_unordered(replay, jobs):
                busy += elapsed
                for n, v in shares.items():
                    results[sampler][n].append(v)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - t0
    if cached_gp is not None:
        results["gp"] = cached_gp
    elif args.recompute_gp and "gp" in results:
        _store_gp_cache(args.table, args.seeds, results["gp"])
    print(f"reference hypervolume share of the reported front ({table.path.name}; mean ± std over sampler seeds)")
    print(
        f"{'sampler':10s} {'seeds':>5s} " + " ".join(f"{'n=' + str(n):>13s}" for n in CHECKPOINTS) + "   trials to 0.95"
    )
    need: dict[str, float] = {}
    for sampler, by_n in results.items():
        cells = []
        for n in CHECKPOINTS:
            v = by_n[n]
            cells.append(
                f"{statistics.fmean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}        "
            )
        reach = next((n for n in CHECKPOINTS if statistics.fmean(by_n[n]) >= 0.95), None)
        need[sampler] = reach if reach is not None else float("inf")
        print(
            f"{sampler:10s} {len(by_n[CHECKPOINTS[0]]):5d} "
            + " ".join(f"{c:>13s}" for c in cells)
            + f"   {reach or '> 200'}"
        )
    print(
        f"({len(jobs)} replays through the real driver: {wall:.0f} s wall, {busy / max(1, len(jobs)):.1f} s a replay"
        + (f"; GP: {len(cached_gp[CHECKPOINTS[0]])} replays from {GP_CACHE.name})" if cached_gp is not None else ")")
    )
    best = min(need, key=lambda s: need[s])
    if need[best] == float("inf"):
        print("trials the best sampler needs to reach 0.95 of the reference hypervolume: > 200 (no sampler reached it)")
    else:
        print(f"trials the best sampler ({best}) needs to reach 0.95 of the reference hypervolume: {need[best]:.0f}")


if __name__ == "__main__":
    main()
