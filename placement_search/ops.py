"""The op kinds a searchable position can take, resolved through one registry.

Every op kind has one signature::

    build_op(kind, in_channels, out_channels, kernel=(kt, k, k), stride=(st, s, s),
             norm_layer=..., act_layer=..., mid_channels=None) -> nn.Module

and returns the convolution part of a position *without* its final normalisation and
activation (the backbone adds those, so every kind ends the same way)::

    2d       Conv(1 x k x k, stride st x s x s)
    3d       Conv(kt x k x k, stride st x s x s)
    sep      Conv(1 x k x k, stride 1 x s x s) -> norm -> act -> Conv(kt x 1 x 1, stride st x 1 x 1)
             middle width = out_channels (S3D, Xie et al. 2018)
    2plus1d  same factorisation, middle width chosen so the parameter count matches the
             full kt x k x k conv (R(2+1)D, Tran et al. 2018):
             M = floor(kt * k^2 * N_in * N_out / (k^2 * N_in + kt * N_out))

Padding keeps sizes "same" for odd kernels: symmetric (kt // 2, k // 2, k // 2), PyTorch's
habit, or ``padding="tf_same"``: TensorFlow's "SAME", computed from the input size and
asymmetric for strided convs (:class:`Conv3dSame`, like timm's ``Conv2dSame``), which the
TF-born I3D and S3D-G use. A new kind is one function and one :func:`register_op` call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError

__all__ = [
    "OP_INFO",
    "OP_KINDS",
    "TEMPORAL_KINDS",
    "OpBuilder",
    "build_op",
    "check_kind",
    "is_temporal",
    "op_label",
    "register_op",
    "tran_mid_channels",
]

Triple = tuple[int, int, int]
NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]
Padding = Literal["symmetric", "tf_same"]


class OpBuilder(Protocol):
    def __call__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel: Triple,
        stride: Triple,
        norm_layer: NormLayer,
        act_layer: ActLayer,
        mid_channels: int | None,
        bias: bool,
        padding: Padding,
    ) -> nn.Module: ...


OP_KINDS: dict[str, OpBuilder] = {}
#: per kind: its label in figures and reports, and whether its receptive field spans time
OP_INFO: dict[str, tuple[str, bool]] = {}
#: the built-in kinds whose receptive field spans time (everything but ``2d``); for any
#: registered kind, ask :func:`is_temporal`
TEMPORAL_KINDS: tuple[str, ...] = ("3d", "sep", "2plus1d")


def register_op(name: str, *, label: str | None = None, temporal: bool = True) -> Callable[[OpBuilder], OpBuilder]:
    """Register an op builder under ``name`` (decorator). ``label`` names it in figures and
    reports (default: the name); ``temporal``: whether it mixes information across frames."""

    def deco(fn: OpBuilder) -> OpBuilder:
        if name in OP_KINDS:
            raise ValueError(f"op kind {name!r} is already registered")
        OP_KINDS[name] = fn
        OP_INFO[name] = (label or name, temporal)
        return fn

    return deco


def op_label(kind: str) -> str:
    """How figures and reports name an op kind (``"3d"`` -> ``"3D"``)."""
    return OP_INFO.get(kind, (kind, True))[0]


def is_temporal(kind: str) -> bool:
    return OP_INFO.get(kind, (kind, True))[1]


def check_kind(kind: str, where: str = "op kind") -> str:
    if kind not in OP_KINDS:
        known = ", ".join(repr(k) for k in OP_KINDS)
        raise UserError(f"{where}: unknown op kind {kind!r}; known kinds are {known}")
    return kind


def pad_same(x: torch.Tensor, kernel: Triple, stride: Triple, value: float = 0.0) -> torch.Tensor:
    """Pad ``x`` (N, C, T, H, W) as TensorFlow's "SAME": output size ceil(n / stride),
    the odd pixel of padding at the end."""
    pads: list[int] = []
    for n, k, s in zip(reversed(x.shape[-3:]), reversed(kernel), reversed(stride)):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class Conv3dSame(nn.Conv3d):
    """Conv3d with TensorFlow "SAME" padding computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size, self.stride)  # type: ignore[arg-type]
        return F.conv3d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MaxPool3dSame(nn.MaxPool3d):
    """MaxPool3d with TensorFlow "SAME" padding (padded cells never win)."""

    def __init__(self, kernel_size: Triple, stride: Triple) -> None:
        super().__init__(kernel_size, stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size, self.stride, value=float("-inf"))  # type: ignore[arg-type]
        return F.max_pool3d(x, self.kernel_size, self.stride)


