"""One clip of a video: which frames (:func:`sample_clip`), the torch data set of clips,
and the order training reads them in.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .decode import VideoReadError
from .sources import FrameSource
from .transforms import ClipTransform

Pad = Literal["repeat_last", "loop"]


class SkippedVideosWarning(UserWarning):
    """Some videos could not be read and were left out (one warning names them all)."""


def sample_clip(
    num_frames: int,
    frames: int,
    stride: int = 1,
    *,
    rng: np.random.Generator | None = None,
    pad: Pad = "repeat_last",
) -> np.ndarray:
    """Frame indices of one clip: ``frames`` indices ``stride`` apart.

    With ``rng`` the start is uniform over every start that fits (training jitter);
    without, the clip is the middle one (evaluation): it starts at
    ``(num_frames - span) // 2`` with ``span = (frames - 1) * stride + 1``.
    A video shorter than ``span`` starts at 0 and is padded by repeating its last frame
    (``pad="repeat_last"``, the default: no jump in the motion), or looped from its first
    frame (``pad="loop"``, mmaction2's default).
    """
    if num_frames < 1 or frames < 1 or stride < 1:
        raise ValueError(f"need num_frames, frames, stride >= 1, got {num_frames}, {frames}, {stride}")
    span = (frames - 1) * stride + 1
    if num_frames >= span:
        room = num_frames - span
        start = int(rng.integers(0, room + 1)) if rng is not None else room // 2
        return start + np.arange(frames) * stride
    idx = np.arange(frames) * stride
    return idx % num_frames if pad == "loop" else np.minimum(idx, num_frames - 1)


class VideoClipDataset(Dataset[tuple[torch.Tensor, int]]):
    """Clips of some of a :class:`FrameSource`'s videos, as uint8 ``(3, T, S, S)`` and a label.

    Training sets take keys ``(k, seed)``: everything random about the clip (start, crop,
    flip) comes from ``seed``, so a batch does not depend on which worker made it.
    Evaluation sets take ``k`` and are deterministic.

    Args:
        source: where the frames come from.
        positions: the videos of ``source`` in this set (readable ones).
        frames: clip length T.
        stride: frames between the clip's frames.
        transform: spatial transforms; ``transform.train`` also selects jittered clips.
        pad: what clips longer than the video repeat (see :func:`sample_clip`).
        flip_labels: label -> label of the mirrored action, for clips the transform flipped
            (labels not in it keep theirs): a horizontal flip turns "left to right" into
            "right to left".
    """

    def __init__(
        self,
        source: FrameSource,
        positions: Sequence[int],
        *,
        frames: int,
        stride: int,
        transform: ClipTransform,
        pad: Pad = "repeat_last",
        flip_labels: Mapping[int, int] | None = None,
    ) -> None:
        self.source = source
        self.positions = list(positions)
        self.frames = frames
        self.stride = stride
        self.transform = transform
        self.pad: Pad = pad
        self.flip_labels = dict(flip_labels or {})

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        k, seed = key if isinstance(key, tuple) else (key, key)
        rng = np.random.default_rng(seed)
        for attempt in range(len(self.positions)):
            i = self.positions[(k + attempt) % len(self.positions)]
            idx = sample_clip(
                self.source.num_frames(i),
                self.frames,
                self.stride,
                rng=rng if self.transform.train else None,
                pad=self.pad,
            )
            try:
                frames = self.source.read(i, idx)
            except VideoReadError as e:  # decoded fine when planned, fails now: use the next video
                warnings.warn(f"skipping a video that failed to decode: {e}", SkippedVideosWarning, stacklevel=2)
                continue
            clip, flipped = self.transform.apply(frames, rng)
            label = self.source.label(i)
            return clip, self.flip_labels.get(label, label) if flipped else label
        raise VideoReadError("no video of the data set could be decoded")


class EpochShuffleSampler(Sampler[tuple[int, int]]):
    """Endless ``(k, sample seed)`` pairs: a new permutation of ``range(n)`` each epoch.

    Epoch ``e`` draws its permutation and per-sample seeds from ``numpy`` generator
    ``default_rng([seed, e])``: the same seed gives the same stream.
    """

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise ValueError("nothing to sample from")
        self.n = n
        self.seed = seed

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = 0
        while True:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(self.n)
            seeds = rng.integers(0, 2**63 - 1, size=self.n)
            yield from zip(order.tolist(), seeds.tolist())
            epoch += 1
