"""Command-line commands of the analysis: ``analyze temporal``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_parsers", "cmd_analyze_temporal"]


def cmd_analyze_temporal(args: argparse.Namespace) -> int:
    """Print the table (or ``--json``), or write ``-o FILE`` (.html figure, .csv / .json data)."""
    from ..inspect.temporal import analyze_temporal, check_output_path, render_table, write_output

    output = check_output_path(args.output) if args.output is not None else None  # fail before the work
    analysis = analyze_temporal(args.weights)
    if output is not None:
        write_output(analysis, output)
    if args.json:
        json.dump(analysis.to_dict(), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    elif output is not None:
        print(f"{len(analysis.kernels)} temporal kernels of {analysis.source} -> {output}")
    else:
        print(render_table(analysis))
    return 0


def add_parsers(sub: Any) -> None:
    """Add ``analyze`` (with its sub-command ``temporal``) to the sub-parsers of the main parser."""
    analyze = sub.add_parser("analyze", help="analyse a trained model's weights")
    asub = analyze.add_subparsers(dest="analyze_command", required=True, metavar="SUBCOMMAND")
    p = asub.add_parser(
        "temporal",
        help="share of weight magnitude at each temporal offset of every temporal kernel, by depth",
        description=(
            "For every temporal kernel (3D convs with kt > 1, and the kt x 1 x 1 convs of sep / 2plus1d ops), "
            "the share of sum |w| at each temporal offset, by depth: low-level kernels that put almost all "
            "their weight on the centre frame act like 2D convs (Xie et al. 2018)."
        ),
    )
    p.add_argument(
        "weights",
        metavar="WEIGHTS_OR_EXPORT",
        help="a .safetensors or .pt/.pth state dict, or an export folder with arch.json and weights.safetensors",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write FILE instead of printing the table: .html (figure, opens offline), .csv or .json (data)",
    )
    p.add_argument("--json", action="store_true", help="print the data as JSON")
    p.set_defaults(func=cmd_analyze_temporal)
