"""Parameters, multiply-adds (MACs) and FLOPs, measured without real activations.

Convention: **MACs** are the multiply-accumulates of convolution and fully connected
layers (S3D-G's gate included), batch size 1; normalisation, activations, pooling,
residual additions and gating products are not counted, as in the I3D/S3D/R(2+1)D
papers, torchvision's published "GFLOPS" (which are GMACs) and fvcore with its norm
handles off. **FLOPs** = 2 x MACs.

Models are built and run on PyTorch's ``meta`` device: shapes propagate, nothing is
allocated or computed, so a Kinetics-scale I3D at 64 x 224^2 is counted in milliseconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import UserError

__all__ = [
    "Cost",
    "LayerCost",
    "PositionCost",
    "count_macs",
    "measure",
    "meta_build",
]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_SHAPE_PRESERVING = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Dropout,
    nn.Identity,
)


def _passthrough(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return x


@dataclass(frozen=True)
class LayerCost:
    """One conv or linear layer of a measured model."""

    name: str
    position: str | None
    type: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    params: int
    macs: int

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass(frozen=True)
class PositionCost:
    params: int
    macs: int

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass(frozen=True)
class Cost:
    """What :func:`measure` found. ``input`` is the clip tensor shape ``(1, C, T, H, W)``."""

    input: tuple[int, ...]
    params: int
    macs: int
    output: tuple[int, ...] = ()
    per_position: dict[str, PositionCost] = field(default_factory=dict)
    fixed: PositionCost = PositionCost(0, 0)
    layers: tuple[LayerCost, ...] = ()

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self, *, per_layer: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "input": list(self.input),
            "params": self.params,
            "macs": self.macs,
            "flops": self.flops,
            "gmacs": self.macs / 1e9,
            "gflops": self.flops / 1e9,
            "convention": "MACs = multiply-adds of conv and linear layers at batch 1; FLOPs = 2 x MACs",
            "per_position": {
                name: {"params": c.params, "macs": c.macs, "flops": c.flops} for name, c in self.per_position.items()
            },
            "fixed": {"params": self.fixed.params, "macs": self.fixed.macs, "flops": self.fixed.flops},
        }
        if per_layer:
            out["layers"] = [
                {
                    **asdict(layer),
                    "flops": layer.flops,
                    "in_shape": list(layer.in_shape),
                    "out_shape": list(layer.out_shape),
                    "kernel": list(layer.kernel),
                    "stride": list(layer.stride),
                }
                for layer in self.layers
            ]
        return out


def layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    """Multiply-adds of one conv or linear layer given its output."""
    if isinstance(module, _CONVS):
        per_output = module.weight.shape[1:].numel()  # in_channels / groups * kernel volume
        return out.numel() * per_output
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return 0


def meta_build(fn: Any, *args: Any, **kwargs: Any) -> nn.Module:
    """Call a module factory with parameters created on the meta device (nothing allocated)."""
    with torch.device("meta"):
        module = fn(*args, **kwargs)
    return module.eval()


def _owner(name: str, prefixes: Sequence[tuple[str, str]]) -> str | None:
    for prefix, position in prefixes:
        if name == prefix or name.startswith(prefix + "."):
            return position
    return None


def _run(module: nn.Module, input_shape: Sequence[int]) -> tuple[list[tuple[str, nn.Module, tuple, tuple, int]], tuple]:
    """Run ``module`` on a meta tensor; return (name, module, in, out, macs) per counted layer."""
    records: list[tuple[str, nn.Module, tuple, tuple, int]] = []
    handles = []
    skipped: list[nn.Module] = []
    for name, m in module.named_modules():
        if isinstance(m, (*_CONVS, nn.Linear)):

            def hook(mod: nn.Module, inputs: Any, output: torch.Tensor, name: str = name) -> None:
                records.append((name, mod, tuple(inputs[0].shape), tuple(output.shape), layer_macs(mod, output)))

            handles.append(m.register_forward_hook(hook))
    # meta modules (see meta_build) propagate shapes only; a real module runs for real
    tensors = itertools.chain(module.parameters(), module.buffers())
    device = next((t.device for t in tensors), torch.device("meta"))
    x = torch.zeros(tuple(input_shape), device=device)
    if device.type == "meta":
        # shape-preserving layers without multiply-adds are the bulk of a meta forward pass
        # (batch norm decomposes into many elementwise meta ops): pass tensors through
        for m in module.modules():
            if isinstance(m, _SHAPE_PRESERVING) and "forward" not in m.__dict__:
                m.forward = _passthrough  # type: ignore[method-assign]
                skipped.append(m)
    try:
        with torch.no_grad():
            y = module(x)
    except RuntimeError as e:
        raise UserError(
            f"input clip {tuple(input_shape)} (N, C, T, H, W) is too small or wrongly shaped for this model: {e}"
        ) from None
    finally:
        for h in handles:
            h.remove()
        for m in skipped:
            del m.forward
    return records, tuple(y.shape) if isinstance(y, torch.Tensor) else ()


def count_macs(module: nn.Module, input_shape: Sequence[int]) -> tuple[int, int, tuple[int, ...]]:
    """``(params, macs, output shape)`` of any module on an input of ``input_shape``."""
    records, out = _run(module, input_shape)
    params = sum(p.numel() for p in module.parameters())
    return params, sum(r[4] for r in records), out


def measure(
    model: nn.Module,
    input_shape: Sequence[int],
    position_modules: Mapping[str, Iterable[str]] | None = None,
) -> Cost:
    """Count params and MACs of ``model`` (ideally built with :func:`meta_build`).

    Args:
        model: the model; any device, meta is fastest.
        input_shape: clip tensor shape, ``(1, C, T, H, W)``.
        position_modules: position name -> module-name prefixes charged to it; the rest is
            reported as ``fixed``.
    """
    prefixes = sorted(((p, pos) for pos, ps in (position_modules or {}).items() for p in ps), key=lambda t: -len(t[0]))
    records, out = _run(model, input_shape)
    per_params: dict[str | None, int] = {}
    per_macs: dict[str | None, int] = {}
    for name, p in model.named_parameters():
        owner = _owner(name.rpartition(".")[0], prefixes)
        per_params[owner] = per_params.get(owner, 0) + p.numel()
    layers = []
    for name, mod, shape_in, shape_out, macs in records:
        owner = _owner(name, prefixes)
        per_macs[owner] = per_macs.get(owner, 0) + macs
        kernel = tuple(getattr(mod, "kernel_size", ()))
        stride = tuple(getattr(mod, "stride", ()))
        n_params = sum(p.numel() for p in mod.parameters(recurse=False))
        layers.append(LayerCost(name, owner, type(mod).__name__, shape_in, shape_out, kernel, stride, n_params, macs))
    per_position = {pos: PositionCost(per_params.get(pos, 0), per_macs.get(pos, 0)) for pos in (position_modules or {})}
    return Cost(
        input=tuple(input_shape),
        params=sum(per_params.values()),
        macs=sum(per_macs.values()),
        output=out,
        per_position=per_position,
        fixed=PositionCost(per_params.get(None, 0), per_macs.get(None, 0)),
        layers=tuple(layers),
    )
