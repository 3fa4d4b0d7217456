#!/usr/bin/env python3
"""Measure the synthetic motion benchmark on the ``tiny`` space at the default proxy budget.

Trains all_2d, all_3d, all_sep, all_2plus1d and every bottom_heavy_K / top_heavy_K
placement (each with the trainer's defaults: 200 steps of 32 clips, 16 x 32 x 32) and
prints a Markdown table of held-out top-1 per class family and MACs (at the proxy clip),
the table in docs/data.md.

    .venv/bin/python scripts/synthetic_table.py [--seeds 0 1] [--difficulty 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from placement_search import load_space
from placement_search.data import FAMILIES, SyntheticConfig, SyntheticMotion
from placement_search.train import ProxyBudget, train_proxy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--difficulty", type=float, default=SyntheticConfig().difficulty)
    args = parser.parse_args()
    space = load_space("tiny")
    data = SyntheticMotion(SyntheticConfig(difficulty=args.difficulty))
    costs = space.costs(frames=data.frames, size=data.size, num_classes=data.num_classes)
    n = len(space.groups)
    names = ["all_2d", "all_3d", "all_sep", "all_2plus1d"]
    names += [f"bottom_heavy_{k}" for k in range(1, n)] + [f"top_heavy_{k}" for k in range(1, n)]
    budget = ProxyBudget()
    print(
        f"tiny space, synthetic data (difficulty {args.difficulty}, {data.frames}x{data.size}x{data.size}, "
        f"{data.num_classes} classes, {data.eval_size} held-out clips); {budget.steps} steps x {budget.batch_size} "
        f"clips, {budget.optimizer} lr {budget.lr}; seeds {args.seeds}",
        file=sys.stderr,
    )
    fams = list(FAMILIES)
    header = ["placement", "ops", "MACs (M)", "top-1 %", *[f"{f} %" for f in fams]]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in names:
        p = space.resolve(name)
        accs: list[float] = []
        fam_accs: dict[str, list[float]] = {f: [] for f in fams}
        for seed in args.seeds:
            r = train_proxy(lambda p=p: space.build(p, num_classes=data.num_classes), data, ProxyBudget(seed=seed))
            if r.accuracy is None:
                raise SystemExit(f"{name} seed {seed}: {r.status} {r.reason}")
            accs.append(100 * r.accuracy)
            for f, classes in FAMILIES.items():
                fam_accs[f].append(100 * statistics.mean(r.per_class_accuracy[c] for c in classes))

        def fmt(v: list[float]) -> str:
            return f"{statistics.mean(v):.1f}" + (f" ± {statistics.stdev(v):.1f}" if len(v) > 1 else "")

        macs, _ = costs.cost(p)
        row = [
            name,
            space.placement_string(p),
            f"{macs / 1e6:.1f}",
            fmt(accs),
            *[fmt(fam_accs[f]) for f in fams],
        ]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
