"""Getting a study's data ready before any trial trains: which decoded-clip caches a ``[data]``
table needs, whether they are built on this machine, and building them.

``placement-search cache build`` and the driver's per-node checks (``study/nodes.py``) use
these; a trial's own data factory (:meth:`DataConfig.build`) then only opens what is here.
The synthetic benchmark needs no cache (it generates its clips), so for it the list is empty.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .config import DataConfig

__all__ = ["CacheStatus", "build_caches", "cache_status"]


@dataclass(frozen=True)
class CacheStatus:
    """One split's decoded-clip cache on this machine."""

    split: str  # "train" or "val"
    source: str  # the folder or list file of videos
    videos: int
    ready: bool
    path: str  # the cache's folder (whether or not it exists yet)
    #: videos a killed build had finished (kept by the next build)
    partial: int = 0
    #: videos that could not be decoded (known once built)
    failed: int = 0
    #: seconds the build took (0 when the cache was already there)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _splits(cfg: DataConfig) -> list[tuple[str, Any, Any, Any]]:
    """``(split, videos, decode spec, cache dir)`` for each split the config caches."""
    if cfg.source == "synthetic" or not cfg.cache:
        return []
    from .cache import default_cache_dir
    from .video import DecodeSpec, default_resize, scan_videos

    resize_to = default_resize(cfg.size) if cfg.resize_to is None else cfg.resize_to
    spec = DecodeSpec(resize_to, cfg.fps, cfg.max_frames)  # as DataConfig.build decodes (tested)
    cache_dir = cfg.cache_dir if cfg.cache_dir is not None else default_cache_dir()
    train = scan_videos(cfg.source, root=cfg.root)
    out = [("train", train, spec, cache_dir)]
    if cfg.val is not None:
        out.append(("val", scan_videos(cfg.val, root=cfg.root, class_names=train.class_names), spec, cache_dir))
    return out


def cache_status(cfg: DataConfig) -> list[CacheStatus]:
    """The caches ``cfg`` trains from, and whether each is built here. Reads file metadata and
    the caches' small index files, never a video.

    Raises:
        UserError: a split is missing or badly laid out (the message names it).
    """
    from .cache import cache_location, find_cache, partial_progress
    from .video import cache_key

    out = []
    for split, videos, spec, cache_dir in _splits(cfg):
        name, key = cache_key(videos, spec)
        found = find_cache(cache_dir, name, key)
        root, folder = cache_location(cache_dir, name, key)
        out.append(
            CacheStatus(
                split,
                videos.source,
                len(videos),
                found is not None,
                str(root / folder),
                partial=0 if found else partial_progress(cache_dir, name, key),
                failed=len(found.failures) if found else 0,
            )
        )
    return out


def build_caches(cfg: DataConfig, *, workers: int | None = None) -> list[CacheStatus]:
    """Build (or resume, or just find) every cache ``cfg`` trains from, with a progress bar.

    Args:
        workers: videos decoded at once (default: the config's ``decode_workers``, else
            ``min(8, cpus)``).

    Raises:
        UserError: a split is missing, or the cache folder cannot be written (names it).
    """
    from .video import cache_videos

    out = []
    for split, videos, spec, cache_dir in _splits(cfg):
        build = cache_videos(videos, spec, cache_dir, workers=workers or cfg.decode_workers)
        out.append(
            CacheStatus(
                split,
                videos.source,
                len(videos),
                True,
                str(build.cache.path),
                partial=build.resumed,
                failed=len(build.cache.failures),
                seconds=build.seconds if build.built else 0.0,
            )
        )
    return out