def _conv(
    in_ch: int, out_ch: int, kernel: Triple, stride: Triple, bias: bool = False, padding: Padding = "symmetric"
) -> nn.Conv3d:
    if padding == "tf_same":
        return Conv3dSame(in_ch, out_ch, kernel, stride=stride, bias=bias)
    if padding != "symmetric":
        raise UserError(f"padding: expected 'symmetric' or 'tf_same', got {padding!r}")
    pad = (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)
    return nn.Conv3d(in_ch, out_ch, kernel, stride=stride, padding=pad, bias=bias)


def tran_mid_channels(in_channels: int, out_channels: int, kt: int, k: int) -> int:
    """Middle width of R(2+1)D that matches the parameter count of a full kt x k x k conv."""
    return (kt * k * k * in_channels * out_channels) // (k * k * in_channels + kt * out_channels)


@register_op("2d", label="2D", temporal=False)
def _build_2d(in_channels, out_channels, *, kernel, stride, norm_layer, act_layer, mid_channels, bias, padding):
    return _conv(in_channels, out_channels, (1, kernel[1], kernel[2]), stride, bias, padding)


@register_op("3d", label="3D")
def _build_3d(in_channels, out_channels, *, kernel, stride, norm_layer, act_layer, mid_channels, bias, padding):
    return _conv(in_channels, out_channels, kernel, stride, bias, padding)


def _factorised(in_ch, out_ch, mid, kernel, stride, norm_layer, act_layer, bias, padding) -> nn.Sequential:
    return nn.Sequential(
        _conv(in_ch, mid, (1, kernel[1], kernel[2]), (1, stride[1], stride[2]), False, padding),
        norm_layer(mid),
        act_layer(),
        _conv(mid, out_ch, (kernel[0], 1, 1), (stride[0], 1, 1), bias, padding),
    )


@register_op("sep", label="separable")
def _build_sep(in_channels, out_channels, *, kernel, stride, norm_layer, act_layer, mid_channels, bias, padding):
    mid = out_channels if mid_channels is None else mid_channels
    return _factorised(in_channels, out_channels, mid, kernel, stride, norm_layer, act_layer, bias, padding)


@register_op("2plus1d", label="R(2+1)D")
def _build_2plus1d(in_channels, out_channels, *, kernel, stride, norm_layer, act_layer, mid_channels, bias, padding):
    if mid_channels is None:
        mid_channels = tran_mid_channels(in_channels, out_channels, kernel[0], kernel[1])
    return _factorised(in_channels, out_channels, mid_channels, kernel, stride, norm_layer, act_layer, bias, padding)


def build_op(
    kind: str,
    in_channels: int,
    out_channels: int,
    *,
    kernel: Triple,
    stride: Triple = (1, 1, 1),
    norm_layer: NormLayer = nn.BatchNorm3d,
    act_layer: ActLayer = nn.ReLU,
    mid_channels: int | None = None,
    bias: bool = False,
    padding: Padding = "symmetric",
) -> nn.Module:
    """Build the convolution part of a position of kind ``kind``.

    Args:
        kind: a registered op kind (``2d``, ``3d``, ``sep``, ``2plus1d``).
        in_channels: input width.
        out_channels: output width.
        kernel: ``(kt, k, k)``; ``2d`` ignores ``kt``.
        stride: ``(st, s, s)``; factorised kinds put ``s`` on the spatial and ``st`` on the
            temporal conv.
        norm_layer: normalisation inside factorised kinds (after the spatial conv).
        act_layer: activation inside factorised kinds.
        mid_channels: middle width of factorised kinds; ``None`` picks the kind's own rule.
        bias: give the op's last conv a bias (TF-slim's separable conv has one, having no
            norm after it).
        padding: ``symmetric`` (PyTorch) or ``tf_same`` (TensorFlow's "SAME").
    """
    check_kind(kind)
    if kernel[0] < 1 or kernel[0] % 2 == 0:
        raise UserError(f"temporal kernel size must be an odd integer >= 1, got {kernel[0]}")
    return OP_KINDS[kind](
        in_channels,
        out_channels,
        kernel=kernel,
        stride=stride,
        norm_layer=norm_layer,
        act_layer=act_layer,
        mid_channels=mid_channels,
        bias=bias,
        padding=padding,
    )
