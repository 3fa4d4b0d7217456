"""Sane limits, checked before anything is allocated: clip sizes, and the memory a model needs.

A mistyped size (``--size 3000000``) or a hand-edited ``arch.json`` (``num_classes: 10**12``)
must give one clear error, not a storage overflow or an attempt to allocate terabytes.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import UserError

__all__ = ["MAX_FRAMES", "MAX_SIZE", "available_memory", "check_clip", "check_memory", "model_memory"]

#: the longest clip and the largest side this tool accepts (far beyond any video model's input)
MAX_FRAMES = 4096
MAX_SIZE = 8192


def check_clip(frames: int, size: int, where: str = "clip") -> None:
    if not (1 <= frames <= MAX_FRAMES and 1 <= size <= MAX_SIZE):
        raise UserError(
            f"{where}: {frames} frames of {size}x{size} is outside the sizes this tool accepts "
            f"(1-{MAX_FRAMES} frames, sides of 1-{MAX_SIZE} px)"
        )


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``; else total RAM)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def check_memory(need: int, what: str, where: str, *, share: float = 0.8) -> None:
    """Refuse (UserError) when ``need`` bytes exceed ``share`` of the available memory."""
    have = available_memory()
    if have is not None and need > share * have:
        raise UserError(f"{where}: {what} needs about {_gb(need)}, more than the {_gb(have)} of memory available here")


def model_memory(cost: Any, *, bytes_per_value: int = 4, batch: int = 1) -> int:
    """Bytes to run a model forward (no gradients) at ``cost``'s input: its parameters plus the
    largest layer input and output held at once, twice over for the framework's temporaries."""
    params = int(cost.params) * bytes_per_value
    largest = 0
    for layer in cost.layers:
        n = 1
        for d in layer.in_shape:
            n *= int(d)
        m = 1
        for d in layer.out_shape:
            m *= int(d)
        largest = max(largest, n + m)
    inp = 1
    for d in cost.input:
        inp *= int(d)
    return params + 2 * batch * bytes_per_value * max(largest, inp)
