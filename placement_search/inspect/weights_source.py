"""The trained weights an analysis reads (:func:`load_weights`): a state dict from a file and,
where it can be found, the network order of its names (from the architecture, the file's
order, or the natural sort of the names). Used by :mod:`.temporal`."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from ..errors import UserError

__all__ = ["LoadedWeights", "OrderSource", "is_conv_weight", "load_weights"]

OrderSource = Literal["model", "file", "names"]

_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")


@dataclass(frozen=True)
class LoadedWeights:
    """A state dict read from a file, with the network order of its names when it can be found."""

    source: Path
    state_dict: dict[str, torch.Tensor]
    order: list[str] | None
    order_source: OrderSource
    notes: list[str] = field(default_factory=list)


def is_conv_weight(value: Any) -> bool:
    """A 5-D floating-point tensor: a video conv weight ``[out, in, kt, kh, kw]``."""
    return isinstance(value, torch.Tensor) and value.dim() == 5 and value.is_floating_point()


_EXPECTED = "a .safetensors or .pt/.pth state dict, or an export folder with arch.json and weights.safetensors"


def load_weights(path: str | Path) -> LoadedWeights:
    """Read a state dict and, where possible, the network order of its names.

    Args:
        path: one of

            * an export folder with ``weights.safetensors`` and (optionally) ``arch.json``;
            * a ``.safetensors`` file (a ``weights.safetensors`` next to an ``arch.json`` uses it);
            * a ``.pt`` / ``.pth`` file, read with ``torch.load(weights_only=True)`` (nothing
              else is unpickled): a state dict, or a checkpoint dict holding one under
              ``state_dict``, ``model_state_dict``, ``model``, ``module``, ``net`` or ``weights``.

    The architecture (an ``arch.json``, or the placement a search trial stores in its
    weights' metadata, for a shipped space) is only used for the order of the layers; when
    it is missing or does not match the weights, the names give the order and a note says why.
    """
    p = Path(path)
    if p.is_dir():
        weights = p / "weights.safetensors"
        if not weights.is_file():
            raise UserError(f"{p}: an export folder must hold weights.safetensors (expected {_EXPECTED})")
        return _load_safetensors(weights, p / "arch.json")
    if not p.exists():
        raise UserError(f"{p}: no such file or folder (expected {_EXPECTED})")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        arch = p.with_name("arch.json") if p.name == "weights.safetensors" else None
        return _load_safetensors(p, arch)
    if suffix in (".pt", ".pth"):
        return _load_torch(p)
    raise UserError(f"{p}: unknown kind of file {suffix or '(no extension)'!r}; expected {_EXPECTED}")


def _load_safetensors(path: Path, arch: Path | None) -> LoadedWeights:
    try:
        from safetensors import safe_open
        from safetensors.torch import load_file
    except ImportError:  # pragma: no cover
        raise UserError(
            f"{path}: reading .safetensors needs the safetensors package (pip install safetensors)"
        ) from None
    try:
        state = load_file(str(path), device="cpu")
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as e:
        raise UserError(f"{path}: not a readable safetensors file ({e})") from None
    notes: list[str] = []
    if arch is not None and arch.is_file():
        order = _order_from_arch(arch, state, notes)
    else:
        order = _order_from_metadata(path, metadata, state, notes)
    if order is not None:
        return LoadedWeights(path, state, order, "model", notes)
    return LoadedWeights(path, state, None, "names", notes)


def _load_torch(path: Path) -> LoadedWeights:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(
            f"{path}: not a plain PyTorch state dict ({first[:200]}); only tensors and plain containers are "
            "loaded (torch.load weights_only=True), never pickled objects: save a state_dict or safetensors"
        ) from None
    notes: list[str] = []
    state = _find_state_dict(obj, path, notes)
    names = [n for n, v in state.items() if is_conv_weight(v)]
    if names == sorted(names):  # saved sorted (or a single conv): the order says nothing
        return LoadedWeights(path, state, None, "names", notes)
    return LoadedWeights(path, state, list(state), "file", notes)


def _tensors(obj: Any) -> dict[str, torch.Tensor] | None:
    if not isinstance(obj, Mapping):
        return None
    found = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    return found or None


def _find_state_dict(obj: Any, path: Path, notes: list[str]) -> dict[str, torch.Tensor]:
    state = _tensors(obj)
    if state is not None:
        return state
    if isinstance(obj, Mapping):
        for key in _CHECKPOINT_KEYS:
            state = _tensors(obj.get(key))
            if state is not None:
                notes.append(f"read the {key!r} entry of the checkpoint")
                return state
        keys = ", ".join(repr(k) for k in list(obj)[:12])
        raise UserError(
            f"{path}: no tensors at the top level or under {', '.join(map(repr, _CHECKPOINT_KEYS))}; "
            f"expected a state dict (name -> tensor), found keys {keys}"
        )
    raise UserError(f"{path}: expected a state dict (name -> tensor), found a {type(obj).__name__}")


# -- network order from the architecture --------------------------------------------------


def _order_from_arch(arch: Path, state: Mapping[str, torch.Tensor], notes: list[str]) -> list[str] | None:
    """Model order from an export's ``arch.json``; ``None`` (and a note) when it cannot be used."""
    try:
        data = json.loads(arch.read_text(encoding="utf-8"))
        space_info = data["space"]
        from ..placement import Placement
        from ..space import space_from_text

        space = space_from_text(space_info["toml"], where=f"{arch}: space.toml")
        placement = Placement.from_dict(data["placement"], f"{arch}: placement")
        num_classes = data.get("num_classes", 400)
        order = _model_order(space, placement, num_classes if isinstance(num_classes, int) else 400, state)
    except Exception as e:
        notes.append(f"{arch} could not be used to build the model ({type(e).__name__}: {e}); layers ordered by name")
        return None
    if order is None:
        notes.append(f"{arch} describes a model whose conv weights do not match the weights; layers ordered by name")
    return order


def _order_from_metadata(
    path: Path, metadata: Mapping[str, str], state: Mapping[str, torch.Tensor], notes: list[str]
) -> list[str] | None:
    """Model order from the placement that search trials store in their weights' metadata
    (only for a shipped space: names from a file never become paths)."""
    text = metadata.get("placement")
    if text is None:
        return None
    try:
        from ..placement import Placement
        from ..space import list_spaces, load_space

        placement = Placement.from_json(text, f"{path}: metadata placement")
        if placement.space not in list_spaces():
            notes.append(f"the placement in {path}'s metadata names space {placement.space!r}, which is not shipped")
            return None
        order = _model_order(load_space(placement.space), placement, 400, state)
    except Exception as e:
        notes.append(f"the placement in {path}'s metadata could not be used ({type(e).__name__}: {e})")
        return None
    if order is None:
        notes.append(f"the placement in {path}'s metadata does not match the weights; layers ordered by name")
    return order


def _model_order(space: Any, placement: Any, num_classes: int, state: Mapping[str, torch.Tensor]) -> list[str] | None:
    """Names of ``state`` in the order of the model built on the meta device (nothing
    allocated), or ``None`` unless every conv weight of ``state`` is in it with its shape.
    A prefix on the saved names (``module.`` of DistributedDataParallel) is allowed."""
    from ..cost import meta_build

    model = meta_build(space.build, placement, num_classes=num_classes)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    rank = {k: i for i, k in enumerate(shapes)}
    found: dict[str, int] = {}
    for name, value in state.items():
        parts = name.split(".")
        key = next((k for k in (".".join(parts[i:]) for i in range(len(parts))) if k in rank), None)
        if key is not None:
            if is_conv_weight(value) and shapes[key] != tuple(value.shape):
                return None
            found[name] = rank[key]
        elif is_conv_weight(value):
            return None
    return sorted(found, key=found.__getitem__)
