"""``placement-search space list|show|count``, ``flops``, ``families`` and ``references``:
a search space, its placements and their costs, rendered from the Python API."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..catalog import family_table, reference_table
from ..cost import Cost
from ..placement import Placement
from ..space import SearchSpace, list_spaces, load_space
from ._format import count_arg, emit, fmt_g, fmt_m, positive, render_table

__all__ = ["add_parsers", "add_references_parser"]


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
    _print_flops(args, space, placement, cost, out)


def _print_flops(
    args: argparse.Namespace, space: SearchSpace, placement: Placement, cost: Cost, out: dict[str, Any]
) -> None:
    """The text form of ``flops``: totals, the per-position table, then the layers and latency if asked."""
    print(f"space {space.name}, placement: {out['placement']}")
    print(f"input {tuple(cost.input)} (N, C, T, H, W), {args.classes} classes")
    print(f"  params {cost.params:,} ({fmt_m(cost.params)})")
    print(f"  MACs   {cost.macs:,} ({fmt_g(cost.macs)})")
    print(f"  FLOPs  {cost.flops:,} ({fmt_g(cost.flops)})  = 2 x MACs")
    print()
    print(_position_table(space, placement, cost))
    if args.per_layer:
        print()
        print(_layer_table(cost))
    if args.latency:
        lat = out["latency"]
        print()
        print(
            f"latency on {lat['device']}, batch {lat['batch']}: median {lat['median_ms']:.2f} ms "
            f"({lat['clips_per_s']:.1f} clips/s) over {lat['runs']} runs after {lat['warmup']} warm-up"
        )


def _position_table(space: SearchSpace, placement: Placement, cost: Cost) -> str:
    """Params and MACs of each position's op, and of the layers no placement changes."""
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
    return render_table(rows, ["position", "op", "params", "MACs", "share"], "llrrr")


def _layer_table(cost: Cost) -> str:
    """Every conv and linear layer: kernel, stride, output shape, params, MACs."""
    return render_table(
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


def add_parsers(sub: Any) -> None:
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


def add_references_parser(sub: Any) -> None:
    p = sub.add_parser("references", help="cost table of the published models and uniform placements")
    p.add_argument("spaces", nargs="*", metavar="SPACE", help="spaces to list (default: every shipped space)")
    _clip_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_references)
