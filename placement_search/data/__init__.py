"""Clip data for the proxy trainer: the built-in synthetic motion benchmark and real video.

:func:`make_data` turns what a user types (``synthetic`` or a path) into a
:class:`~placement_search.data.base.ClipData`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UserError
from .base import Batch, ClipData
from .synthetic import CLASSES, FAMILIES, SyntheticConfig, SyntheticMotion

__all__ = ["CLASSES", "FAMILIES", "Batch", "ClipData", "SyntheticConfig", "SyntheticMotion", "make_data"]


def make_data(
    spec: str = "synthetic",
    *,
    frames: int = 16,
    size: int = 32,
    val: str | None = None,
    seed: int = 0,
    difficulty: float = 0.5,
    version: int = 1,
    **video_kwargs: Any,
) -> ClipData:
    """``synthetic`` for the built-in benchmark, else a folder-per-class root or a list file
    of real videos (``val`` a second one for the held-out split; default: a held-out share
    of the training list). Extra keyword arguments go to
    :func:`placement_search.data.video.video_clip_data`."""
    if spec == "synthetic":
        if val is not None:
            raise UserError("--val: the synthetic benchmark has its own held-out clips; --val is for real video")
        return SyntheticMotion(
            SyntheticConfig(frames=frames, size=size, seed=seed, difficulty=difficulty, version=version)
        )
    if not Path(spec).exists():
        raise UserError(f"--data: {spec!r} is neither 'synthetic' nor an existing folder or list file of videos")
    from .video import video_clip_data

    return video_clip_data(spec, val, frames=frames, size=size, **video_kwargs)
