"""Where clips' frames come from: the decoded-clip cache, or decoding on every read."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..cache import CacheBuild, default_cache_dir, open_or_build
from .decode import DecodeSpec, FramePlan, VideoReadError, decode_video, plan_video, read_frames
from .index import VideoItem, VideoList


class FrameSource(Protocol):
    """Decoded videos by position in their list (a :class:`ClipCache` is one)."""

    def __len__(self) -> int: ...

    def num_frames(self, i: int) -> int:
        """Frames of video ``i`` after decoding (0: it could not be read)."""
        ...

    def label(self, i: int) -> int: ...

    def read(self, i: int, indices: np.ndarray) -> np.ndarray:
        """Frames ``indices`` of video ``i``, ``(len(indices), H, W, 3)`` uint8."""
        ...


class DecodedVideos:
    """A :class:`FrameSource` that decodes each clip's frames from the source on every read.

    Plans every video when created (demuxing only); unreadable ones get 0 frames and a
    reason in :attr:`failures`. Use the cache instead for training; this is the baseline.

    Args:
        videos: the videos.
        spec: how they are decoded.
        threads: codec threads per video (0: FFmpeg's choice).
    """

    def __init__(self, videos: VideoList, spec: DecodeSpec, *, threads: int = 0) -> None:
        self.videos = videos
        self.spec = spec
        self.threads = threads
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            results = list(pool.map(_try_plan, videos.items, [spec] * len(videos)))
        self._plans = [r if isinstance(r, FramePlan) else None for r in results]
        self.failures = [(i, r) for i, r in enumerate(results) if isinstance(r, str)]

    def __len__(self) -> int:
        return len(self.videos)

    def num_frames(self, i: int) -> int:
        plan = self._plans[i]
        return 0 if plan is None else len(plan)

    def label(self, i: int) -> int:
        return self.videos.items[i].label

    def read(self, i: int, indices: np.ndarray) -> np.ndarray:
        plan = self._plans[i]
        if plan is None:
            raise VideoReadError(f"{self.videos.items[i].path}: could not be read")
        return read_frames(plan, indices, self.spec.short_side, threads=self.threads)


def _try_plan(item: VideoItem, spec: DecodeSpec) -> FramePlan | str:
    try:
        return plan_video(item, spec)
    except VideoReadError as e:
        return str(e)
    except Exception as e:  # an odd file: skip it, keep the reason
        return f"{type(e).__name__}: {e}"


def cache_videos(
    videos: VideoList,
    spec: DecodeSpec,
    cache_dir: str | Path | None = None,
    *,
    workers: int | None = None,
) -> CacheBuild:
    """Open the decoded-clip cache of ``videos`` under ``spec``, decoding them first if needed.

    The cache is keyed by the videos (paths, labels, start/end, file sizes and
    modification times), the class names and ``spec``.

    Args:
        cache_dir: folder of caches (default :func:`~placement_search.data.cache.default_cache_dir`).
        workers: videos decoded at once (default ``min(8, cpus)``), one codec thread each.
    """
    name, key = cache_key(videos, spec)
    return open_or_build(
        cache_dir if cache_dir is not None else default_cache_dir(),
        name,
        key,
        [v.path for v in videos.items],
        [v.label for v in videos.items],
        lambda i: _decode_for_cache(videos.items[i], spec),
        info={"source": videos.source, "classes": list(videos.class_names), "decode": spec.to_dict()},
        workers=workers,
    )


def cache_key(videos: VideoList, spec: DecodeSpec) -> tuple[str, dict[str, Any]]:
    """``(readable name, key)`` of the decoded-clip cache of ``videos`` under ``spec``: the
    videos (paths, labels, start/end, file sizes and modification times), the class names and
    the decoding settings. Computing it reads no video, only file metadata."""
    key = {
        "items": [[v.path, v.label, v.start, v.end, _stat(v.path)] for v in videos.items],
        "classes": list(videos.class_names),
        "decode": spec.to_dict(),
    }
    name = Path(videos.source).stem if os.path.isfile(videos.source) else Path(videos.source).name
    return name, key


def _decode_for_cache(item: VideoItem, spec: DecodeSpec) -> np.ndarray:
    try:
        return decode_video(item, spec, threads=1)
    except VideoReadError:
        raise
    except Exception as e:  # a decoder bug or an odd file: skip the video, keep the reason
        raise VideoReadError(f"{type(e).__name__}: {e}") from e


def _stat(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]
