"""Exported architectures as data: the ``arch.json`` schema, its model card, and rebuilding the network.

This module knows nothing of studies, Optuna or Ray: an exported folder is read and rebuilt
with only torch, the space file's text inside ``arch.json``, and (on request) the weights in
``weights.safetensors``. Writing those folders from a study is :mod:`placement_search.inspect.export`.

``placement-search export`` (:func:`placement_search.inspect.export.export_study`) writes one folder per trial of a study,
named only from the trial number::

    trial-0007/
      arch.json              everything needed to rebuild the network (below)
      MODEL_CARD.md          what it is: placement, cost, proxy accuracy, how to load it
      costs.csv, curve.csv   per-position cost at the target input; the proxy's learning curve
      weights.safetensors    --weights: the proxy-trained state dict (safetensors, never a pickle)
      model.torchscript.pt   --format torchscript: traced, checked against eager PyTorch
      model.onnx             --format onnx: dynamic batch, checked with onnxruntime

``arch.json`` (schema version 1) is self-contained: it carries the text of the space file,
so the network rebuilds without the study, its storage or the space file::

    {"schema_version": 1, "format": "placement-search architecture",
     "space": {"name": "tiny", "toml": "<the space file>"},
     "backbone": {"name": "tiny", "args": {...}},
     "placement": {<placement JSON>}, "placement_string": "2d 3d sep 2d 2d", "named": null,
     "num_classes": 400,                                   # the study's target classes
     "input": {"channels": 3, "frames": 16, "size": 112, "layout": "NCTHW"},   # the target input
     "preprocessing": {"frames", "size", "layout", "mean", "std", "values", ...},  # how to make a clip
     "cost": {"params", "macs", "flops", "convention"},    # at the target input
     "proxy": {"status", "accuracy", "top5", "num_classes", "input", "budget", "steps_done", "data", ...},
     "provenance": {"study", "trial", "reused_from", "storage", "package_version", "exported_at", ...},
     "files": {"model.onnx": {"format": "onnx", "input": [...], "num_classes", "weights", ...}, ...}}

:func:`load_architecture` rebuilds the ``nn.Module`` from it (:func:`read_architecture`
validates it); weights load only from ``weights.safetensors``.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._version import __version__
from .cost import Cost, meta_build
from .errors import UserError
from .placement import Placement
from .space import SearchSpace, space_from_dict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ARCH_FILE",
    "ARCH_FORMAT",
    "ARCH_SCHEMA_VERSION",
    "CARD_FILE",
    "CONVENTION",
    "WEIGHTS_FILE",
    "Architecture",
    "classifier_keys",
    "load_architecture",
    "model_card",
    "parse_architecture",
    "read_architecture",
    "read_safetensors",
]

ARCH_SCHEMA_VERSION = 1
ARCH_FORMAT = "placement-search architecture"
ARCH_FILE = "arch.json"
CARD_FILE = "MODEL_CARD.md"
WEIGHTS_FILE = "weights.safetensors"
CONVENTION = "MACs = multiply-adds of conv and linear layers at batch 1; FLOPs = 2 x MACs"


# -- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Architecture:
    """A validated ``arch.json`` (see :func:`read_architecture`).

    Attributes:
        path: the ``arch.json`` file.
        data: the whole document.
        space: the search space rebuilt from the document's space file text.
        placement: the placement, checked against the space.
    """

    path: Path
    data: dict[str, Any]
    space: SearchSpace
    placement: Placement

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def num_classes(self) -> int:
        """Classifier width the architecture was exported for (the study's target classes)."""
        return int(self.data["num_classes"])

    @property
    def input_shape(self) -> tuple[int, int, int, int, int]:
        """The target clip, ``(1, C, T, H, W)``."""
        i = self.data["input"]
        return (1, int(i["channels"]), int(i["frames"]), int(i["size"]), int(i["size"]))

    def build(self, num_classes: int | None = None) -> nn.Module:
        """The ``nn.Module``, randomly initialised."""
        return self.space.build(self.placement, num_classes=self.num_classes if num_classes is None else num_classes)

    def cost(self, num_classes: int | None = None) -> Cost:
        """Params, MACs and FLOPs at the target input, counted on the rebuilt model."""
        _, _, frames, size, _ = self.input_shape
        n = self.num_classes if num_classes is None else num_classes
        return self.space.cost(self.placement, frames=frames, size=size, num_classes=n)


def _field(table: Mapping[str, Any], key: str, kind: type, f: str, prefix: str = "") -> Any:
    """``table[key]``, required, of type ``kind`` (int excludes bool); errors name the file and field."""
    names = {dict: "an object", str: "a string", int: "an integer", list: "a list"}
    if key not in table:
        raise UserError(f"{f}: missing field {prefix + key!r} (expected {names.get(kind, kind.__name__)})")
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UserError(f"{f}: {prefix + key}: expected {names.get(kind, kind.__name__)}, got {value!r}")
    return value


def _positive_field(table: Mapping[str, Any], key: str, f: str, prefix: str = "") -> int:
    value = _field(table, key, int, f, prefix)
    if value < 1:
        raise UserError(f"{f}: {prefix + key}: expected a positive integer, got {value!r}")
    return int(value)


def read_architecture(path: str | Path) -> Architecture:
    """Read and validate an exported ``arch.json``.

    Args:
        path: the exported folder, or its ``arch.json``.

    Raises:
        UserError: naming the file and what is wrong: not JSON, an unknown schema version, a
            missing field, a space file that does not load, a placement that does not fit its space.
    """
    p = Path(path)
    file = p / ARCH_FILE if p.is_dir() else p
    if not file.is_file():
        if p.is_dir():
            raise UserError(
                f"{p}: no {ARCH_FILE} in this folder (expected a folder written by placement-search export)"
            )
        raise UserError(f"{p}: no such file or folder (expected an exported architecture folder or its {ARCH_FILE})")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{file}: cannot read the file: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{file}: not valid JSON ({e}); export the architecture again") from None
    return parse_architecture(data, file)


def parse_architecture(data: Any, file: str | Path = ARCH_FILE) -> Architecture:
    """Validate a parsed ``arch.json`` document (``file`` names it in errors)."""
    f = str(file)
    if not isinstance(data, dict):
        raise UserError(f"{f}: expected a JSON object, got {type(data).__name__}")
    if "schema_version" not in data:
        raise UserError(
            f"{f}: missing field 'schema_version' (expected {ARCH_SCHEMA_VERSION}); "
            "is this an arch.json written by placement-search export?"
        )
    version = data["schema_version"]
    if type(version) is not int or version != ARCH_SCHEMA_VERSION:
        newer = type(version) is int and version > ARCH_SCHEMA_VERSION
        raise UserError(
            f"{f}: schema_version: expected {ARCH_SCHEMA_VERSION}, got {version!r}"
            + (
                f" (written by a newer placement-search than {__version__}: upgrade it to load this file)"
                if newer
                else " (not an arch.json this version of placement-search can read)"
            )
        )
    fmt = _field(data, "format", str, f)
    if fmt != ARCH_FORMAT:
        raise UserError(f"{f}: format: expected {ARCH_FORMAT!r}, got {fmt!r}")

    space_table = _field(data, "space", dict, f)
    space_name = _field(space_table, "name", str, f, "space.")
    toml_text = _field(space_table, "toml", str, f, "space.")
    try:
        space_data = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{f}: space.toml: not valid TOML: {e}") from None
    try:
        space = space_from_dict(space_data, None)
    except UserError as e:
        raise UserError(f"{f}: space.toml: {str(e).removeprefix('<space>: ')}") from None
    if space.name != space_name:
        raise UserError(f"{f}: space.name is {space_name!r} but space.toml defines space {space.name!r}")

    backbone_table = _field(data, "backbone", dict, f)
    backbone_name = _field(backbone_table, "name", str, f, "backbone.")
    backbone_args = _field(backbone_table, "args", dict, f, "backbone.")
    placement = Placement.from_dict(_field(data, "placement", dict, f), f"{f}: placement")
    placement = space.validate(placement, f"{f}: placement")
    backbone = space.backbone_for(placement, f"{f}: placement")
    expected_args = json.loads(json.dumps(backbone.args_dict()))
    if backbone_name != backbone.name or backbone_args != expected_args:
        raise UserError(
            f"{f}: backbone: {backbone_name!r} with args {backbone_args} does not match the backbone of space.toml "
            f"and the placement ({backbone.name!r} with args {expected_args})"
        )

    _positive_field(data, "num_classes", f)
    inp = _field(data, "input", dict, f)
    channels = _positive_field(inp, "channels", f, "input.")
    for key in ("frames", "size"):
        _positive_field(inp, key, f, "input.")
    expected_channels = space.input_shape()[1]
    if channels != expected_channels:
        raise UserError(f"{f}: input.channels: the backbone takes {expected_channels}-channel clips, got {channels}")
    return Architecture(Path(file), data, space, placement)


# -- loading --------------------------------------------------------------------------------------


def classifier_keys(space: SearchSpace, placement: Placement) -> set[str]:
    """State-dict keys whose shape depends on the number of classes (the classifier's)."""
    build = space.backbone_for(placement).build
    one = meta_build(build, placement.as_dict(), num_classes=1).state_dict()
    two = meta_build(build, placement.as_dict(), num_classes=2).state_dict()
    return {k for k in one if one[k].shape != two[k].shape}


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
        return load_file(str(path), device="cpu"), metadata
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable safetensors file: {e}") from None


def check_weights_placement(metadata: Mapping[str, str], placement: Placement, where: str) -> None:
    text = metadata.get("placement")
    if text is None:
        return
    try:
        theirs = Placement.from_json(text, f"{where}: metadata placement")
    except UserError:
        raise UserError(f"{where}: its metadata holds no valid placement") from None
    if theirs.to_dict() != placement.to_dict():
        raise UserError(
            f"{where}: these weights were trained for another placement ({theirs.to_json()}), not {placement.to_json()}"
        )


def _load_weights(model: nn.Module, arch: Architecture, num_classes: int) -> None:
    file = arch.folder / WEIGHTS_FILE
    if not file.is_file():
        raise UserError(
            f"{arch.folder}: no {WEIGHTS_FILE} (export with --weights to include the proxy-trained weights, "
            "or load with weights=False)"
        )
    state, metadata = read_safetensors(file)
    check_weights_placement(metadata, arch.placement, str(file))
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}" + (" ..." if len(missing) > 4 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}" + (" ..." if len(unexpected) > 4 else ""))
        raise UserError(f"{file}: does not fit the model of {arch.path.name}: {'; '.join(parts)}")
    mismatched = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    head = classifier_keys(arch.space, arch.placement)
    wrong = [k for k in mismatched if k not in head]
    if wrong:
        k = wrong[0]
        raise UserError(
            f"{file}: {k} has shape {tuple(state[k].shape)}, the model of {arch.path.name} expects {tuple(own[k].shape)}"
        )
    if mismatched:
        trained = int(state[mismatched[0]].shape[0])
        warnings.warn(
            f"{file}: the weights' classifier has {trained} classes (the proxy data's), not {num_classes}: "
            f"{', '.join(mismatched)} left freshly initialised (pass num_classes={trained} to load it too)",
            UserWarning,
            stacklevel=3,
        )
        for k in mismatched:
            del state[k]
    model.load_state_dict(state, strict=False)


