"""Device names from users: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``."""

from __future__ import annotations

import torch

from .errors import UserError

__all__ = ["resolve_device", "synchronize"]


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name`` (``auto``: CUDA if present, else CPU); a clear error
    for a malformed name or a device this torch cannot see."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"device: {name!r} is not a device name (auto, cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device: {name!r} asked for, but this torch sees no CUDA device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"device: {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device: {name!r} asked for, but MPS is not available")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (for timing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
