"""The typed description of a study's proxy data (its ``[data]`` table), and the one factory
that turns it into :class:`~placement_search.data.base.ClipData`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .base import ClipData
from .synthetic import SyntheticConfig, SyntheticMotion

__all__ = ["DataConfig"]


@dataclass(frozen=True)
class DataConfig:
    """What the proxy runs train on: ``synthetic`` or a folder / list file of real videos."""

    source: str = "synthetic"
    val: str | None = None
    frames: int = 16
    size: int = 32
    # synthetic
    difficulty: float = 0.5
    seed: int = 0
    eval_clips: int = 1200
    version: int = 1  # the synthetic benchmark's generation (1: original, 2: graded cues; docs/data.md)
    # real video (see placement_search.data.video.video_clip_data)
    stride: int = 2
    root: str | None = None
    resize_to: int | None = None
    fps: float | None = 12.0
    max_frames: int | None = 64
    cache: bool = True
    cache_dir: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    decode_workers: int | None = None
    #: the training clips' random horizontal flip: "on", "off", or "map" (with ``flip_map``,
    #: a JSON file of class name -> mirrored class name)
    flip: str = "on"
    flip_map: str | None = None

    def check(self, where: str) -> None:
        if self.frames < 1 or self.size < 1:
            raise UserError(f"{where}: frames and size must be positive, got {self.frames} and {self.size}")
        if self.source == "synthetic":
            if self.val is not None:
                raise UserError(
                    f"{where}.val: the synthetic benchmark has its own held-out clips; val is for real video"
                )
            if not 0.0 <= self.difficulty <= 1.0:
                raise UserError(f"{where}.difficulty: expected a number in [0, 1], got {self.difficulty}")
            if self.eval_clips < 11:
                raise UserError(f"{where}.eval_clips: expected at least 11 (one per class), got {self.eval_clips}")
            from .synthetic import VERSIONS

            if self.version not in VERSIONS:
                raise UserError(
                    f"{where}.version: expected one of {', '.join(map(str, VERSIONS))} (the synthetic "
                    f"benchmark's generation), got {self.version}"
                )
        from .video.clip_data import FLIPS

        if self.flip not in FLIPS:
            raise UserError(f"{where}.flip: expected one of {', '.join(FLIPS)}, got {self.flip!r}")
        if (self.flip == "map") != (self.flip_map is not None):
            raise UserError(
                f'{where}.flip_map: give it exactly when flip = "map" (a JSON file of class -> mirrored class)'
            )
        if self.source == "synthetic" and self.flip != "on":
            raise UserError(f"{where}.flip: the synthetic benchmark does not flip its clips; flip is for real video")
        paths = [("val", self.val), ("root", self.root), ("flip_map", self.flip_map)]
        if self.source != "synthetic":
            paths.insert(0, ("source", self.source))
        for name, v in paths:
            if v is not None and not Path(v).exists():
                hint = " (expected 'synthetic' or a folder / list file of videos)" if name == "source" else ""
                raise UserError(f"{where}.{name}: {v!r} does not exist{hint}")

    def num_classes(self) -> int:
        """Classes of the proxy data: the synthetic benchmark's, or the class folders / labels found."""
        if self.source == "synthetic":
            from .synthetic import CLASSES

            return len(CLASSES)
        from .video.index import scan_videos

        return len(scan_videos(self.source, root=self.root).class_names)

    def build(self, **video_kwargs: Any) -> ClipData:
        """The clip data this config describes: the one factory behind ``make_data``, the
        ``train`` command, the driver and the workers. ``video_kwargs`` go to
        :func:`placement_search.data.video.video_clip_data` (e.g. ``num_workers``)."""
        if self.source == "synthetic":
            if video_kwargs:
                raise UserError(
                    f"options {', '.join(sorted(video_kwargs))} are for real video, not the synthetic benchmark"
                )
            return SyntheticMotion(
                SyntheticConfig(
                    frames=self.frames,
                    size=self.size,
                    seed=self.seed,
                    difficulty=self.difficulty,
                    eval_clips=self.eval_clips,
                    version=self.version,
                )
            )
        from .video import video_clip_data

        return video_clip_data(
            self.source,
            self.val,
            frames=self.frames,
            size=self.size,
            stride=self.stride,
            root=self.root,
            resize_to=self.resize_to,
            fps=self.fps,
            max_frames=self.max_frames,
            cache=self.cache,
            cache_dir=self.cache_dir,
            val_fraction=self.val_fraction,
            split_seed=self.split_seed,
            decode_workers=self.decode_workers,
            flip=self.flip,
            flip_map=self.flip_map,
            **video_kwargs,
        )

    def preprocessing(self, frames: int | None = None, size: int | None = None) -> dict[str, Any]:
        """How clips were made for the proxy runs, for a user feeding the exported network:
        sampling, resizing, value scale and normalisation. ``frames``/``size``: the clip the
        record is for (default: the proxy's)."""
        frames = self.frames if frames is None else frames
        size = self.size if size is None else size
        common = {"layout": "NCTHW", "channels": "RGB", "frames": frames, "size": size}
        if self.source == "synthetic":
            return {
                **common,
                "source": f"synthetic motion benchmark, version {self.version} (generated at the clip size)",
                "values": "float in [0, 1], not normalised",
                "mean": [0.0, 0.0, 0.0],
                "std": [1.0, 1.0, 1.0],
            }
        from .video.transforms import KINETICS_MEAN, KINETICS_STD, default_resize

        return {
            **common,
            "source": "real video",
            "stride": self.stride,
            "fps": self.fps,
            "resize_short_side_to": self.resize_to if self.resize_to and size == self.size else default_resize(size),
            "crop": "centre (evaluation); random (training)",
            "values": "uint8 / 255, then (x - mean) / std per channel",
            "mean": list(KINETICS_MEAN),
            "std": list(KINETICS_STD),
            "flip": self.flip,
        }

    def resolved(self, base: Path) -> DataConfig:
        """Relative paths taken against ``base`` (the study file's folder)."""
        changes: dict[str, Any] = {}
        for name in ("val", "root", "cache_dir", "flip_map") + (() if self.source == "synthetic" else ("source",)):
            v = getattr(self, name)
            if v is not None and not Path(v).expanduser().is_absolute():
                changes[name] = str((base / Path(v).expanduser()).resolve())
        return dataclasses.replace(self, **changes)