def load_architecture(
    path: str | Path, num_classes: int | None = None, *, weights: bool = False, device: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild an exported architecture from its ``arch.json`` alone.

    Args:
        path: the exported folder (``trial-0007``) or its ``arch.json``.
        num_classes: classifier width (default: ``arch.json``'s ``num_classes``, the study's
            target classes).
        weights: load ``weights.safetensors`` from the folder (the proxy-trained weights,
            written by ``export --weights``). Their classifier has the proxy data's classes:
            with another ``num_classes`` everything else loads and the classifier stays freshly
            initialised, with a warning (as timm does for pretrained weights).
        device: where to put the model.

    Returns:
        The model, in eval mode (call ``.train()`` to fine-tune it).

    Raises:
        UserError: a bad ``arch.json`` (see :func:`read_architecture`), missing or mismatched weights.
    """
    arch = read_architecture(path)
    if num_classes is not None and (
        not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1
    ):
        raise UserError(f"num_classes: expected a positive integer, got {num_classes!r}")
    n = arch.num_classes if num_classes is None else num_classes
    from .limits import check_memory, model_memory

    check_memory(model_memory(arch.cost(n)), "the network", f"{Path(path)}: {ARCH_FILE}")
    model = arch.build(n)
    cost = arch.data.get("cost")
    if n == arch.num_classes and isinstance(cost, dict) and isinstance(cost.get("params"), int):
        params = sum(p.numel() for p in model.parameters())
        if params != cost["params"]:
            raise UserError(
                f"{arch.path}: the rebuilt model has {params:,} parameters but cost.params records {cost['params']:,} "
                f"(written by another placement-search than {__version__}? if you edited the placement, "
                "remove the 'cost' field)"
            )
    if weights:
        _load_weights(model, arch, n)
    try:
        model = model.to(device)
    except (RuntimeError, ValueError, TypeError) as e:
        raise UserError(f"device {str(device)!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return model.eval()


# -- the model card --------------------------------------------------------------------------------


def _g(n: float) -> str:
    return f"{n / 1e9:,.3f} G"


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, (int, float)) else "-"


def model_card(arch: Mapping[str, Any]) -> str:
    """``MODEL_CARD.md`` for an ``arch.json`` document (rendered from the document alone)."""
    prov = arch.get("provenance", {})
    proxy = arch.get("proxy", {})
    cost = arch.get("cost", {})
    inp = arch["input"]
    files = arch.get("files", {})
    study, trial = prov.get("study"), prov.get("trial")
    named = f" (`{arch['named']}`)" if arch.get("named") else ""
    clip = f"{inp['frames']} frames of {inp['size']}x{inp['size']} px, {inp['channels']} channels"
    lines = [
        f"# {study} / trial {trial}: `{arch.get('placement_string', '')}`{named}",
        "",
        f"A video classification network found by the placement search of study `{study}` "
        f"(space `{arch['space']['name']}`, backbone `{arch['backbone']['name']}`): each searchable "
        "position of the backbone is a 2D, 3D, separable (S3D-style) or R(2+1)D convolution, as listed below. "
        f"Exported for {arch['num_classes']} classes and clips of {clip} (N, C, T, H, W).",
        "",
        "## Placement",
        "",
        "| position | op | temporal kernel |",
        "|---|---|---|",
    ]
    for pos, choice in arch["placement"]["positions"].items():
        lines.append(f"| `{pos}` | {choice['op']} | {choice.get('kt', 1) if choice['op'] != '2d' else '-'} |")
    if arch["placement"].get("backbone"):
        lines += ["", f"Backbone overrides: `{json.dumps(arch['placement']['backbone'])}`."]
    lines += [
        "",
        f"## Compute at the target input ({clip}, {arch['num_classes']} classes, batch 1)",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {cost.get('params', 0) / 1e6:,.3f} M ({cost.get('params', 0):,}) |",
        f"| MACs (multiply-adds) | {_g(cost.get('macs', 0))} ({cost.get('macs', 0):,}) |",
        f"| FLOPs | {_g(cost.get('flops', 0))} ({cost.get('flops', 0):,}) |",
        "",
        f"{cost.get('convention', CONVENTION)}.",
        "",
        "## Proxy accuracy",
        "",
    ]
    budget = proxy.get("budget") or {}
    data = proxy.get("data") or {}
    pin = proxy.get("input") or {}
    if proxy.get("accuracy") is not None:
        top5 = f", top-5 {_pct(proxy['top5'])}" if proxy.get("top5") is not None else ""
        classes = f", {proxy['num_classes']} classes" if proxy.get("num_classes") else ""
        size = f"{pin.get('frames')} frames of {pin.get('size')}x{pin.get('size')} px" if pin else "the proxy clip"
        lines.append(
            f"Held-out top-1 **{_pct(proxy['accuracy'])}**{top5} (status `{proxy.get('status')}`) on data "
            f"`{data.get('source', '?')}` ({size}{classes}), after a proxy run of {proxy.get('steps_done', '?')} of "
            f"{budget.get('steps', '?')} steps of {budget.get('batch_size', '?')} clips "
            f"({budget.get('optimizer', '?')}, lr {budget.get('lr', '?')})."
        )
    else:
        lines.append(f"Not measured (trial status `{proxy.get('status')}`).")
    lines += [
        "",
        "Proxy accuracy ranks placements against each other within this study; it is not the accuracy "
        "this network reaches when trained in full.",
        "",
        "## Files",
        "",
        f"- `{ARCH_FILE}`: the space file, backbone arguments and placement; rebuilds the network.",
        f"- `{CARD_FILE}`: this card.",
    ]
    for name, info in files.items():
        if name == CARD_FILE:
            continue
        what = info.get("description", "")
        lines.append(f"- `{name}`: {what}")
    lines += [
        "",
        "## Load",
        "",
        "```python",
        "from placement_search import load_architecture",
        "",
        f'model = load_architecture("path/to/trial-{trial:04d}")  # {arch["num_classes"]} classes, random init'
        if isinstance(trial, int)
        else 'model = load_architecture("path/to/folder")',
    ]
    if WEIGHTS_FILE in files:
        n = files[WEIGHTS_FILE].get("num_classes")
        lines.append(
            f'model = load_architecture("path/to/trial-{trial:04d}", num_classes={n}, weights=True)  # the proxy weights'
        )
    lines += ["```", "", "## Provenance", ""]
    lines.append(
        f"- study `{study}`, trial {trial}"
        + (f" (reuses trial {prov['reused_from']})" if prov.get("reused_from") is not None else "")
    )
    for key, label in (
        ("storage", "storage"),
        ("objectives", "objectives"),
        ("study_package_version", "searched with placement-search"),
        ("package_version", "exported with placement-search"),
        ("torch_version", "torch"),
        ("exported_at", "exported at"),
    ):
        value = prov.get(key)
        if key == "objectives" and isinstance(value, list):
            value = ", ".join(f"{o.get('name')} ({o.get('direction')}) = {o.get('value')}" for o in value)
        if value is not None:
            lines.append(f"- {label}: {value}")
    return "\n".join(lines) + "\n"
