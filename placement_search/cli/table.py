"""``placement-search table build | export | show``: the ground-truth table on the command line."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..study.config import DEFAULT_STORAGE, check_storage_url
from ._format import emit, positive, render_table, self_command

__all__ = ["add_parsers"]


def _clock(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _BuildProgress:
    """One line per finished run on stderr, with the rate and the time left."""

    def __init__(self) -> None:
        self.todo = 0
        self.finished = 0
        self.t0 = time.monotonic()

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "open":
            self.todo = info["todo"]
            print(
                f"table {info['study']!r}: {info['total']} runs, {info['done']} done before, {info['todo']} to do",
                file=sys.stderr,
                flush=True,
            )
        elif kind == "ray":
            print(f"ray: {info['slots']} runs at a time", file=sys.stderr, flush=True)
        elif kind == "run":
            self.finished += 1
            elapsed = time.monotonic() - self.t0
            left = elapsed / self.finished * (self.todo - self.finished)
            acc = f"{100 * info['accuracy']:5.1f}%" if info["accuracy"] is not None else "    -"
            why = f" ({info['reason']})" if info["status"] != "ok" and info.get("reason") else ""
            print(
                f"[{info['done']}/{info['total']} | {_clock(elapsed)} elapsed | ~{_clock(left)} left] "
                f"{info['budget']} seed {info['seed']}: {info['placement']}: {info['status']} {acc} "
                f"in {info['wall_time_s']:.0f} s{why}",
                file=sys.stderr,
                flush=True,
            )


def _read_placements(path: str) -> list[tuple[str, str]]:
    """``--placements FILE``: one placement string a line (blank lines and ``#`` comments
    skipped), each with the file and line it came from."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--placements {path}: cannot read it ({e})") from None
    out = [
        (" ".join(text.split()), f"{path}, line {i}")
        for i, line in enumerate(lines, 1)
        if (text := line.split("#", 1)[0].strip())
    ]
    if not out:
        raise UserError(f"--placements {path}: no placements in it; expected one placement string a line")
    return out


def cmd_table_build(args: argparse.Namespace) -> int:
    from ..study.config import load_study_config
    from ..study.table_build import build_table
    from ..table.table import read_table

    cfg = load_study_config(args.study_toml)
    seed_table = read_table(args.from_table) if args.from_table else None
    placements = _read_placements(args.placements) if args.placements else None
    storage = check_storage_url(args.storage) if args.storage else cfg.storage
    result = build_table(
        cfg,
        storage=storage,
        study_name=args.study_name,
        ray_address=args.ray_address,
        budgets=args.budget,
        max_runs=args.max_runs,
        timeout=args.timeout,
        on_event=_BuildProgress(),
        seed_table=seed_table,
        placements=placements,
    )
    if result.imported:
        print(f"took {result.imported} runs from {args.from_table}")
    have = result.done_before + result.done
    print(
        f"table {result.study!r}: {have} of {result.total} runs done ({result.done} now, {result.failed} failed and "
        f"left for the next build); {result.stop_reason}"
    )
    print(f"next: {self_command()} table export --storage {storage} --study {result.study} -o {result.study}.csv")
    if result.interrupted:
        return 143 if result.signal == "SIGTERM" else 130
    return 0


def cmd_table_export(args: argparse.Namespace) -> int:
    from ..inspect.table_export import export_table
    from ..study.storage import load_study, open_storage

    study = load_study(open_storage(args.storage, create=False), args.study)
    command = "placement-search " + " ".join(shlex.quote(a) for a in (args.build_command or []))
    summary = export_table(study, args.output, command=command if args.build_command else None)
    if args.json:
        emit(summary)
        return 0
    print(f"wrote {summary['csv']} ({summary['rows']} rows) and {summary['card']}")
    print(
        render_table(
            [
                [k, v["placements"], ", ".join(map(str, v["seeds"])), v["runs"], f"{v['train_time_s'] / 3600:.2f}"]
                for k, v in summary["budgets"].items()
            ],
            ["budget", "placements", "seeds", "runs", "train hours"],
        )
    )
    return 0


def cmd_table_show(args: argparse.Namespace) -> int:
    from ..table.table import read_table

    t = read_table(args.table)
    budgets = t.budgets
    rows = []
    for p in t.placements():
        cells: list[Any] = [p]
        for b in budgets:
            s = t.stats(p, b)
            cells.append(f"{100 * s[0]:.1f} ± {100 * s[1]:.1f} (n={s[2]})" if s else "-")
        macs, _ = t.cost(p)
        cells.append(f"{macs / 1e9:.3f}")
        rows.append(cells)
    key = budgets[-1]
    rows.sort(key=lambda r: -(t.accuracy(r[0], key) or -1))
    if args.json:
        emit([{"placement": r[0], **{b: t.stats(r[0], b) for b in budgets}} for r in rows])
        return 0
    print(f"{t.path}: space {t.space}, {len(t.placements())} placements, budgets {', '.join(budgets)}")
    print(
        render_table(
            rows[: args.top] if args.top else rows, ["placement", *[f"{b} top-1 %" for b in budgets], "GMACs (target)"]
        )
    )
    return 0


def add_parsers(sub: Any) -> None:
    table = sub.add_parser("table", help="build, export and show a ground-truth table (every placement, several seeds)")
    tsub = table.add_subparsers(dest="table_command", required=True, metavar="COMMAND")

    p = tsub.add_parser("build", help="train every placement of the study's [table] (resumable; cheapest runs first)")
    p.add_argument(
        "study_toml", metavar="STUDY_TOML", help="a study file with a [table] section, e.g. studies/table_tiny.toml"
    )
    p.add_argument("--storage", metavar="URL", help="SQLAlchemy URL (default: the study file's)")
    p.add_argument("--study-name", metavar="NAME", help="the table study's name (default: the study file's)")
    p.add_argument("--ray-address", metavar="ADDR", help="'auto' or host:port to join a Ray cluster (default: local)")
    p.add_argument("--budget", action="append", metavar="NAME", help="only this budget (repeatable; default: all)")
    p.add_argument("--max-runs", type=positive, metavar="N", help="stop after N new runs")
    p.add_argument(
        "--from",
        dest="from_table",
        metavar="TABLE_CSV",
        help="first take the runs of an exported table (e.g. a committed one) into the study: build on",
    )
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="stop starting runs after this long")
    p.add_argument(
        "--placements",
        metavar="FILE",
        help="only the runs of the placements listed in FILE (one placement string a line, as `table show` prints "
        "them; # comments), in its order: e.g. a new seed first where searches' fronts are",
    )
    p.set_defaults(func=cmd_table_build)

    p = tsub.add_parser(
        "export", help="write a table study as a CSV (one row per placement, budget and seed) and a data card"
    )
    p.add_argument(
        "--storage", metavar="URL", default=DEFAULT_STORAGE, help=f"SQLAlchemy URL (default {DEFAULT_STORAGE})"
    )
    p.add_argument("--study", required=True, metavar="NAME")
    p.add_argument(
        "-o", "--output", required=True, metavar="TABLE_CSV", help="the CSV to write (the card goes beside it as .md)"
    )
    p.add_argument("--build-command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_table_export)

    p = tsub.add_parser("show", help="a table CSV: mean ± std per placement and budget, best first")
    p.add_argument("table", metavar="TABLE_CSV")
    p.add_argument("--top", type=positive, metavar="N", help="only the N best")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_table_show)
