"""The :class:`~placement_search.data.base.ClipData` the trainer uses: :func:`video_clip_data`."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ...errors import UserError
from ..base import Batch, ClipData
from .clips import EpochShuffleSampler, Pad, SkippedVideosWarning, VideoClipDataset
from .decode import DecodeSpec
from .index import VideoList, scan_videos
from .sources import DecodedVideos, FrameSource, cache_videos
from .subset import holdout_split
from .transforms import KINETICS_MEAN, KINETICS_STD, ClipTransform, default_resize, normalize


def default_num_workers() -> int:
    """``min(4, cpus - 1)``: leaves a core for the training loop."""
    return max(0, min(4, _cpus() - 1))


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class VideoClipData(ClipData):
    """Real video for the trainer: a training and a held-out :class:`VideoClipDataset`.

    Batches come from a ``torch`` DataLoader (``num_workers`` processes; pinned memory on
    CUDA), travel to the device as uint8 and are normalised there.

    Args:
        train: training clips (``transform.train`` true).
        val: held-out clips (``transform.train`` false).
        class_names: names of the classes, index = label.
        num_workers: DataLoader processes (default :func:`default_num_workers`).
        mean: per-channel mean in [0, 1] units.
        std: per-channel standard deviation in [0, 1] units.
        info: extra JSON-able facts for :meth:`describe`.
    """

    def __init__(
        self,
        train: VideoClipDataset,
        val: VideoClipDataset,
        *,
        class_names: Sequence[str],
        num_workers: int | None = None,
        mean: Sequence[float] = KINETICS_MEAN,
        std: Sequence[float] = KINETICS_STD,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.train = train
        self.val = val
        self.class_names = list(class_names)
        self.frames = train.frames
        self.size = train.transform.size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.info = info or {}

    def train_batches(self, batch_size: int, *, seed: int, device: torch.device) -> Iterator[Batch]:
        sampler = EpochShuffleSampler(len(self.train), seed)
        yield from self._batches(self.train, batch_size, sampler, device)

    def eval_batches(self, batch_size: int, *, device: torch.device) -> Iterator[Batch]:
        yield from self._batches(self.val, batch_size, range(len(self.val)), device)

    @property
    def eval_size(self) -> int:
        return len(self.val)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "data": "video", "train_clips": len(self.train), **self.info}

    def _batches(
        self, dataset: VideoClipDataset, batch_size: int, sampler: Any, device: torch.device
    ) -> Iterator[Batch]:
        device = torch.device(device)
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=device.type == "cuda",
            prefetch_factor=4 if self.num_workers > 0 else None,
        )
        mean = torch.tensor(self.mean, dtype=torch.float32, device=device)
        std = torch.tensor(self.std, dtype=torch.float32, device=device)
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            yield normalize(x, mean, std), y.to(device, non_blocking=True)


def video_clip_data(
    train: str | Path,
    val: str | Path | None = None,
    *,
    frames: int,
    size: int,
    stride: int = 2,
    root: str | Path | None = None,
    resize_to: int | None = None,
    fps: float | None = 12.0,
    max_frames: int | None = 64,
    rawframe_fps: float = 30.0,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    num_workers: int | None = None,
    decode_workers: int | None = None,
    pad: Pad = "repeat_last",
    mean: Sequence[float] = KINETICS_MEAN,
    std: Sequence[float] = KINETICS_STD,
    flip: str = "on",
    flip_map: Mapping[str, str] | str | Path | None = None,
) -> VideoClipData:
    """Real-video :class:`ClipData` for the proxy trainer.

    Args:
        train: training split: a folder per class or a list file (see :func:`scan_videos`).
        val: held-out split, same forms; its classes must be among ``train``'s. None: hold
            out ``val_fraction`` of each training class (deterministic, see :func:`holdout_split`).
        frames: clip length T.
        size: crop side S.
        stride: frames between a clip's frames, at the decoded rate ``fps``.
        root: folder that relative paths in list files are resolved against (default: the
            list file's folder).
        resize_to: short side frames are decoded to (default ``round(size * 256 / 224)``).
        fps: decoded frame rate (None: the source's).
        max_frames: decoded frames kept per video, around its middle (None: all).
        rawframe_fps: frame rate of folders of extracted frames.
        cache: decode every video once into the shared decoded-clip cache (recommended);
            False decodes each clip from the source on every read.
        cache_dir: folder of caches (default ``$PLACEMENT_SEARCH_CACHE`` or
            ``~/.cache/placement-search/clips``).
        val_fraction: share of each class held out when ``val`` is None.
        split_seed: seed of that hold-out.
        num_workers: DataLoader processes (default ``min(4, cpus - 1)``).
        decode_workers: videos decoded at once while building the cache (default ``min(8, cpus)``).
        pad: ``"repeat_last"`` or ``"loop"``, for videos shorter than a clip.
        mean: normalisation mean, [0, 1] units (default Kinetics').
        std: normalisation std, [0, 1] units (default Kinetics').
        flip: the training clips' random horizontal flip: ``"on"`` (default), ``"off"`` (for
            direction-sensitive classes), or ``"map"``: flip, and give a flipped clip the label
            of its mirrored action from ``flip_map``.
        flip_map: for ``flip = "map"``: class name -> class name of the mirrored action (a
            JSON object, or the path of a JSON file holding one); pairs work both ways, classes
            not named keep their label.

    Unreadable videos are left out with one :class:`SkippedVideosWarning` naming them.

    Raises:
        UserError: a split is missing, empty or badly laid out, no video of a split can be
            read, or an argument is out of range.
    """
    resize_to = default_resize(size) if resize_to is None else resize_to
    _check_args(frames=frames, size=size, stride=stride, resize_to=resize_to)
    if val is None and not 0 < val_fraction < 1:
        raise UserError(f"val_fraction: expected a number between 0 and 1, got {val_fraction}")
    spec = DecodeSpec(resize_to, fps, max_frames, rawframe_fps)
    train_list = scan_videos(train, root=root)
    val_list = scan_videos(val, root=root, class_names=train_list.class_names) if val is not None else None
    workers = default_num_workers() if num_workers is None else num_workers
    opener = _SourceOpener(spec, cache, cache_dir, decode_workers, workers)
    splits = _open_splits(train_list, val_list, opener, val_fraction, split_seed)
    _warn_skipped(*splits.skipped())
    splits = splits.readable()
    _check_classes(train_list, splits.train_pos)
    flip_labels = flip_label_map(flip, flip_map, train_list.class_names)
    clips = _ClipSpec(frames, stride, size, resize_to, flip != "off", pad, flip_labels)
    return VideoClipData(
        clips.dataset(splits.train_source, splits.train_pos, True),
        clips.dataset(splits.val_source, splits.val_pos, False),
        class_names=train_list.class_names,
        num_workers=workers,
        mean=mean,
        std=std,
        info=splits.describe(val_fraction, stride=stride, flip=flip, spec=spec),
    )


@dataclass(frozen=True)
class _SourceOpener:
    """Where a split's frames come from: the decoded-clip cache (built if missing), or, with
    ``cache`` false, decoding each clip from the source on every read."""

    spec: DecodeSpec
    cache: bool
    cache_dir: str | Path | None
    decode_workers: int | None
    loader_workers: int

    def __call__(self, videos: VideoList) -> tuple[FrameSource, str | None]:
        """The frame source of ``videos``, and the folder of its cache (None without one)."""
        if not self.cache:  # codec threads share the cores with the loader's worker processes
            return DecodedVideos(videos, self.spec, threads=max(1, _cpus() // max(1, self.loader_workers))), None
        build = cache_videos(videos, self.spec, self.cache_dir, workers=self.decode_workers)
        return build.cache, str(build.cache.path)


@dataclass(frozen=True)
class _Splits:
    """The training and held-out videos, their frame sources (and cache folders), and the
    positions of the videos each split uses."""

    train: VideoList
    val: VideoList | None  # None: held out of ``train``
    train_source: FrameSource
    val_source: FrameSource
    train_cache: str | None
    val_cache: str | None
    train_pos: list[int]
    val_pos: list[int]

    def skipped(self) -> tuple[list[tuple[str, str]], int, Path | None]:
        """For :func:`_warn_skipped`: the unreadable videos (path, reason), the videos listed,
        and the training cache."""
        lists = [(self.train, self.train_source)] + ([(self.val, self.val_source)] if self.val is not None else [])
        failures = [(v.items[i].path, why) for v, s in lists for i, why in _failures(s)]
        return failures, sum(len(v) for v, _ in lists), Path(self.train_cache) if self.train_cache else None

    def readable(self) -> _Splits:
        """The splits without their unreadable videos; a split left with none is an error."""
        train_pos = [i for i in self.train_pos if self.train_source.num_frames(i) > 0]
        val_pos = [i for i in self.val_pos if self.val_source.num_frames(i) > 0]
        for name, positions, videos in (("train", train_pos, self.train), ("val", val_pos, self.val or self.train)):
            if not positions:
                raise UserError(f"{videos.source}: no readable videos for the {name} split ({len(videos)} listed)")
        return replace(self, train_pos=train_pos, val_pos=val_pos)

    def describe(self, val_fraction: float, *, stride: int, flip: str, spec: DecodeSpec) -> dict[str, Any]:
        """The facts :meth:`VideoClipData.describe` adds."""
        return {
            "train": self.train.source,
            "val": self.val.source if self.val is not None else f"{val_fraction:g} of train",
            "stride": stride,
            "flip": flip,
            "decode": spec.to_dict(),
            "cache": self.train_cache if self.train_cache == self.val_cache else [self.train_cache, self.val_cache],
        }


def _open_splits(
    train: VideoList,
    val: VideoList | None,
    open_source: Callable[[VideoList], tuple[FrameSource, str | None]],
    val_fraction: float,
    split_seed: int,
) -> _Splits:
    """Open the splits' frame sources; without ``val``, hold out ``val_fraction`` of ``train``."""
    train_source, train_cache = open_source(train)
    if val is None:
        train_pos, val_pos = holdout_split(train, val_fraction, split_seed)
        return _Splits(train, None, train_source, train_source, train_cache, train_cache, train_pos, val_pos)
    val_source, val_cache = open_source(val)
    every_train, every_val = list(range(len(train))), list(range(len(val)))
    return _Splits(train, val, train_source, val_source, train_cache, val_cache, every_train, every_val)


@dataclass(frozen=True)
class _ClipSpec:
    """How both splits' clips are cut from their videos."""

    frames: int
    stride: int
    size: int
    resize_to: int
    flip: bool
    pad: Pad
    flip_labels: dict[int, int]

    def dataset(self, source: FrameSource, positions: list[int], train: bool) -> VideoClipDataset:
        transform = ClipTransform(self.size, self.resize_to, train, flip=self.flip)
        return VideoClipDataset(
            source,
            positions,
            frames=self.frames,
            stride=self.stride,
            transform=transform,
            pad=self.pad,
            flip_labels=self.flip_labels,
        )


FLIPS = ("on", "off", "map")


def flip_label_map(
    flip: str, flip_map: Mapping[str, str] | str | Path | None, classes: Sequence[str]
) -> dict[int, int]:
    """Label -> label of a flipped clip, from ``flip_map`` (names); checked against ``classes``."""
    if flip not in FLIPS:
        raise UserError(f"flip: expected one of {', '.join(FLIPS)}, got {flip!r}")
    if flip != "map":
        if flip_map is not None:
            raise UserError(f'flip_map: only used with flip = "map" (flip is {flip!r})')
        return {}
    if flip_map is None:
        raise UserError('flip = "map" needs flip_map: class name -> class name of the mirrored action')
    where = "flip_map"
    if isinstance(flip_map, (str, Path)):
        where = str(flip_map)
        try:
            flip_map = json.loads(Path(flip_map).read_text(encoding="utf-8"))
        except OSError as e:
            raise UserError(f"flip_map: cannot read {flip_map}: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: not valid JSON: {e}") from None
    if not isinstance(flip_map, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in flip_map.items()
    ):
        raise UserError(
            f'{where}: expected a JSON object of class names, like {{"pushing left to right": "pushing right to left"}}'
        )
    index = {n: i for i, n in enumerate(classes)}
    out: dict[int, int] = {}
    for a, b in flip_map.items():
        for name in (a, b):
            if name not in index:
                raise UserError(f"{where}: unknown class {name!r} (classes: {', '.join(list(classes)[:6])}...)")
        for x, y in ((index[a], index[b]), (index[b], index[a])):
            if out.get(x, y) != y:
                raise UserError(f"{where}: class {classes[x]!r} is mapped to two classes")
            out[x] = y
    return out


def _check_args(*, frames: int, size: int, stride: int, resize_to: int) -> None:
    for name, value in (("frames", frames), ("size", size), ("stride", stride)):
        if value < 1:
            raise UserError(f"{name}: expected an integer >= 1, got {value}")
    if resize_to < size:
        raise UserError(f"resize_to: the short side ({resize_to}) must be at least the crop size ({size})")


def _failures(source: FrameSource) -> list[tuple[int, str]]:
    return list(getattr(source, "failures", []))


def _check_classes(videos: VideoList, positions: list[int]) -> None:
    """A data set that cannot train a classifier is an error before any training: a class with
    no readable training video (it would be an empty class), or a single class (any model scores
    100% on it)."""
    counts = [0] * len(videos.class_names)
    for i in positions:
        counts[videos.items[i].label] += 1
    if len(videos.class_names) < 2:
        raise UserError(
            f"{videos.source}: only one class ({videos.class_names[0]!r}): a classifier needs at least two "
            "(any model would score 100%)"
        )
    empty = [n for n, c in zip(videos.class_names, counts) if c == 0]
    if empty:
        raise UserError(
            f"{videos.source}: {len(empty)} class(es) have no readable training video: "
            + ", ".join(repr(n) for n in empty[:5])
            + (" ..." if len(empty) > 5 else "")
            + "; remove them from the data set or add readable videos"
        )


def _warn_skipped(failures: list[tuple[str, str]], total: int, cache: Path | None = None) -> None:
    """One plain warning line: how many videos were skipped, and the file that lists them all."""
    if not failures:
        return
    listing = _write_skipped(failures, cache)
    shown = "; ".join(f"{path} ({(why.splitlines() or [''])[0]})" for path, why in failures[:3])
    shown += " ..." if len(failures) > 3 else ""
    where = f"; the full list: {listing}" if listing else ""
    warnings.warn(
        f"skipped {len(failures)} of {total} videos that could not be read: {shown}{where}",
        SkippedVideosWarning,
        stacklevel=3,
    )


def _write_skipped(failures: list[tuple[str, str]], cache: Path | None) -> Path | None:
    """Write ``path<TAB>reason`` lines beside the clip cache (or in the user's cache folder)."""
    import hashlib

    text = "".join(f"{path}\t{why}\n" for path, why in failures)
    if cache is not None:
        target = cache.parent / f"{cache.name}.skipped.txt"
    else:
        base = Path(os.environ.get("PLACEMENT_SEARCH_CACHE") or Path.home() / ".cache" / "placement-search")
        target = base / f"skipped-{hashlib.sha1(text.encode()).hexdigest()[:12]}.txt"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError:
        return None
    return target
