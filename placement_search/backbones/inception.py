"""The Inception-v1 trunk of I3D, S3D and S3D-G.

Layout (Carreira & Zisserman 2017; Xie et al. 2018; torchvision ``s3d``)::

    conv1     op(3 -> 64, kt x 7 x 7, stride 2 x 2 x 2)          position, default kt 7
    pool2a    max 1x3x3 / 1x2x2
    conv2b    1x1x1 (64)
    conv2c    op(64 -> 192, kt x 3 x 3)                           position
    pool3a    max 1x3x3 / 1x2x2
    mixed_3b, mixed_3c                                            positions
    pool4a    max 3x3x3 / 2x2x2
    mixed_4b ... mixed_4f                                         positions
    pool5a    max 2x2x2 / 2x2x2
    mixed_5b, mixed_5c                                            positions
    head      avg pool (2 x 7 x 7, stride 1; clipped to the feature map) -> dropout
              -> 1x1x1 conv with bias -> mean over time and space

    Mixed block:   x -+-> 1x1x1 ------------------------------> [gate] -+
                      +-> 1x1x1 -> op(3x3) ---------------------> [gate] -+-> concat
                      +-> 1x1x1 -> op(3x3) ---------------------> [gate] -+
                      +-> max 3x3x3 / 1 -> 1x1x1 ----------------> [gate] -+

Every conv is followed by batch norm and ReLU. A Mixed block's position sets the op of
its two 3x3 convs (or, with ``branch_positions``, each branch is its own position:
``mixed_3b.b1``, ``mixed_3b.b2``). S3D-G's feature gating (``gating``) multiplies a
tensor by ``sigmoid(W mean(x))`` per channel, after ``conv2c`` and after every branch of
every Mixed block from ``gating_from`` on, as in the published ``s3dg.py``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import MaxPool3dSame, build_op
from ..placement import Choice
from ._base import Backbone, Link, PositionInfo, register_backbone

__all__ = ["InceptionArgs", "InceptionBackbone", "InceptionTrunk", "MixedBlock", "SelfGating"]

# name, in, (branch0, branch1 reduce, branch1, branch2 reduce, branch2, branch3)
_MIXED = [
    ("mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
]
_POOL_BEFORE: dict[str, tuple[str, tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]] = {
    "mixed_4b": ("pool4a", (3, 3, 3), (2, 2, 2), (1, 1, 1)),
    "mixed_5b": ("pool5a", (2, 2, 2), (2, 2, 2), (0, 0, 0)),
}
_STEM = ["conv1", "conv2c"]


@dataclass(frozen=True)
class InceptionArgs:
    """Arguments of the Inception backbone (a space file's ``[backbone]`` table).

    Attributes:
        in_channels: input channels of the clip.
        conv1_kt: default temporal kernel of ``conv1`` (I3D and torchvision S3D: 7).
        kt: default temporal kernel of the other positions.
        conv1_temporal_stride: temporal stride of ``conv1``.
        branch_positions: expose each Mixed branch as its own position.
        gating: S3D-G feature gating.
        gating_from: first position that is gated (S3D-G: ``conv2c``).
        gating_bias: give the gate a bias (the published ``s3dg.py`` has none).
        norm_eps: batch-norm epsilon.
        norm_momentum: batch-norm momentum.
        norm_scale: batch norm with a learned scale (torchvision); DeepMind's I3D and
            S3D-G have only the offset.
        sep_style: ``torchvision`` (temporal conv of ``sep`` followed by BN and ReLU) or
            ``tf`` (TF-slim's: the temporal conv has a bias and no BN).
        padding: ``torch`` (symmetric, torchvision) or ``tf_same`` (TensorFlow's "SAME" for
            convs and max pools, as DeepMind's I3D and S3D-G: sizes differ from ``torch``
            only where a strided layer meets an odd size).
        dropout: dropout before the classifier.
    """

    in_channels: int = 3
    conv1_kt: int = 7
    kt: int = 3
    conv1_temporal_stride: int = 2
    branch_positions: bool = False
    gating: bool = False
    gating_from: str = "conv2c"
    gating_bias: bool = False
    norm_eps: float = 1e-3
    norm_momentum: float = 0.001
    norm_scale: bool = True
    sep_style: Literal["torchvision", "tf"] = "torchvision"
    padding: Literal["torch", "tf_same"] = "torch"
    dropout: float = 0.2

    def __post_init__(self) -> None:
        allowed = _STEM + [m[0] for m in _MIXED]
        if self.gating_from not in allowed:
            raise ValueError(f"'gating_from' must be one of {', '.join(allowed)}, got {self.gating_from!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1), got {self.dropout}")
        for name in ("conv1_kt", "kt"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(f"{name!r} must be an odd integer >= 1, got {getattr(self, name)}")
        if self.in_channels < 1 or self.conv1_temporal_stride < 1:
            raise ValueError("'in_channels' and 'conv1_temporal_stride' must be positive")


class SelfGating(nn.Module):
    """S3D-G feature gating: ``y = sigmoid(W mean_{T,H,W}(x) [+ b]) * x``, per channel."""

    def __init__(self, channels: int, bias: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))
        return x * w[:, :, None, None, None]


class MixedBlock(nn.Module):
    def __init__(self, branch0: nn.Module, branch1: nn.Module, branch2: nn.Module, branch3: nn.Module) -> None:
        super().__init__()
        self.branch0 = branch0
        self.branch1 = branch1
        self.branch2 = branch2
        self.branch3 = branch3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class ReferenceHead(nn.Module):
    """I3D/S3D logits: avg pool (2 x 7 x 7, stride 1, clipped to the feature map), dropout,
    1x1x1 conv with bias, mean over the remaining time and space."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv3d(in_channels, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h, w = x.shape[-3:]
        x = F.avg_pool3d(x, (min(2, t), min(7, h), min(7, w)), stride=1)
        return self.classifier(self.dropout(x)).mean(dim=(2, 3, 4))


class InceptionTrunk(nn.Module):
    def __init__(self, features: nn.Sequential, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_backbone
class InceptionBackbone(Backbone):
    name = "inception"
    Args = InceptionArgs
    args: InceptionArgs

    def positions(self) -> list[PositionInfo]:
        a = self.args
        out = [
            PositionInfo("conv1", a.conv1_kt, "conv1", "stem", a.in_channels, 64, 2, ("features.conv1",)),
            PositionInfo("conv2c", a.kt, "conv2c", "stem", 64, 192, 1, ("features.conv2c",)),
        ]
        for name, cin, w in _MIXED:
            stage = name[:-1]
            if a.branch_positions:
                out.append(PositionInfo(f"{name}.b1", a.kt, name, stage, w[1], w[2], 1, (f"features.{name}.branch1",)))
                out.append(PositionInfo(f"{name}.b2", a.kt, name, stage, w[3], w[4], 1, (f"features.{name}.branch2",)))
            else:
                out.append(
                    PositionInfo(name, a.kt, name, stage, cin, w[0] + w[2] + w[4] + w[5], 1, (f"features.{name}",))
                )
        return out

    # -- pieces -------------------------------------------------------------------------
    def _norm(self, channels: int) -> nn.Module:
        a = self.args
        bn = nn.BatchNorm3d(channels, eps=a.norm_eps, momentum=a.norm_momentum, affine=True)
        if not a.norm_scale:
            # offset only (Sonnet/TF-slim batch norm with scale=False): the weight is fixed at 1
            bn.weight = None  # type: ignore[assignment]
        return bn

    def _maxpool(
        self, kernel: tuple[int, int, int], stride: tuple[int, int, int], padding: tuple[int, int, int]
    ) -> nn.Module:
        if self.args.padding == "tf_same":
            return MaxPool3dSame(kernel, stride)
        return nn.MaxPool3d(kernel, stride=stride, padding=padding)

    def _unit(self, cin: int, cout: int) -> nn.Sequential:
        """1x1x1 conv -> BN -> ReLU."""
        return nn.Sequential(nn.Conv3d(cin, cout, 1, bias=False), self._norm(cout), nn.ReLU(inplace=True))

    def _gated(self, name: str) -> bool:
        a = self.args
        if not a.gating:
            return False
        order = _STEM + [m[0] for m in _MIXED]
        return order.index(name) >= order.index(a.gating_from)

    def _op_unit(
        self, choice: Choice, cin: int, cout: int, k: int, stride: tuple[int, int, int], gate: bool
    ) -> nn.Sequential:
        """op -> BN -> ReLU [-> gate]; TF-style ``sep`` ends in a biased conv and ReLU, no BN."""
        tf_sep = choice.op == "sep" and self.args.sep_style == "tf"
        op = build_op(
            choice.op,
            cin,
            cout,
            kernel=(choice.kt, k, k),
            stride=stride,
            norm_layer=self._norm,
            act_layer=partial(nn.ReLU, inplace=True),
            bias=tf_sep,
            padding="tf_same" if self.args.padding == "tf_same" else "symmetric",
        )
        parts: list[nn.Module] = [op, nn.Identity() if tf_sep else self._norm(cout), nn.ReLU(inplace=True)]
        if gate:
            parts.append(SelfGating(cout, self.args.gating_bias))
        return nn.Sequential(*parts)

    def _mixed(self, name: str, cin: int, w: tuple[int, ...], c1: Choice, c2: Choice) -> MixedBlock:
        g = self._gated(name)

        def gated(*parts: nn.Module, width: int) -> nn.Sequential:
            return nn.Sequential(*parts, *([SelfGating(width, self.args.gating_bias)] if g else []))

        return MixedBlock(
            gated(self._unit(cin, w[0]), width=w[0]),
            nn.Sequential(self._unit(cin, w[1]), self._op_unit(c1, w[1], w[2], 3, (1, 1, 1), g)),
            nn.Sequential(self._unit(cin, w[3]), self._op_unit(c2, w[3], w[4], 3, (1, 1, 1), g)),
            gated(self._maxpool((3, 3, 3), (1, 1, 1), (1, 1, 1)), self._unit(cin, w[5]), width=w[5]),
        )

    def _branch_choices(self, choices: Mapping[str, Choice], name: str) -> tuple[Choice, Choice]:
        if self.args.branch_positions:
            return choices[f"{name}.b1"], choices[f"{name}.b2"]
        return choices[name], choices[name]

    def _segments(self) -> list[tuple[str, Callable[[Mapping[str, Choice]], nn.Module]]]:
        """(module name, maker) in forward order; makers take a position -> choice mapping."""
        a = self.args
        segs: list[tuple[str, Callable[[Mapping[str, Choice]], nn.Module]]] = [
            (
                "conv1",
                lambda c: self._op_unit(
                    c["conv1"], a.in_channels, 64, 7, (a.conv1_temporal_stride, 2, 2), self._gated("conv1")
                ),
            ),
            ("pool2a", lambda c: self._maxpool((1, 3, 3), (1, 2, 2), (0, 1, 1))),
            ("conv2b", lambda c: self._unit(64, 64)),
            ("conv2c", lambda c: self._op_unit(c["conv2c"], 64, 192, 3, (1, 1, 1), self._gated("conv2c"))),
            ("pool3a", lambda c: self._maxpool((1, 3, 3), (1, 2, 2), (0, 1, 1))),
        ]
        for name, cin, w in _MIXED:
            if name in _POOL_BEFORE:
                pname, k, s, p = _POOL_BEFORE[name]
                segs.append((pname, partial(self._pool, kernel=k, stride=s, padding=p)))
            segs.append((name, partial(self._mixed_from, name=name, cin=cin, w=w)))
        return segs

    def _pool(
        self,
        _c: Mapping[str, Choice],
        *,
        kernel: tuple[int, int, int],
        stride: tuple[int, int, int],
        padding: tuple[int, int, int],
    ) -> nn.Module:
        return self._maxpool(kernel, stride, padding)

    def _mixed_from(self, c: Mapping[str, Choice], *, name: str, cin: int, w: tuple[int, ...]) -> nn.Module:
        return self._mixed(name, cin, w, *self._branch_choices(c, name))

    # -- model --------------------------------------------------------------------------
    def build(self, choices: Mapping[str, Choice], *, num_classes: int) -> nn.Module:
        features = nn.Sequential(OrderedDict((name, make(choices)) for name, make in self._segments()))
        return InceptionTrunk(features, ReferenceHead(1024, num_classes, self.args.dropout))

    def chain(self, *, num_classes: int) -> list[Link]:
        by_block: dict[str, list[str]] = {}
        for p in self.positions():
            by_block.setdefault(p.block, []).append(p.name)
        links = [Link(name, tuple(by_block.get(name, ())), make) for name, make in self._segments()]
        links.append(Link("head", (), lambda _c: ReferenceHead(1024, num_classes, self.args.dropout)))
        return links
