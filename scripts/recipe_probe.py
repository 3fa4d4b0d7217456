"""Why do two trainer seeds of the 80-step proxy disagree? The recipe, probed.

Trains a fixed sample of placements of the ground-truth table's sub-space (tiny, 2d/3d/sep) on
the table's data (synthetic version 2, 8 x 32 x 32, 440 held-out clips) with several trainer
seeds under a few proxy recipes of about the same cost, and prints for each recipe: Kendall tau
between every pair of seeds over the placements (how repeatable the ranking is), the median
seed-to-seed spread of one placement, the mean accuracy per seed (does one seed lift every
placement?), and tau of the seeds' mean against the table's reference accuracy.

    python scripts/recipe_probe.py [--placements 16] [--seeds 3] [--recipes table,lr3e-3,...]

The ``table`` recipe is the table's proxy: its runs are read from the table, not trained again.
Results are appended to a JSON lines file (``--out``, resumable: runs already there are
skipped), so the probe can be stopped and continued.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from placement_search.data.config import DataConfig
from placement_search.space import load_space
from placement_search.table import read_table
from placement_search.table.analysis import kendall_tau
from placement_search.train import ProxyBudget, train_proxy

TABLE = Path(__file__).resolve().parent.parent / "benchmarks" / "tables" / "tiny_sub243.csv"
BASE = ProxyBudget(steps=80, batch_size=32, lr=1e-3, warmup_steps=10, eval_every=20, eval_batch_size=110)
#: recipes of about the table proxy's cost (80 steps of 32 clips), name -> changes
RECIPES = {
    "table": {},
    "lr3e-3": {"lr": 3e-3},
    "lr3e-3-warm20": {"lr": 3e-3, "warmup_steps": 20},
    "sgd": {"optimizer": "sgd", "lr": 0.05, "weight_decay": 1e-4},
    "batch16x160": {"batch_size": 16, "steps": 160, "warmup_steps": 20},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--placements", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--out", type=Path, default=Path("recipe_probe.jsonl"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    table = read_table(TABLE)
    space = load_space("tiny")
    places = sorted(table.placements("reference"))
    random.Random(0).shuffle(places)
    places = places[: args.placements]
    data = DataConfig(source="synthetic", version=2, frames=8, size=32, difficulty=0.5, eval_clips=440).build()
    done = {}
    if args.out.is_file():
        for line in args.out.read_text().splitlines():
            r = json.loads(line)
            done[r["recipe"], r["placement"], r["seed"]] = r["accuracy"]
    recipes = args.recipes.split(",")
    for name, p, seed in itertools.product(recipes, places, range(args.seeds)):
        if (name, p, seed) in done:
            continue
        if name == "table" and table.accuracy(p, "proxy", seed) is not None:
            done[name, p, seed] = table.accuracy(p, "proxy", seed)  # the table's own runs: this recipe
            continue
        budget = replace(BASE, seed=seed, threads=args.threads, **RECIPES[name])
        t0 = time.perf_counter()
        r = train_proxy(lambda p=p: space.build(p, num_classes=data.num_classes), data, budget)
        rec = {"recipe": name, "placement": p, "seed": seed, "accuracy": r.accuracy, "curve": r.eval_curve}
        rec["wall_s"] = round(time.perf_counter() - t0, 1)
        done[name, p, seed] = r.accuracy
        with args.out.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(f"{name:14s} seed {seed} {p}: {r.accuracy:.3f} in {rec['wall_s']} s", flush=True)
    ref = [table.accuracy(p, "reference") for p in places]
    print(f"\n{len(places)} placements x {args.seeds} seeds; reference accuracy {min(ref):.2f}-{max(ref):.2f}")
    print(f"{'recipe':14s} {'tau seed/seed':>22s} {'spread':>7s} {'mean per seed':>24s} {'tau mean/ref':>12s}")
    for name in recipes:
        acc = {s: [done[name, p, s] for p in places] for s in range(args.seeds)}
        taus = [kendall_tau(acc[a], acc[b]) for a, b in itertools.combinations(range(args.seeds), 2)]
        spread = statistics.median(
            max(done[name, p, s] for s in acc) - min(done[name, p, s] for s in acc) for p in places
        )
        means = " ".join(f"{statistics.fmean(v):.2f}" for v in acc.values())
        mean = [statistics.fmean(done[name, p, s] for s in acc) for p in places]
        print(
            f"{name:14s} {statistics.fmean(taus):+.2f} ({' '.join(f'{t:+.2f}' for t in taus)}) {spread:7.2f} "
            f"{means:>24s} {kendall_tau(mean, ref):+12.2f}"
        )


if __name__ == "__main__":
    main()
