"""Command-line ``export``: write trials of a study as self-contained architecture folders.

A thin layer over :func:`placement_search.export.export_study`; see ``docs/export.md``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from ..study.config import DEFAULT_STORAGE

__all__ = ["add_parsers", "cmd_export"]


def emit(obj: Any) -> None:
    from ._format import emit

    emit(obj)


def _trial_number(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a trial number (an integer >= 0), got {text!r}")
    return v


def _formats(text: str) -> tuple[str, ...]:
    from ..errors import UserError
    from ..inspect.export import parse_formats

    try:
        return parse_formats(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--format: ")) from None


def _clip(text: str) -> tuple[int, int]:
    """``FRAMESxSIZE`` (``16x112``) or ``FRAMESxSIZExSIZE`` (``16x112x112``)."""
    m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*(?:x\s*(\d+)\s*)?", text)
    if not m or (m.group(3) and m.group(3) != m.group(2)) or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"expected FRAMESxSIZE like 16x112 (square frames), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _line(r: Any) -> str:
    acc = f"top-1 {100 * r.accuracy:.1f}%" if r.accuracy is not None else "top-1 -"
    named = f" ({r.named})" if r.named else ""
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in r.seconds.items() if k in ("torchscript", "onnx"))
    return (
        f"trial {r.trial}{named}: {r.placement}  {acc}  {r.macs / 1e9:,.3f} GMACs  {r.params / 1e6:,.3f} M params"
        f"  -> {r.folder}  [{', '.join(r.files)}]" + (f"  ({timing})" if timing else "")
    )


def cmd_export(args: argparse.Namespace) -> int:
    from ..inspect.export import export_study

    start = time.perf_counter()

    from ..progressbar import progress_bar

    bar = progress_bar(None, "exporting", "architecture", enabled=None if not args.json else False)

    def show(r: Any) -> None:
        bar.update(1)
        if not args.json:
            bar.write(_line(r), file=sys.stdout)

    with bar:
        results = export_study(
            args.storage,
            args.study,
            args.output,
            trials=args.trial,
            pareto=args.pareto,
            formats=args.format,
            weights=args.weights,
            clip=args.clip,
            overwrite=args.overwrite,
            on_exported=show,
            any_status=args.any_status,
        )
    if args.json:
        emit([r.to_dict() for r in results])
        return 0
    n = len(results)
    print(
        f"exported {n} architecture{'s' if n != 1 else ''} of study {args.study!r} to {Path(args.output)} "
        f"in {time.perf_counter() - start:.1f} s; load one with "
        "placement_search.load_architecture(FOLDER, num_classes=...)"
    )
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write trials of a study as architecture folders (arch.json, model card, TorchScript, ONNX, weights)",
        description="Write one folder per trial (trial-NNNN) with arch.json, which rebuilds the network "
        "(placement_search.load_architecture), a model card, and on request TorchScript, ONNX and the "
        "proxy-trained weights (safetensors).",
    )
    p.add_argument(
        "--storage",
        metavar="URL",
        default=DEFAULT_STORAGE,
        help=f"SQLAlchemy URL of the study (default {DEFAULT_STORAGE})",
    )
    p.add_argument("--study", required=True, metavar="NAME")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--pareto", action="store_true", help="the Pareto-optimal trials (each architecture once)")
    which.add_argument(
        "--trial",
        type=_trial_number,
        nargs="+",
        action="extend",
        metavar="N",
        help="trial numbers (repeatable: --trial 3 7 or --trial 3 --trial 7)",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="output folder (one trial-NNNN folder per trial)"
    )
    p.add_argument(
        "--format",
        type=_formats,
        default=("json",),
        metavar="LIST",
        help="comma-separated: json (always), torchscript, onnx (default json)",
    )
    p.add_argument(
        "--weights",
        action="store_true",
        help="copy the trial's proxy-trained weights (weights.safetensors); TorchScript and ONNX then carry them",
    )
    p.add_argument(
        "--clip",
        type=_clip,
        metavar="FRAMESxSIZE",
        help="clip at which TorchScript and ONNX are traced and checked (default: the study's target input)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing, non-empty trial folders")
    p.add_argument(
        "--any-status",
        action="store_true",
        help="also export --trial N without a result (failed, interrupted, infeasible): the architecture only",
    )
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=cmd_export)
