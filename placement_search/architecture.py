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
validates it, in :mod:`placement_search.arch_json` with the schema's constants; all re-exported
here); weights load only from ``weights.safetensors``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._version import __version__
from .arch_json import (
    ARCH_FILE,
    ARCH_FORMAT,
    ARCH_SCHEMA_VERSION,
    CARD_FILE,
    CONVENTION,
    WEIGHTS_FILE,
    Architecture,
    parse_architecture,
    read_architecture,
)
from .cost import meta_build
from .errors import UserError
from .placement import Placement
from .space import SearchSpace

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
    files = arch.get("files", {})
    inp = arch["input"]
    clip = f"{inp['frames']} frames of {inp['size']}x{inp['size']} px, {inp['channels']} channels"
    lines = [
        *_card_intro(arch, prov, clip),
        *_card_compute(arch.get("cost", {}), clip, arch["num_classes"]),
        *_card_proxy(arch.get("proxy", {})),
        *_card_files(files),
        *_card_load(arch, prov.get("trial"), files),
        *_card_provenance(prov),
    ]
    return "\n".join(lines) + "\n"


def _card_intro(arch: Mapping[str, Any], prov: Mapping[str, Any], clip: str) -> list[str]:
    """The title, what the network is, and its placement position by position."""
    study, trial = prov.get("study"), prov.get("trial")
    named = f" (`{arch['named']}`)" if arch.get("named") else ""
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
    return lines


def _card_compute(cost: Mapping[str, Any], clip: str, num_classes: Any) -> list[str]:
    return [
        "",
        f"## Compute at the target input ({clip}, {num_classes} classes, batch 1)",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {cost.get('params', 0) / 1e6:,.3f} M ({cost.get('params', 0):,}) |",
        f"| MACs (multiply-adds) | {_g(cost.get('macs', 0))} ({cost.get('macs', 0):,}) |",
        f"| FLOPs | {_g(cost.get('flops', 0))} ({cost.get('flops', 0):,}) |",
        "",
        f"{cost.get('convention', CONVENTION)}.",
    ]


def _card_proxy(proxy: Mapping[str, Any]) -> list[str]:
    """The proxy run's accuracy, and what it is not."""
    lines = ["", "## Proxy accuracy", ""]
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
    return [
        *lines,
        "",
        "Proxy accuracy ranks placements against each other within this study; it is not the accuracy "
        "this network reaches when trained in full.",
    ]


def _card_files(files: Mapping[str, Any]) -> list[str]:
    lines = [
        "",
        "## Files",
        "",
        f"- `{ARCH_FILE}`: the space file, backbone arguments and placement; rebuilds the network.",
        f"- `{CARD_FILE}`: this card.",
    ]
    return lines + [f"- `{name}`: {info.get('description', '')}" for name, info in files.items() if name != CARD_FILE]


def _card_load(arch: Mapping[str, Any], trial: Any, files: Mapping[str, Any]) -> list[str]:
    """How to rebuild the network (and load its proxy weights, when the folder has them)."""
    lines = [
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
    return [*lines, "```"]


def _card_provenance(prov: Mapping[str, Any]) -> list[str]:
    lines = [
        "",
        "## Provenance",
        "",
        f"- study `{prov.get('study')}`, trial {prov.get('trial')}"
        + (f" (reuses trial {prov['reused_from']})" if prov.get("reused_from") is not None else ""),
    ]
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
    return lines
