"""Decoding one video into frames: PyAV for video files, Pillow for frame folders.

``av`` and ``PIL`` are imported inside the functions that use them, so importing the
package does not need PyAV.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ...errors import UserError
from .index import IMAGE_EXTENSIONS, VideoItem, _frame_files


class VideoReadError(RuntimeError):
    """A video (file or frame folder) could not be read."""


@dataclass(frozen=True)
class DecodeSpec:
    """How a video becomes the frames the clips are cut from (same for cache and no cache).

    Attributes:
        short_side: frames are resized so that their short side is this many pixels.
        fps: frames are resampled to this rate (each target time takes the frame shown
            at that time, so slower videos repeat frames); None keeps every frame.
        max_frames: at most this many frames, taken around the middle (None: all).
        rawframe_fps: frame rate assumed for folders of extracted frames.
    """

    short_side: int
    fps: float | None = 12.0
    max_frames: int | None = 64
    rawframe_fps: float = 30.0

    def __post_init__(self) -> None:
        if self.short_side < 1:
            raise UserError(f"short_side: expected an integer >= 1, got {self.short_side}")
        if self.fps is not None and not self.fps > 0:
            raise UserError(f"fps: expected a frame rate > 0 (or None: keep every frame), got {self.fps}")
        if self.max_frames is not None and self.max_frames < 1:
            raise UserError(f"max_frames: expected an integer >= 1 (or None: no limit), got {self.max_frames}")
        if not self.rawframe_fps > 0:
            raise UserError(f"rawframe_fps: expected a frame rate > 0, got {self.rawframe_fps}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FramePlan:
    """The frames a decoded video is made of, found without decoding.

    Attributes:
        path: the video file or frame folder.
        keys: per decoded frame, the source frame: its presentation timestamp (``by_pts``),
            its position in presentation order, or (frame folders) an index into ``files``.
        by_pts: whether ``keys`` are timestamps.
        first_key: the key of the source's first frame (no seek is needed before it).
        files: a frame folder's image files; empty for video files.
    """

    path: str
    keys: np.ndarray
    by_pts: bool
    first_key: int
    files: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.keys)


def plan_video(item: VideoItem, spec: DecodeSpec) -> FramePlan:
    """Which source frames make up ``item`` decoded under ``spec`` (demuxing only, no decoding).

    Raises:
        VideoReadError: the file or folder cannot be read, or holds no frames in
            ``[start, end)``.
    """
    if os.path.isdir(item.path):
        files = _frame_files(item.path)
        if not files:
            raise VideoReadError(f"no frame images ({', '.join(IMAGE_EXTENSIONS)}) in the folder")
        times = np.arange(len(files)) / spec.rawframe_fps
        return FramePlan(item.path, _pick(times, spec, item, 0.0), False, 0, tuple(files))
    if not os.path.exists(item.path):
        raise VideoReadError("file not found")
    import av

    try:
        with av.open(item.path) as container:
            if not container.streams.video:
                raise VideoReadError("no video stream")
            stream = container.streams.video[0]
            stamps = [(p.pts, p.dts) for p in container.demux(stream) if p.size]
            time_base = stream.time_base
            rate = float(stream.average_rate or 30)
    except (av.FFmpegError, OSError) as e:
        raise VideoReadError(f"{type(e).__name__}: {e}") from None
    if not stamps:
        raise VideoReadError("no video frames")
    by_pts = time_base is not None and all(pts is not None for pts, _ in stamps)
    tick = float(time_base) if time_base is not None else 0.0
    if by_pts:
        keys = np.unique(np.array([pts for pts, _ in stamps], dtype=np.int64))
        times = (keys - keys[0]) * float(time_base)
    else:  # no timestamps to seek by: frames by position, timed by decoding timestamps where known
        keys = np.arange(len(stamps), dtype=np.int64)
        dts = [d for _, d in stamps]
        if time_base is not None and all(d is not None for d in dts):
            times = (np.sort(np.array(dts, dtype=np.int64)) - min(dts)) * float(time_base)
        else:
            times = keys / rate
    return FramePlan(item.path, keys[_pick(times, spec, item, tick)], by_pts, int(keys[0]))


def _pick(times: np.ndarray, spec: DecodeSpec, item: VideoItem, tick: float) -> np.ndarray:
    """Indices into ``times`` (source frame times from 0, ascending) of the decoded frames.

    Each target time takes the frame shown at that time; timestamps are trusted to half a
    ``tick`` (the time base: WebM's are rounded to milliseconds).
    """
    a = item.start or 0.0
    b = item.end if item.end is not None else math.inf
    eps = 0.5 * tick + 1e-6
    if spec.fps is None:
        idx = np.flatnonzero((times >= a - eps) & (times < b))
    else:
        last = min(float(times[-1]), b)
        n = math.floor((last - a) * spec.fps + eps) + 1 if last >= a else 0
        targets = a + np.arange(n) / spec.fps
        targets = targets[targets < b]
        idx = np.maximum(np.searchsorted(times, targets + eps, side="right") - 1, 0)
    if len(idx) == 0:
        raise VideoReadError(f"no frames between {a:g} s and {b:g} s")
    if spec.max_frames is not None and len(idx) > spec.max_frames:
        cut = (len(idx) - spec.max_frames) // 2
        idx = idx[cut : cut + spec.max_frames]
    return idx


def read_frames(plan: FramePlan, positions: np.ndarray, short_side: int, *, threads: int = 0) -> np.ndarray:
    """Decode the frames at ``positions`` of ``plan``: ``(len(positions), H, W, 3)`` uint8.

    Videos are decoded with PyAV (codec threads on), seeking to the keyframe before the
    first frame needed and stopping after the last; frame folders are read with Pillow.
    Frames are resized so their short side is ``short_side`` (area averaging for videos,
    JPEG draft mode plus bilinear for images).

    Args:
        threads: codec threads per video (0: FFmpeg's choice).

    Raises:
        VideoReadError: the frames could not all be decoded.
    """
    positions = np.asarray(positions, dtype=np.int64)
    keys = plan.keys[positions]
    wanted = np.unique(keys)
    if plan.files:
        got = _read_images([plan.files[k] for k in wanted], plan.files[int(plan.keys[0])], short_side)
        frames = dict(zip(wanted.tolist(), got))
    else:
        frames = _read_video_frames(plan, wanted, short_side, threads)
    return np.stack([frames[k] for k in keys.tolist()])


def decode_video(item: VideoItem, spec: DecodeSpec, *, threads: int = 0) -> np.ndarray:
    """Every frame of ``item`` decoded under ``spec``: what the cache stores, ``(F, H, W, 3)`` uint8."""
    plan = plan_video(item, spec)
    return read_frames(plan, np.arange(len(plan)), spec.short_side, threads=threads)


def _read_video_frames(plan: FramePlan, wanted: np.ndarray, short_side: int, threads: int) -> dict[int, np.ndarray]:
    import av

    seek = plan.by_pts and int(wanted[0]) > plan.first_key
    try:
        got = _decode(av, plan, wanted, short_side, threads, seek=seek)
        if len(got) < len(wanted) and seek:  # an imprecise seek: decode from the start
            got = _decode(av, plan, wanted, short_side, threads, seek=False)
    except (av.FFmpegError, OSError) as e:
        raise VideoReadError(f"{plan.path}: {type(e).__name__}: {e}") from None
    if len(got) < len(wanted):
        raise VideoReadError(f"{plan.path}: decoded {len(got)} of the {len(wanted)} frames needed")
    return got


def _decode(
    av: Any, plan: FramePlan, wanted: np.ndarray, short_side: int, threads: int, *, seek: bool
) -> dict[int, np.ndarray]:
    want = set(wanted.tolist())
    last = int(wanted[-1])
    got: dict[int, np.ndarray] = {}
    with av.open(plan.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        width, height = _resized(stream.codec_context.width, stream.codec_context.height, short_side)
        if seek:
            container.seek(int(wanted[0]), stream=stream, backward=True, any_frame=False)
        for n, frame in enumerate(container.decode(stream)):
            key = frame.pts if plan.by_pts else n
            if key is None:
                break
            if key in want:
                got[key] = frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA")
            if key >= last:
                break
    return got


def _read_images(files: list[str], size_from: str, short_side: int) -> list[np.ndarray]:
    from PIL import Image

    try:
        with Image.open(size_from) as im:
            width, height = _resized(im.width, im.height, short_side)
        frames = []
        for f in files:
            with Image.open(f) as im:
                im.draft("RGB", (width, height))  # JPEG: decode at a reduced scale >= the target
                rgb = im.convert("RGB")
                if rgb.size != (width, height):
                    rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
                frames.append(np.asarray(rgb))
    except (OSError, ValueError) as e:
        raise VideoReadError(f"{type(e).__name__}: {e}") from None
    return frames


def _resized(width: int, height: int, short_side: int) -> tuple[int, int]:
    if width <= 0 or height <= 0:
        raise VideoReadError(f"frame size {width}x{height}")
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side
