#!/usr/bin/env python3
"""The S3D paper's figure from the ground-truth table: accuracy against compute of the
bottom-heavy and top-heavy families, with error bars from the table's trainer seeds, at the
proxy and at the reference budget. Writes a self-contained SVG (no plotting library needed).

    .venv/bin/python scripts/families_figure.py [--table benchmarks/tables/tiny_sub243.csv] \
        [-o docs/figures/families_tiny_sub243.svg]

Also prints the numbers as a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from placement_search import load_space
from placement_search.table import read_table

ROOT = Path(__file__).resolve().parent.parent
COLOURS = {"bottom-heavy": "#1f77b4", "top-heavy": "#d62728"}
LEGEND = {"bottom-heavy": "bottom-heavy K: the first K blocks 3D", "top-heavy": "top-heavy K: the first K blocks 2D"}


def family_points(table, space, budget: str) -> dict[str, list[tuple[int, str, float, float, int, float]]]:
    """Per family: (K, placement, mean, std, runs, GMACs) for K = 0 .. number of groups."""
    n = len(space.groups)
    out: dict[str, list[tuple[int, str, float, float, int, float]]] = {}
    for fam, prefix in (("bottom-heavy", "bottom_heavy"), ("top-heavy", "top_heavy")):
        pts = []
        for k in range(n + 1):
            p = space.placement_string(space.resolve(f"{prefix}_{k}"))
            s = table.stats(p, budget, table.complete_seeds(budget))
            if s is None:
                continue
            pts.append((k, p, s[0], s[1], s[2], table.cost(p)[0] / 1e9))
        out[fam] = pts
    return out


def svg(panels: list[tuple[str, dict]], title: str) -> str:
    w, h, pad_l, pad_r, pad_t, pad_b = 440, 340, 60, 20, 40, 50
    allx = [p[5] for _, fams in panels for pts in fams.values() for p in pts]
    ally = [p[2] + p[3] for _, fams in panels for pts in fams.values() for p in pts] + [
        p[2] - p[3] for _, fams in panels for pts in fams.values() for p in pts
    ]
    x0, x1 = min(allx) * 0.95, max(allx) * 1.05
    y0, y1 = max(0.0, min(ally) - 0.05), min(1.0, max(ally) + 0.05)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w * len(panels)}" height="{h + 30}" font-family="sans-serif" font-size="12">',
        f'<text x="{w * len(panels) / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>',
    ]
    for i, (name, fams) in enumerate(panels):
        ox = i * w

        def X(v: float, ox: float = ox) -> float:
            return ox + pad_l + (v - x0) / (x1 - x0) * (w - pad_l - pad_r)

        def Y(v: float) -> float:
            return 30 + pad_t + (1 - (v - y0) / (y1 - y0)) * (h - pad_t - pad_b)

        parts.append(f'<text x="{ox + w / 2}" y="{30 + pad_t - 12}" text-anchor="middle">{name}</text>')
        parts.append(
            f'<rect x="{X(x0)}" y="{Y(y1)}" width="{X(x1) - X(x0)}" height="{Y(y0) - Y(y1)}" fill="none" stroke="#999"/>'
        )
        for j in range(6):
            yv = y0 + (y1 - y0) * j / 5
            parts.append(f'<text x="{X(x0) - 6}" y="{Y(yv) + 4}" text-anchor="end">{100 * yv:.0f}</text>')
            parts.append(f'<line x1="{X(x0)}" x2="{X(x1)}" y1="{Y(yv)}" y2="{Y(yv)}" stroke="#eee"/>')
            xv = x0 + (x1 - x0) * j / 5
            parts.append(f'<text x="{X(xv)}" y="{Y(y0) + 16}" text-anchor="middle">{xv:.2f}</text>')
        parts.append(
            f'<text x="{X((x0 + x1) / 2)}" y="{Y(y0) + 34}" text-anchor="middle">GMACs at 16x112x112 (target input)</text>'
        )
        parts.append(
            f'<text x="{ox + 16}" y="{Y((y0 + y1) / 2)}" text-anchor="middle" transform="rotate(-90 {ox + 16} {Y((y0 + y1) / 2)})">held-out top-1 (%)</text>'
        )
        for fam, pts in fams.items():
            c = COLOURS[fam]
            path = " ".join(f"{'M' if j == 0 else 'L'}{X(p[5]):.1f},{Y(p[2]):.1f}" for j, p in enumerate(pts))
            parts.append(f'<path d="{path}" fill="none" stroke="{c}" stroke-width="1.5"/>')
            for k, _p, m, s, _n, x in pts:
                if s > 0:
                    parts.append(
                        f'<line x1="{X(x):.1f}" x2="{X(x):.1f}" y1="{Y(m - s):.1f}" y2="{Y(m + s):.1f}" stroke="{c}"/>'
                    )
                parts.append(f'<circle cx="{X(x):.1f}" cy="{Y(m):.1f}" r="3" fill="{c}"/>')
                parts.append(f'<text x="{X(x) + 4:.1f}" y="{Y(m) - 5:.1f}" fill="{c}" font-size="10">{k}</text>')
        for j, fam in enumerate(fams):
            parts.append(f'<circle cx="{X(x0) + 12}" cy="{Y(y0) - 14 - 16 * j}" r="4" fill="{COLOURS[fam]}"/>')
            parts.append(f'<text x="{X(x0) + 20}" y="{Y(y0) - 10 - 16 * j}">{LEGEND[fam]}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=ROOT / "benchmarks" / "tables" / "tiny_sub243.csv")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "figures" / "families_tiny_sub243.svg")
    args = parser.parse_args()
    table = read_table(args.table)
    space = load_space(table.space)
    panels = []
    for budget in table.budgets:
        fams = family_points(table, space, budget)
        steps = table.runs(fams["bottom-heavy"][0][1], budget)[0].steps
        seeds = len(table.complete_seeds(budget))  # a seed still being built is left out
        panels.append((f"{budget}: {steps} steps, {seeds} seed(s), mean ± std", fams))
        print(f"\n{budget} ({steps} steps): top-1 % mean ± std over seeds")
        print("| K | bottom-heavy | top-heavy |\n|---|---|---|")
        rows = {}
        for fam, pts in fams.items():
            for k, p, m, s, _n, x in pts:
                rows.setdefault(k, {})[fam] = f"{100 * m:.1f} ± {100 * s:.1f} (`{p}`, {x:.2f} GMACs)"
        for k in sorted(rows):
            print(f"| {k} | {rows[k].get('bottom-heavy', '-')} | {rows[k].get('top-heavy', '-')} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(svg(panels, f"Bottom-heavy vs top-heavy, tiny space, synthetic v2 ({args.table.name})"))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
