"""Formatting and argument helpers shared by the command modules: tables, numbers, JSON."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..study.config import count_value

__all__ = [
    "count_arg",
    "emit",
    "finite",
    "fmt_g",
    "fmt_m",
    "int_at_least",
    "nonnegative",
    "positive",
    "render_table",
    "self_command",
]


def self_command() -> str:
    """How to run this program again, as the user can type it: ``placement-search`` when that is
    on PATH and is this program, else the path it was started by (``.venv/bin/placement-search``)."""
    import os
    import shutil

    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else "placement-search"
    if not argv0.endswith("placement-search"):
        return "placement-search" if shutil.which("placement-search") else f"{sys.executable} -m placement_search"
    found = shutil.which("placement-search")
    if found and os.path.realpath(found) == os.path.realpath(argv0):
        return "placement-search"
    try:
        rel = os.path.relpath(argv0)
    except ValueError:
        rel = argv0
    return rel if not rel.startswith("..") and "/" in rel else os.path.abspath(argv0)


def fmt_g(n: float) -> str:
    return f"{n / 1e9:,.3f} G"


def fmt_m(n: float) -> str:
    return f"{n / 1e6:,.3f} M"


def render_table(rows: Sequence[Sequence[Any]], header: Sequence[str], align: str = "") -> str:
    """Plain-text table; ``align`` has one 'l' or 'r' per column (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    cells = [list(map(str, header))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def count_arg(text: str) -> int:
    """Parse '20G', '1.5e9', '750M' into an integer."""
    try:
        return int(count_value(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number like 20G, 750M or 1.5e9, got {text!r}") from None


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = minimum - 1
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return v

    return parse


positive = int_at_least(1)
nonnegative = int_at_least(0)


def finite(obj: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def emit(obj: Any) -> None:
    json.dump(finite(obj), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")
