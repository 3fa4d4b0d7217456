"""Clip data for the proxy trainer: the built-in synthetic motion benchmark and real video.

:func:`make_data` turns what a user types (``synthetic`` or a path) into a
:class:`~placement_search.data.base.ClipData`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import UserError
from .base import Batch, ClipData
from .config import DataConfig
from .synthetic import CLASSES, FAMILIES, SyntheticConfig, SyntheticMotion

__all__ = [
    "CLASSES",
    "FAMILIES",
    "Batch",
    "ClipData",
    "DataConfig",
    "SyntheticConfig",
    "SyntheticMotion",
    "make_data",
]


def make_data(
    spec: str = "synthetic",
    *,
    frames: int = 16,
    size: int = 32,
    val: str | None = None,
    seed: int = 0,
    difficulty: float = 0.5,
    version: int = 1,
    eval_clips: int = SyntheticConfig.eval_clips,
    **video_kwargs: Any,
) -> ClipData:
    """``synthetic`` for the built-in benchmark, else a folder-per-class root or a list file
    of real videos (``val`` a second one for the held-out split; default: a held-out share
    of the training list). Extra keyword arguments are :class:`DataConfig` fields for real
    video (``stride``, ``cache_dir``...) or go to
    :func:`placement_search.data.video.video_clip_data` (``num_workers``)."""
    if spec == "synthetic":
        if val is not None:
            raise UserError("--val: the synthetic benchmark has its own held-out clips; --val is for real video")
    elif not Path(spec).exists():
        raise UserError(f"--data: {spec!r} is neither 'synthetic' nor an existing folder or list file of videos")
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    cfg_kw = {k: v for k, v in video_kwargs.items() if k in fields}
    rest = {k: v for k, v in video_kwargs.items() if k not in fields}
    cfg = DataConfig(
        source=spec,
        val=val,
        frames=frames,
        size=size,
        seed=seed,
        difficulty=difficulty,
        version=version,
        eval_clips=eval_clips,
        **cfg_kw,
    )
    return cfg.build(**rest)
