"""Spatial transforms of uint8 clips (resize, crop, flip) and normalisation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: Kinetics-400 mean and std, in [0, 1] units (torchvision's video models)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


def default_resize(size: int) -> int:
    """Short side to resize to before cropping ``size``: the 256 -> 224 habit, scaled."""
    return round(size * 256 / 224)


def resize_short_side(clip: torch.Tensor, side: int) -> torch.Tensor:
    """Resize a ``(T, H, W, C)`` uint8 clip so its short side is ``side`` (bilinear, antialiased)."""
    h, w = clip.shape[1:3]
    size = (side, max(1, round(w * side / h))) if h <= w else (max(1, round(h * side / w)), side)
    if (h, w) == size:
        return clip
    x = clip.permute(0, 3, 1, 2)  # (T, C, H, W), channels-last in memory: uint8 kernels support it
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x.permute(0, 2, 3, 1)


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size x size`` window of a ``(T, H, W, C)`` clip."""
    h, w = clip.shape[1:3]
    _check_crop(h, w, size)
    top, left = (h - size) // 2, (w - size) // 2
    return clip[:, top : top + size, left : left + size]


def random_crop(clip: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A uniformly placed ``size x size`` window of a ``(T, H, W, C)`` clip (same for every frame)."""
    h, w = clip.shape[1:3]
    _check_crop(h, w, size)
    top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return clip[:, top : top + size, left : left + size]


def _check_crop(h: int, w: int, size: int) -> None:
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from {h}x{w} frames")


def hflip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror a ``(T, H, W, C)`` clip left to right."""
    return clip.flip(2)


def to_cthw(clip: torch.Tensor) -> torch.Tensor:
    """``(T, H, W, C)`` to the model's ``(C, T, H, W)``, contiguous."""
    return clip.permute(3, 0, 1, 2).contiguous()


def normalize(
    x: torch.Tensor,
    mean: Sequence[float] | torch.Tensor = KINETICS_MEAN,
    std: Sequence[float] | torch.Tensor = KINETICS_STD,
) -> torch.Tensor:
    """uint8 clips ``(..., 3, T, H, W)`` to float32 ``(x / 255 - mean) / std``, on ``x``'s device.

    ``mean`` and ``std`` are per channel, in [0, 1] units; pass tensors already on the
    device to avoid a host-to-device copy per call.
    """
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(3, 1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).view(3, 1, 1, 1)
    return x.float().div_(255).sub_(m).div_(s)


@dataclass(frozen=True)
class ClipTransform:
    """Per-clip spatial transforms on uint8, before batching (normalisation comes after).

    Training: resize the short side to ``resize_to`` (a no-op for cached frames), random
    ``size`` crop, and (``flip``) a horizontal flip with probability 1/2. Evaluation: resize,
    centre crop. Direction-sensitive data sets (Something-Something's "pushing something from
    left to right") either turn the flip off or flip with a label map (see
    :class:`VideoClipDataset`).
    """

    size: int
    resize_to: int
    train: bool
    flip: bool = True

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """``(T, H, W, 3)`` uint8 frames to a ``(3, T, size, size)`` uint8 tensor."""
        return self.apply(frames, rng)[0]

    def apply(self, frames: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, bool]:
        """As ``__call__``, and whether the clip was flipped."""
        x = resize_short_side(torch.from_numpy(frames), self.resize_to)
        if not self.train:
            return to_cthw(center_crop(x, self.size)), False
        x = random_crop(x, self.size, rng)
        flipped = bool(rng.random() < 0.5)  # drawn even with the flip off: the crops stay the same
        if flipped and self.flip:
            x = hflip(x)
        return to_cthw(x), flipped and self.flip
