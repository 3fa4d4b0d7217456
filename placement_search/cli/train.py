"""``placement-search train`` (one proxy run of a placement) and ``subset`` (list files for a
Mini-Kinetics-style subset of a video data set)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ..cost import Cost
from ..data.base import ClipData
from ..devices import resolve_device
from ..errors import UserError
from ..space import load_space
from ..train import ProxyBudget, TrainResult, train_proxy
from ._format import emit, fmt_g, nonnegative, positive, render_table

__all__ = ["add_parsers"]


def cmd_train(args: argparse.Namespace) -> None:
    space = load_space(args.space)
    placement = space.resolve(args.placement)
    data = _train_data(args)
    budget = _train_budget(args)
    bar, progress, on_step = _train_progress(args, budget.steps)
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
        _print_train_result(result, data, cost)
    if result.status in ("failed", "out_of_memory", "diverged"):
        raise SystemExit(1)


def _train_data(args: argparse.Namespace) -> ClipData:
    """The data set of ``--data``: the synthetic benchmark, or real video with its loader options."""
    from ..data import make_data

    video: dict[str, Any] = {}
    if args.data != "synthetic":
        video = {"stride": args.stride, "num_workers": args.workers}
        if args.cache_dir is not None:
            video["cache_dir"] = args.cache_dir
    return make_data(
        args.data,
        frames=args.frames,
        size=args.size,
        val=args.val,
        seed=args.data_seed,
        difficulty=args.difficulty,
        **({"version": args.data_version} if args.data == "synthetic" else {}),
        **video,
    )


def _train_budget(args: argparse.Namespace) -> ProxyBudget:
    """The run's budget from the flags; an unset ``--lr`` or ``--eval-every`` keeps the default."""
    defaults = ProxyBudget()
    return ProxyBudget(
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


def _train_progress(
    args: argparse.Namespace, steps: int
) -> tuple[Any, Callable[[int, Any], None], Callable[[int], None]]:
    """The progress bar and the trainer's two callbacks: each evaluation, each step."""
    from ..progressbar import progress_bar

    # a bar on stderr: always on a terminal; with --json only there (stdout is for the JSON)
    show = not args.quiet and (sys.stderr.isatty() or not args.json)
    bar = progress_bar(steps, "training", "step", enabled=show)

    def progress(step: int, ev: Any) -> None:
        if not args.json:
            bar.write(f"  step {step:5d}/{steps}: held-out top-1 {100 * ev.top1:5.1f}%", file=sys.stdout)
        bar.set_postfix_str(f"held-out top-1 {100 * ev.top1:.1f}%")

    def on_step(step: int) -> None:
        bar.update(step - bar.n)

    return bar, progress, on_step


def _print_train_result(result: TrainResult, data: ClipData, cost: Cost) -> None:
    """The text form of ``train``'s result: status, held-out accuracy per class, speed."""
    print(f"status: {result.status}" + (f" ({result.reason})" if result.reason else ""))
    if result.accuracy is not None:
        top5 = f", top-5 {100 * result.top5:.1f}%" if result.top5 is not None else ""
        print(f"held-out top-1 {100 * result.accuracy:.1f}%{top5} on {data.eval_size} clips")
        print(render_table([(k, f"{100 * v:.1f}%") for k, v in result.per_class_accuracy.items()], ["class", "top-1"]))
    print(
        f"{result.clips_per_s:.0f} clips/s on {result.device} ({result.precision}), "
        f"{result.wall_time_s:.1f} s wall; proxy MACs {fmt_g(cost.macs)} per clip"
    )


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


# -- parser ---------------------------------------------------------------------------------


def add_parsers(sub: Any) -> None:
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
