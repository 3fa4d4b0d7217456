"""Measured latency and throughput of a built model on a device."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .devices import resolve_device, synchronize
from .errors import UserError

__all__ = ["Latency", "device_name", "measure_latency"]


@dataclass(frozen=True)
class Latency:
    device: str
    batch: int
    warmup: int
    runs: int
    median_ms: float
    min_ms: float
    max_ms: float

    @property
    def clips_per_s(self) -> float:
        return self.batch / (self.median_ms / 1e3)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "clips_per_s": self.clips_per_s}


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    device: str = "cpu",
    batch: int = 1,
    warmup: int = 3,
    runs: int = 10,
) -> Latency:
    """Median forward time of ``model`` in eval mode on a random clip.

    Args:
        model: the model (moved to ``device``).
        input_shape: ``(1, C, T, H, W)``; the batch dimension is replaced by ``batch``.
        device: torch device name.
        batch: clips per forward pass.
        warmup: untimed passes first (allocator, cuDNN autotuning).
        runs: timed passes; the median is reported.
    """
    if batch < 1 or runs < 1 or warmup < 0:
        raise UserError(f"latency: batch and runs must be >= 1 and warmup >= 0, got {batch}, {runs}, {warmup}")
    dev = resolve_device(device)
    model = model.to(dev).eval()
    x = torch.randn((batch, *input_shape[1:]), device=dev)
    for _ in range(warmup):
        model(x)
    synchronize(dev)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(x)
        synchronize(dev)
        times.append((time.perf_counter() - t0) * 1e3)
    return Latency(str(dev), batch, warmup, runs, statistics.median(times), min(times), max(times))


def device_name(dev: str) -> str:
    """What a latency was measured on, e.g. ``cuda: NVIDIA H100 80GB HBM3`` or
    ``cpu: AMD EPYC 7B13 (8 threads)``."""
    if dev.startswith("cuda"):
        index = int(dev.split(":")[1]) if ":" in dev else torch.cuda.current_device()
        return f"cuda: {torch.cuda.get_device_name(index)}"
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    if not model:
        import platform

        model = platform.processor() or platform.machine()
    return f"{dev}: {model} ({torch.get_num_threads()} threads)"
