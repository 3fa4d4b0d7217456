"""The ``placement-search`` command line: a thin layer over the Python API.

User mistakes (bad files, names, values) print one ``error:`` line and exit with status 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .._version import __version__
from ..catalog import family_table, reference_table
from ..devices import resolve_device
from ..errors import UserError
from ..space import SearchSpace, list_spaces, load_space
from ..train import ProxyBudget, train_proxy
from ._format import count_arg, emit, fmt_g, fmt_m, nonnegative, positive, render_table

__all__ = ["main"]


# -- space ----------------------------------------------------------------------------------


def cmd_space_list(args: argparse.Namespace) -> None:
    spaces = [load_space(n) for n in list_spaces()]
    if args.json:
        emit([{"name": s.name, "description": s.description, "size": s.size, "path": str(s.path)} for s in spaces])
        return
    print(
        render_table(
            [(s.name, f"{s.size:,}", len(s.groups), s.description) for s in spaces],
            ["space", "placements", "decisions", "description"],
            "lrrl",
        )
    )


def cmd_space_show(args: argparse.Namespace) -> None:
    space = load_space(args.space)
    info = space.describe()
    if args.json:
        emit(info)
        return
    print(f"space {space.name}: {space.description}")
    print(f"file: {space.path}")
    bargs = ", ".join(f"{k}={v}" for k, v in info["backbone"]["args"].items())
    print(f"backbone: {space.backbone.name} ({bargs})")
    print(f"default clip: {space.clip[0]} frames x {space.clip[1]}x{space.clip[1]}")
    print()
    print(
        render_table(
            [
                (
                    p["name"],
                    p["group"],
                    f"{p['in_channels']}->{p['out_channels']}",
                    p["spatial_stride"],
                    p["default_kt"],
                    " ".join(p["choices"]),
                )
                for p in info["positions"]
            ],
            ["position", "group", "channels", "stride", "kt", "choices"],
            "llrrrl",
        )
    )
    print()
    print(f"{len(space.groups)} decisions (tied groups), {space.size:,} placements")
    print()
    print(
        render_table(
            [
                (n, v["string"], "yes" if v["in_space"] else "no: a reference model", v["description"])
                for n, v in info["placements"].items()
            ],
            ["named placement", "ops (one per group)", "in space?", "description"],
            "llll",
        )
    )


def cmd_space_count(args: argparse.Namespace) -> None:
    space = load_space(args.space)
    costs = space.costs(frames=args.frames, size=args.size, num_classes=args.classes)
    summary = costs.summary()
    out: dict[str, Any] = {
        "space": space.name,
        "input": list(costs.input_shape),
        "placements": costs.size,
        **summary,
        "min_macs_placement": space.placement_string(costs.placement(summary["min_macs_index"])),
        "max_macs_placement": space.placement_string(costs.placement(summary["max_macs_index"])),
    }
    if args.max_macs is not None or args.max_params is not None:
        out["budget"] = {"max_macs": args.max_macs, "max_params": args.max_params}
        out["within_budget"] = costs.count_within(max_macs=args.max_macs, max_params=args.max_params)
    if args.json:
        emit(out)
        return
    print(f"space {space.name} at input {tuple(costs.input_shape)}: {costs.size:,} placements")
    print(
        f"  MACs   {fmt_g(summary['min_macs'])} .. {fmt_g(summary['max_macs'])}"
        f"   (FLOPs {fmt_g(2 * summary['min_macs'])} .. {fmt_g(2 * summary['max_macs'])})"
    )
    print(f"  params {fmt_m(summary['min_params'])} .. {fmt_m(summary['max_params'])}")
    print(f"  fewest MACs: {out['min_macs_placement']}")
    print(f"  most MACs:   {out['max_macs_placement']}")
    if "within_budget" in out:
        parts = []
        if args.max_macs is not None:
            parts.append(f"MACs <= {fmt_g(args.max_macs)}")
        if args.max_params is not None:
            parts.append(f"params <= {fmt_m(args.max_params)}")
        n = out["within_budget"]
        print(f"  within budget ({', '.join(parts)}): {n:,} placements ({100 * n / costs.size:.2f}%)")


# -- flops ----------------------------------------------------------------------------------


def _placement_notes(space: SearchSpace, placement: Any, frames: int) -> list[str]:
    """What a user should know about a placement the space would not propose: choices outside
    the space, temporal kernels longer than the clip."""
    kt = {p.name: p.default_kt for p in space.positions}
    notes = []
    outside = [pos for pos in space.position_choices if placement[pos] not in space.position_choices[pos]]
    if outside:
        pos = outside[0]
        allowed = ", ".join(c.token(kt[pos]) for c in space.position_choices[pos])
        more = f" (and {len(outside) - 1} more positions)" if len(outside) > 1 else ""
        notes.append(
            f"{pos} uses {placement[pos].token(kt[pos])}, outside the choices of space {space.name!r} ({allowed}){more}: "
            "a search would never propose this placement"
        )
    long = sorted({placement[pos].kt for pos in space.position_choices if placement[pos].kt > frames})
    if long:
        notes.append(
            f"temporal kernel(s) {', '.join(map(str, long))} are longer than the {frames}-frame clip: "
            "most of each kernel sees only padding"
        )
    return notes


def cmd_flops(args: argparse.Namespace) -> None:
    space = load_space(args.space)
    placement = space.resolve(args.placement)
    cost = space.cost(placement, frames=args.frames, size=args.size, num_classes=args.classes)
    notes = _placement_notes(space, placement, cost.input[2])
    for note in notes:
        print(f"placement-search: note: {note}", file=sys.stderr)
    out = {
        "space": space.name,
        "placement": space.placement_string(placement),
        "placement_json": placement.to_dict(),
        "notes": notes,
        "classes": args.classes,
        **cost.to_dict(per_layer=args.per_layer),
    }
    if args.latency:
        from ..latency import measure_latency

        model = space.build(placement, num_classes=args.classes)
        out["latency"] = measure_latency(
            model, cost.input, device=args.device, batch=args.batch, runs=args.runs
        ).to_dict()
    if args.json:
        emit(out)
        return
    print(f"space {space.name}, placement: {out['placement']}")
    print(f"input {tuple(cost.input)} (N, C, T, H, W), {args.classes} classes")
    print(f"  params {cost.params:,} ({fmt_m(cost.params)})")
    print(f"  MACs   {cost.macs:,} ({fmt_g(cost.macs)})")
    print(f"  FLOPs  {cost.flops:,} ({fmt_g(cost.flops)})  = 2 x MACs")
    print()
    kt = {p.name: p.default_kt for p in space.positions}
    rows = [
        (n, placement[n].token(kt[n]), f"{c.params:,}", fmt_g(c.macs), f"{100 * c.macs / cost.macs:.1f}%")
        for n, c in cost.per_position.items()
    ]
    rows.append(
        (
            "(fixed layers)",
            "",
            f"{cost.fixed.params:,}",
            fmt_g(cost.fixed.macs),
            f"{100 * cost.fixed.macs / cost.macs:.1f}%",
        )
    )
    print(render_table(rows, ["position", "op", "params", "MACs", "share"], "llrrr"))
    if args.per_layer:
        print()
        print(
            render_table(
                [
                    (
                        lay.name,
                        lay.position or "",
                        "x".join(map(str, lay.kernel)),
                        "x".join(map(str, lay.stride)),
                        "x".join(map(str, lay.out_shape[1:])),
                        f"{lay.params:,}",
                        f"{lay.macs:,}",
                    )
                    for lay in cost.layers
                ],
                ["layer", "position", "kernel", "stride", "output", "params", "MACs"],
                "llllrrr",
            )
        )
    if args.latency:
        lat = out["latency"]
        print()
        print(
            f"latency on {lat['device']}, batch {lat['batch']}: median {lat['median_ms']:.2f} ms "
            f"({lat['clips_per_s']:.1f} clips/s) over {lat['runs']} runs after {lat['warmup']} warm-up"
        )


# -- families -------------------------------------------------------------------------------


def cmd_families(args: argparse.Namespace) -> None:
    space = load_space(args.space)
    kind = args.kind or space.family_kind
    rows = family_table(space, frames=args.frames, size=args.size, classes=args.classes, kind=kind)
    shape = space.input_shape(args.frames, args.size)
    if args.json:
        emit({"space": space.name, "input": list(shape), "kind": kind, "families": rows})
        return
    print(f"space {space.name}, temporal kind {kind}, input {shape} (N, C, T, H, W)")
    print(
        render_table(
            [(r["name"], r["placement"], f"{r['params']:,}", fmt_g(r["macs"]), fmt_g(r["flops"])) for r in rows],
            ["placement", "ops (one per group)", "params", "MACs", "FLOPs"],
            "llrrr",
        )
    )


# -- train --------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> None:
    from ..data import make_data

    space = load_space(args.space)
    placement = space.resolve(args.placement)
    video: dict[str, Any] = {}
    if args.data != "synthetic":
        video = {"stride": args.stride, "num_workers": args.workers}
        if args.cache_dir is not None:
            video["cache_dir"] = args.cache_dir
    data = make_data(
        args.data,
        frames=args.frames,
        size=args.size,
        val=args.val,
        seed=args.data_seed,
        difficulty=args.difficulty,
        **({"version": args.data_version} if args.data == "synthetic" else {}),
        **video,
    )
    defaults = ProxyBudget()
    budget = ProxyBudget(
        steps=args.steps,
        batch_size=args.batch,
        lr=args.lr if args.lr is not None else defaults.lr,
        optimizer=args.optimizer,
        eval_every=args.eval_every if args.eval_every is not None else defaults.eval_every,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
    )

    from ..progressbar import progress_bar

    # a bar on stderr: always on a terminal; with --json only there (stdout is for the JSON)
    show = not args.quiet and (sys.stderr.isatty() or not args.json)
    bar = progress_bar(budget.steps, "training", "step", enabled=show)

    def progress(step: int, ev: Any) -> None:
        if not args.json:
            bar.write(f"  step {step:5d}/{budget.steps}: held-out top-1 {100 * ev.top1:5.1f}%", file=sys.stdout)
        bar.set_postfix_str(f"held-out top-1 {100 * ev.top1:.1f}%")

    def on_step(step: int) -> None:
        bar.update(step - bar.n)

    if not args.json:
        print(f"training {space.name}: {space.placement_string(placement)}")
        print(
            f"data: {args.data}, {data.num_classes} classes, {data.frames} frames x {data.size}x{data.size}; "
            f"{budget.steps} steps of {budget.batch_size} clips on {resolve_device(budget.device)}"
        )
    with bar:
        result = train_proxy(
            lambda: space.build(placement, num_classes=data.num_classes),
            data,
            budget,
            callback=progress,
            on_step=on_step,
        )
    cost = space.cost(placement, frames=data.frames, size=data.size, num_classes=data.num_classes)
    out = {
        "space": space.name,
        "placement": space.placement_string(placement),
        "placement_json": placement.to_dict(),
        "proxy_cost": {"params": cost.params, "macs": cost.macs, "flops": cost.flops, "input": list(cost.input)},
        **result.to_dict(),
    }
    if args.json:
        emit(out)
    else:
        print(f"status: {result.status}" + (f" ({result.reason})" if result.reason else ""))
        if result.accuracy is not None:
            top5 = f", top-5 {100 * result.top5:.1f}%" if result.top5 is not None else ""
            print(f"held-out top-1 {100 * result.accuracy:.1f}%{top5} on {data.eval_size} clips")
            print(
                render_table([(k, f"{100 * v:.1f}%") for k, v in result.per_class_accuracy.items()], ["class", "top-1"])
            )
        print(
            f"{result.clips_per_s:.0f} clips/s on {result.device} ({result.precision}), "
            f"{result.wall_time_s:.1f} s wall; proxy MACs {fmt_g(cost.macs)} per clip"
        )
    if result.status in ("failed", "out_of_memory", "diverged"):
        raise SystemExit(1)


# -- subset -------------------------------------------------------------------------------


def cmd_subset(args: argparse.Namespace) -> None:
    from ..data.video import make_subset

    classes: int | list[str] | None = None
    if args.classes is not None:
        classes = int(args.classes) if args.classes.isdigit() else [c for c in args.classes.split(",") if c.strip()]
        if not classes:
            raise UserError(
                f"--classes: expected a number of classes or a comma-separated list of names, got {args.classes!r}"
            )
    sub = make_subset(
        args.source,
        args.output,
        classes=classes,
        per_class=args.per_class,
        val_per_class=args.val_per_class,
        val_source=args.val_source,
        seed=args.seed,
        fmt=args.format,
    )
    out = {
        "train": str(sub.train),
        "val": str(sub.val) if sub.val else None,
        "classes": sub.class_names,
        "train_videos": sub.train_videos,
        "val_videos": sub.val_videos,
    }
    if args.json:
        emit(out)
        return
    print(f"{len(sub.class_names)} classes, {sub.train_videos} training videos -> {sub.train}")
    if sub.val:
        print(f"{sub.val_videos} held-out videos -> {sub.val}")


# -- references -----------------------------------------------------------------------------


def cmd_references(args: argparse.Namespace) -> None:
    rows = []
    for name in args.spaces or list_spaces():
        rows += reference_table(load_space(name), frames=args.frames, size=args.size, classes=args.classes)
    if args.json:
        emit(rows)
        return
    print("Reference architectures: params, MACs (multiply-adds of conv and linear layers) and FLOPs (= 2 x MACs)")
    print(f"at each space's default clip, {args.classes} classes\n")
    print(
        render_table(
            [
                (
                    r["space"],
                    r["name"],
                    "x".join(map(str, r["input"][2:])),
                    fmt_m(r["params"]),
                    fmt_g(r["macs"]),
                    fmt_g(r["flops"]),
                    r["description"],
                )
                for r in rows
            ],
            ["space", "placement", "clip TxHxW", "params", "MACs", "FLOPs", "description"],
            "llrrrrl",
        )
    )


# -- parser ---------------------------------------------------------------------------------


def _clip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=positive, help="clip length T (default: the space's clip)")
    p.add_argument("--size", type=positive, help="clip height and width S (default: the space's clip)")
    p.add_argument("--classes", type=positive, default=400, help="classifier width (default 400)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="placement-search",
        description="Search where a video network needs temporal convolutions (2D / 3D / separable).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    space = sub.add_parser("space", help="list and inspect search spaces")
    ssub = space.add_subparsers(dest="space_command", required=True, metavar="SUBCOMMAND")
    p = ssub.add_parser("list", help="the shipped search spaces")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_space_list)
    p = ssub.add_parser("show", help="positions, choices, tied groups, named placements, size")
    p.add_argument("space", metavar="SPACE", help="a space name from search_spaces/ or a path to a .toml file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_space_show)
    p = ssub.add_parser("count", help="MACs range over the whole space and the number of placements within a budget")
    p.add_argument("space", metavar="SPACE")
    _clip_args(p)
    p.add_argument("--max-macs", type=count_arg, help="MACs budget, e.g. 20G")
    p.add_argument("--max-params", type=count_arg, help="parameter budget, e.g. 10M")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_space_count)

    p = sub.add_parser("flops", help="params, MACs and FLOPs of one placement")
    p.add_argument("space", metavar="SPACE")
    p.add_argument(
        "--placement",
        required=True,
        metavar="NAME_OR_JSON",
        help="a named placement, placement JSON (text or .json file), or op tokens, one per group",
    )
    _clip_args(p)
    p.add_argument("--per-layer", action="store_true", help="list every conv and linear layer")
    p.add_argument("--latency", action="store_true", help="also time the built model")
    p.add_argument("--device", default="cpu", help="device for --latency (default cpu)")
    p.add_argument("--batch", type=positive, default=1, help="clips per forward pass for --latency")
    p.add_argument("--runs", type=positive, default=10, help="timed runs for --latency (median reported)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("families", help="cost of every bottom-heavy and top-heavy placement")
    p.add_argument("space", metavar="SPACE")
    _clip_args(p)
    p.add_argument("--kind", help="temporal kind of the families (default: the space's family_kind)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_families)

    p = sub.add_parser("train", help="one proxy training run of a placement")
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--placement", required=True, metavar="NAME_OR_JSON")
    p.add_argument(
        "--data",
        default="synthetic",
        metavar="synthetic|PATH",
        help="the built-in synthetic benchmark (default), or a folder per class / list file of videos",
    )
    p.add_argument("--val", metavar="PATH", help="held-out videos (default: a held-out share of --data)")
    p.add_argument("--steps", type=positive, default=ProxyBudget().steps, help="optimiser steps")
    p.add_argument("--frames", type=positive, default=16, help="clip length T (default 16)")
    p.add_argument("--size", type=positive, default=32, help="clip side S (default 32)")
    p.add_argument("--batch", type=positive, default=ProxyBudget().batch_size, help="clips per step")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--eval-every", type=nonnegative, help="intermediate evaluations every N steps (0: only at the end)")
    p.add_argument("--seed", type=int, default=0, help="weights, data order, augmentation")
    p.add_argument("--data-seed", type=int, default=0, help="identity of the synthetic data set")
    p.add_argument("--difficulty", type=float, default=0.5, help="synthetic data: 0 (easy) .. 1 (hard)")
    p.add_argument(
        "--data-version",
        type=int,
        choices=[1, 2],
        default=1,
        help="synthetic data: the benchmark's generation (1: original; 2: graded cues, see docs/data.md)",
    )
    p.add_argument("--stride", type=positive, default=2, help="real video: frames between sampled frames (default 2)")
    p.add_argument(
        "--workers", type=nonnegative, help="real video: DataLoader worker processes (default: min(4, cores - 1))"
    )
    p.add_argument(
        "--cache-dir", help="real video: decoded-clip cache folder (default ~/.cache/placement-search/clips)"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    p.add_argument("--threads", type=positive, help="CPU threads")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("subset", help="write list files for a Mini-Kinetics-style subset of a video data set")
    p.add_argument("source", metavar="SOURCE", help="a folder per class or a list file")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for train/val list files")
    p.add_argument("--classes", metavar="K_OR_NAMES", help="how many classes (drawn with --seed), or a comma list")
    p.add_argument("--per-class", type=positive, help="training videos per class (default: all)")
    p.add_argument(
        "--val-per-class", type=nonnegative, default=0, help="held-out videos per class (default 0: no val list)"
    )
    p.add_argument("--val-source", metavar="PATH", help="take held-out videos from here (e.g. Kinetics' val split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=["txt", "csv"], help="list-file format (default: txt unless CSV is needed)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_subset)

    p = sub.add_parser("references", help="cost table of the published models and uniform placements")
    p.add_argument("spaces", nargs="*", metavar="SPACE", help="spaces to list (default: every shipped space)")
    _clip_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_references)

    from .analyze import add_parsers as add_analysis_parsers
    from .cache import add_parsers as add_cache_parsers
    from .export import add_parsers as add_export_parsers
    from .study import add_parsers
    from .table import add_parsers as add_table_parsers

    add_parsers(sub)
    add_export_parsers(sub)
    add_analysis_parsers(sub)
    add_table_parsers(sub)
    add_cache_parsers(sub)
    return parser


_DB_PROBLEMS = (
    (
        "malformed",
        "the database file is damaged ({text}); restore it from a backup, or save what is readable "
        "with `sqlite3 FILE .recover | sqlite3 recovered.db`",
    ),
    ("file is not a database", "this is not a database file ({text})"),
    (
        "readonly database",
        "the database cannot be written ({text}): make the file and its folder writable, or "
        "copy it somewhere writable; reading commands (status, pareto, report, export) work on it as it is",
    ),
    ("disk i/o error", "the database could not be read or written ({text}): check the disk"),
    ("database or disk is full", "the disk is full ({text}): free space; completed trials are kept"),
)


def _storage_error(e: BaseException, args: argparse.Namespace) -> str | None:
    """A clear message for a database that is damaged, read-only or on a failing disk (found
    anywhere in the exception's chain), naming the storage; None for anything else."""
    seen: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    for exc in seen:
        text = str(exc).splitlines()[0] if str(exc) else ""
        low = text.lower()
        for needle, message in _DB_PROBLEMS:
            if needle in low and type(exc).__module__.split(".")[0] in ("sqlite3", "sqlalchemy", "optuna"):
                where = getattr(args, "storage", None) or "the study's storage"
                inner = text.split(") ", 1)[-1] if text.startswith("(") else text
                return f"{where}: " + message.format(text=f"SQLite: {inner.split(' [SQL')[0]}")
    return None


def _plain_warning(message: Any, category: Any, filename: str, lineno: int, line: str | None = None) -> str:
    """Warnings on the command line: one plain line, no source file and line."""
    return f"placement-search: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = _plain_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int | None] = args.func
    try:
        return func(args) or 0
    except UserError as e:
        print(f"placement-search: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into `head`
        return 0
    except Exception as e:  # a damaged or read-only database: one clear line, not a traceback
        message = _storage_error(e, args)
        if message is None:
            raise
        print(f"placement-search: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("placement-search: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
