"""Video ResNet with basic blocks (depths 18 and 34), and the ``tiny`` backbone.

Layout (torchvision.models.video.resnet; Tran et al., CVPR 2018)::

    stem      op(3 -> 64, kt x 7 x 7, stride 1 x 2 x 2) -> BN -> ReLU
    layer1-4  basic blocks: x -> [conv1: op -> BN -> ReLU] -> [conv2: op -> BN] (+ shortcut) -> ReLU
              shortcut = 1x1x1 conv + BN where the stride or width changes
    head      global average pool -> Linear(512, classes)

Every conv of every block is a searchable position (``layer2.0.conv1``, ...); space files
tie them per block or per stage. Two rules follow torchvision so that its models are
reproduced exactly (``temporal_stride = "by_op"``, ``mid_channels = "torchvision"``):

* a stage's first block downsamples time only when its first conv is temporal (MC3's 2D
  stages keep all frames: ``Conv3DNoTemporal.get_downsample_stride``), and the shortcut
  uses the same stride;
* R(2+1)D's middle width in a block comes from the block's *input* width for both convs:
  ``(inplanes * planes * 27) // (inplanes * 9 + 3 * planes)``; the R(2+1)D stem's middle
  width is a fixed 45 (``stem_mid_channels``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import nn

from ..ops import build_op, tran_mid_channels
from ..placement import Choice
from ._base import Backbone, Link, PositionInfo, register_backbone

__all__ = ["BasicBlock", "ResNetArgs", "ResNetBackbone", "TinyArgs", "TinyBackbone", "VideoResNet"]

_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


@dataclass(frozen=True)
class ResNetArgs:
    """Arguments of the video ResNet backbone (a space file's ``[backbone]`` table).

    Attributes:
        depth: 18 or 34 (basic blocks); ignored when ``layers`` is given.
        layers: blocks per stage, overriding ``depth``.
        widths: output width of each stage.
        stem_channels: stem output width.
        stem_kernel: spatial kernel of the stem.
        stem_stride: spatial stride of the stem.
        stem_kt: default temporal kernel of the stem.
        block_kt: default temporal kernel of block convs.
        stage_strides: spatial stride of each stage's first block.
        temporal_stride: ``by_op`` (time is downsampled with space at a stage's first
            block only when its first conv is temporal: torchvision's rule), ``always`` or
            ``never``.
        mid_channels: R(2+1)D middle width in blocks: ``torchvision`` (from the block's
            input width, for both convs) or ``tran`` (each conv's own widths).
        stem_mid_channels: middle width of a factorised stem; unset: the op's own rule.
        in_channels: input channels of the clip.
        dropout: dropout before the classifier.
        norm_eps: batch-norm epsilon.
        norm_momentum: batch-norm momentum.
    """

    depth: Literal[18, 34] = 18
    layers: tuple[int, ...] | None = None
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_channels: int = 64
    stem_kernel: int = 7
    stem_stride: int = 2
    stem_kt: int = 3
    block_kt: int = 3
    stage_strides: tuple[int, ...] = (1, 2, 2, 2)
    temporal_stride: Literal["by_op", "always", "never"] = "by_op"
    mid_channels: Literal["torchvision", "tran"] = "torchvision"
    stem_mid_channels: int | None = None
    in_channels: int = 3
    dropout: float = 0.0
    norm_eps: float = 1e-5
    norm_momentum: float = 0.1

    def __post_init__(self) -> None:
        layers = self.stage_layers
        if not layers:
            raise ValueError("a ResNet needs at least one stage ('layers' is empty)")
        if len(self.widths) != len(layers) or len(self.stage_strides) != len(layers):
            raise ValueError(
                f"'widths' ({len(self.widths)}), 'stage_strides' ({len(self.stage_strides)}) and the "
                f"number of stages ({len(layers)}) must agree"
            )
        if any(n < 1 for n in layers) or any(w < 1 for w in self.widths) or any(s < 1 for s in self.stage_strides):
            raise ValueError("'layers', 'widths' and 'stage_strides' must be positive")
        for name in ("stem_channels", "stem_kernel", "stem_stride", "in_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name!r} must be positive, got {getattr(self, name)}")
        for name in ("stem_kt", "block_kt"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(f"{name!r} must be an odd integer >= 1, got {getattr(self, name)}")
        if self.stem_mid_channels is not None and self.stem_mid_channels < 1:
            raise ValueError(f"'stem_mid_channels' must be positive, got {self.stem_mid_channels}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1), got {self.dropout}")

    @property
    def stage_layers(self) -> tuple[int, ...]:
        return self.layers if self.layers is not None else _DEPTHS[self.depth]


class BasicBlock(nn.Module):
    """x -> conv1 -> conv2 (+ shortcut) -> ReLU; ``conv1``/``conv2`` end in BN (conv1 in ReLU too)."""

    def __init__(self, conv1: nn.Module, conv2: nn.Module, downsample: nn.Module | None) -> None:
        super().__init__()
        self.conv1 = conv1
        self.conv2 = conv2
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        return self.relu(out + residual)


class VideoResNet(nn.Module):
    def __init__(self, stem: nn.Module, layers: list[nn.Sequential], width: int, num_classes: int, dropout: float):
        super().__init__()
        self.stem = stem
        for i, layer in enumerate(layers, 1):
            self.add_module(f"layer{i}", layer)
        self.num_stages = len(layers)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(width, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.forward_features(x)).flatten(1)
        return self.fc(self.dropout(x))


class _Head(nn.Module):
    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.avgpool(x).flatten(1))


class _WithShortcut(nn.Module):
    """Cost-chain link of a block's first conv: the conv, and the shortcut on the same input."""

    def __init__(self, main: nn.Module, shortcut: nn.Module | None) -> None:
        super().__init__()
        self.main = main
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is not None:
            self.shortcut(x)
        return self.main(x)


@dataclass(frozen=True)
class _ConvSpec:
    position: str
    block: str
    stage: str
    in_channels: int
    out_channels: int
    spatial_stride: int
    default_kt: int
    block_in: int  # the block's input width (torchvision's R(2+1)D middle-width rule)
    first_in_block: bool
    shortcut: bool  # the position carries the block's shortcut (first conv of a block with one)


@register_backbone
class ResNetBackbone(Backbone):
    name = "resnet"
    Args = ResNetArgs
    args: ResNetArgs

    # -- layout -------------------------------------------------------------------------
    def _specs(self) -> list[_ConvSpec]:
        a = self.args
        specs = [
            _ConvSpec(
                "stem",
                "stem",
                "stem",
                a.in_channels,
                a.stem_channels,
                a.stem_stride,
                a.stem_kt,
                a.in_channels,
                True,
                False,
            )
        ]
        inplanes = a.stem_channels
        for s, (n_blocks, planes, stride) in enumerate(zip(a.stage_layers, a.widths, a.stage_strides), 1):
            for b in range(n_blocks):
                block = f"layer{s}.{b}"
                st = stride if b == 0 else 1
                shortcut = b == 0 and (st != 1 or inplanes != planes)
                specs.append(
                    _ConvSpec(
                        f"{block}.conv1", block, f"layer{s}", inplanes, planes, st, a.block_kt, inplanes, True, shortcut
                    )
                )
                specs.append(
                    _ConvSpec(
                        f"{block}.conv2", block, f"layer{s}", planes, planes, 1, a.block_kt, inplanes, False, False
                    )
                )
                inplanes = planes
        return specs

    def positions(self) -> list[PositionInfo]:
        out = []
        for sp in self._specs():
            modules: tuple[str, ...] = (sp.position,)
            if sp.shortcut:
                modules += (f"{sp.block}.downsample",)
            out.append(
                PositionInfo(
                    sp.position,
                    sp.default_kt,
                    sp.block,
                    sp.stage,
                    sp.in_channels,
                    sp.out_channels,
                    sp.spatial_stride,
                    modules,
                )
            )
        return out

    # -- pieces -------------------------------------------------------------------------
    def _norm(self, channels: int) -> nn.Module:
        return nn.BatchNorm3d(channels, eps=self.args.norm_eps, momentum=self.args.norm_momentum)

    def _temporal_stride(self, sp: _ConvSpec, choice: Choice) -> int:
        if sp.spatial_stride == 1 or sp.position == "stem":
            return 1
        rule = self.args.temporal_stride
        if rule == "always" or (rule == "by_op" and choice.temporal):
            return sp.spatial_stride
        return 1

    def _mid(self, sp: _ConvSpec, choice: Choice, k: int) -> int | None:
        if choice.op != "2plus1d":
            return None
        if sp.position == "stem":
            return self.args.stem_mid_channels
        if self.args.mid_channels == "torchvision":
            return tran_mid_channels(sp.block_in, sp.out_channels, choice.kt, k)
        return None

    def _conv_unit(self, sp: _ConvSpec, choice: Choice) -> nn.Sequential:
        k = self.args.stem_kernel if sp.position == "stem" else 3
        op = build_op(
            choice.op,
            sp.in_channels,
            sp.out_channels,
            kernel=(choice.kt, k, k),
            stride=(self._temporal_stride(sp, choice), sp.spatial_stride, sp.spatial_stride),
            norm_layer=self._norm,
            act_layer=partial(nn.ReLU, inplace=True),
            mid_channels=self._mid(sp, choice, k),
        )
        if sp.position == "stem":
            # torchvision's stems are flat: R2Plus1dStem = conv, BN, ReLU, conv, BN, ReLU
            parts = list(op.children()) if isinstance(op, nn.Sequential) else [op]
            return nn.Sequential(*parts, self._norm(sp.out_channels), nn.ReLU(inplace=True))
        if sp.first_in_block:
            return nn.Sequential(op, self._norm(sp.out_channels), nn.ReLU(inplace=True))
        return nn.Sequential(op, self._norm(sp.out_channels))

    def _shortcut(self, sp: _ConvSpec, choice: Choice) -> nn.Module | None:
        if not sp.shortcut:
            return None
        s = sp.spatial_stride
        return nn.Sequential(
            nn.Conv3d(sp.in_channels, sp.out_channels, 1, stride=(self._temporal_stride(sp, choice), s, s), bias=False),
            self._norm(sp.out_channels),
        )

    # -- model --------------------------------------------------------------------------
    def build(self, choices: Mapping[str, Choice], *, num_classes: int) -> nn.Module:
        specs = self._specs()
        stem = self._conv_unit(specs[0], choices["stem"])
        stages: dict[str, list[nn.Module]] = {}
        for first, second in zip(specs[1::2], specs[2::2]):
            block = BasicBlock(
                self._conv_unit(first, choices[first.position]),
                self._conv_unit(second, choices[second.position]),
                self._shortcut(first, choices[first.position]),
            )
            stages.setdefault(first.stage, []).append(block)
        layers = [nn.Sequential(*blocks) for blocks in stages.values()]
        return VideoResNet(stem, layers, self.args.widths[-1], num_classes, self.args.dropout)

    def chain(self, *, num_classes: int) -> list[Link]:
        links = []
        for sp in self._specs():

            def make(c: Mapping[str, Choice], sp: _ConvSpec = sp) -> nn.Module:
                choice = c[sp.position]
                if sp.first_in_block and sp.position != "stem":
                    return _WithShortcut(self._conv_unit(sp, choice), self._shortcut(sp, choice))
                return self._conv_unit(sp, choice)

            links.append(Link(sp.position, (sp.position,), make))
        width = self.args.widths[-1]
        links.append(Link("head", (), lambda _c: _Head(width, num_classes)))
        return links


@dataclass(frozen=True)
class TinyArgs(ResNetArgs):
    """The ``tiny`` backbone: a four-stage video ResNet with one basic block per stage,
    16-128 channels, a 3x3 stem, and time never downsampled, so short clips keep their
    frames. It trains in seconds on a laptop CPU at 8-16 frames of 32-64 px."""

    layers: tuple[int, ...] | None = (1, 1, 1, 1)
    widths: tuple[int, ...] = (16, 32, 64, 128)
    stem_channels: int = 16
    stem_kernel: int = 3
    stem_stride: int = 2
    temporal_stride: Literal["by_op", "always", "never"] = "never"
    mid_channels: Literal["torchvision", "tran"] = "tran"


@register_backbone
class TinyBackbone(ResNetBackbone):
    name = "tiny"
    Args = TinyArgs
