"""What the proxy trainer needs from a data set.

A :class:`ClipData` hands out batches of normalised clips, ``x`` of shape
``(N, 3, T, S, S)`` (float32) and labels ``y`` of shape ``(N,)`` (int64), already on the
training device: an endless, seeded stream for training and a fixed, finite pass over
held-out clips for evaluation. The synthetic benchmark generates its clips on the device;
real video reads them from the decoded-clip cache through a DataLoader.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["Batch", "ClipData"]

Batch = tuple[torch.Tensor, torch.Tensor]


class ClipData(ABC):
    """A labelled clip data set with a training stream and a held-out split."""

    #: names of the classes, index = label
    class_names: list[str]
    #: clip length T and side S of the clips handed out
    frames: int
    size: int

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @abstractmethod
    def train_batches(self, batch_size: int, *, seed: int, device: torch.device) -> Iterator[Batch]:
        """Endless stream of training batches; the same seed gives the same stream."""

    @abstractmethod
    def eval_batches(self, batch_size: int, *, device: torch.device) -> Iterator[Batch]:
        """One deterministic pass over the held-out clips."""

    @property
    @abstractmethod
    def eval_size(self) -> int:
        """Number of held-out clips."""

    def describe(self) -> dict[str, Any]:
        """JSON-able description for result records."""
        return {"classes": self.num_classes, "frames": self.frames, "size": self.size, "eval_clips": self.eval_size}
