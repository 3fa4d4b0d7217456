"""Exported architectures: ``arch.json``, a model card, and on request TorchScript, ONNX and weights.

``placement-search export`` (:func:`export_study`) writes one folder per trial of a study,
named only from the trial number::

    trial-0007/
      arch.json              everything needed to rebuild the network (below)
      MODEL_CARD.md          what it is: placement, cost, proxy accuracy, how to load it
      costs.csv, curve.csv   per-position cost at the target input; the proxy's learning curve
      weights.safetensors    --weights: the proxy-trained state dict (safetensors, never a pickle)
      model.torchscript.pt   --format torchscript: traced, checked against eager PyTorch
      model.onnx             --format onnx: dynamic batch, checked with onnxruntime

``arch.json`` (its schema, the model card and :func:`~placement_search.architecture.load_architecture`)
belongs to :mod:`placement_search.architecture`, which rebuilds the network with torch alone;
this module reads the study and writes the folders, each trial checked first by :mod:`.export_plan`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._version import __version__
from ..architecture import (
    ARCH_FILE,
    ARCH_FORMAT,
    ARCH_SCHEMA_VERSION,
    CARD_FILE,
    CONVENTION,
    WEIGHTS_FILE,
    check_weights_placement,
    model_card,
    read_safetensors,
)
from ..cost import meta_build
from ..errors import UserError
from ..placement import Placement
from ..space import SearchSpace
from .export_plan import ExportPlan, plan_export
from .formats import TOLERANCE, digest, first_line, onnx_export, require_onnx, torchscript
from .study_source import StudySource, open_source, read_artifact, select_trials

__all__ = ["FORMATS", "ExportedArchitecture", "export_study", "parse_formats"]


TORCHSCRIPT_FILE = "model.torchscript.pt"
ONNX_FILE = "model.onnx"
#: export formats; ``json`` (arch.json and the model card) is always written
FORMATS = ("json", "torchscript", "onnx")
#: clips in the random batch that checks TorchScript and ONNX (2: also checks the batch dimension)
CHECK_BATCH = 2
#: trial artifacts copied into the folder as they are
_COPIED = {
    "costs.csv": "params, MACs and FLOPs per position at the target input (the driver's cost table)",
    "curve.csv": "the proxy run's training loss and held-out accuracy by step",
}


# -- exporting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedArchitecture:
    """One folder written by :func:`export_study`; ``seconds`` is the time per step."""

    trial: int
    folder: Path
    files: tuple[str, ...]
    placement: str
    named: str | None
    accuracy: float | None
    params: int
    macs: int
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["folder"] = str(self.folder)
        d["files"] = list(self.files)
        return d


def _arch_record(info: StudySource, plan: ExportPlan) -> dict[str, Any]:
    from ..study.records import trial_attrs, trial_status

    t, src = plan.trial, plan.source
    ua, sua = trial_attrs(t), trial_attrs(src)
    backbone = info.space.backbone_for(plan.placement)
    names = info.study.metric_names or [f"objective_{i}" for i in range(len(info.study.directions))]
    values = t.values or [None] * len(names)
    return {
        "schema_version": ARCH_SCHEMA_VERSION,
        "format": ARCH_FORMAT,
        "space": {"name": info.space.name, "toml": info.space_toml},
        "backbone": {"name": backbone.name, "args": backbone.args_dict()},
        "placement": plan.placement.to_dict(),
        "placement_string": info.space.placement_string(plan.placement),
        "named": ua.get("named"),
        "num_classes": info.num_classes,
        "input": {"channels": info.space.input_shape()[1], "frames": info.frames, "size": info.size, "layout": "NCTHW"},
        "preprocessing": _preprocessing(info),
        "cost": {
            "params": plan.cost.params,
            "macs": plan.cost.macs,
            "flops": plan.cost.flops,
            "convention": CONVENTION,
        },
        "proxy": {
            "status": trial_status(src),
            "accuracy": sua.get("accuracy"),
            "top5": sua.get("top5"),
            "num_classes": plan.proxy_classes,
            "input": info.proxy_input,
            "budget": sua.get("proxy_budget"),
            "steps_done": sua.get("steps_done"),
            "data": info.config.get("data"),
            "device": sua.get("device"),
            "precision": sua.get("precision"),
            "proxy_macs": sua.get("proxy_macs"),
        },
        "provenance": {
            "study": info.name,
            "trial": t.number,
            "reused_from": src.number if src is not t else None,
            "storage": info.url,
            "objectives": [
                {"name": nm, "direction": d.name.lower(), "value": v}
                for nm, d, v in zip(names, info.study.directions, values)
            ],
            "trial_completed": t.datetime_complete.isoformat(timespec="seconds") if t.datetime_complete else None,
            "study_package_version": info.study.user_attrs.get("placement_search_version"),
            "package_version": __version__,
            "torch_version": torch.__version__,
            "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
        "files": {},
    }


def _preprocessing(info: StudySource) -> dict[str, Any] | None:
    """The study's clip preprocessing at the target input (see ``DataConfig.preprocessing``)."""
    from ..data.config import DataConfig

    data = info.config.get("data")
    if not isinstance(data, dict):
        return None
    known = {f.name for f in dataclasses.fields(DataConfig)}
    try:
        cfg = DataConfig(**{k: v for k, v in data.items() if k in known})
    except TypeError:  # pragma: no cover - a config this release cannot read
        return None
    return cfg.preprocessing(info.frames, info.size)


def _onnx_metadata(arch: dict[str, Any], classes: int, frames: int, size: int) -> dict[str, str]:
    """ONNX ``metadata_props``: the placement, the classifier width and how to make a clip."""
    pre = dict(arch.get("preprocessing") or {})
    if pre:
        pre.update(frames=frames, size=size)
        if "resize_short_side_to" in pre:
            from ..data.video.transforms import default_resize

            pre["resize_short_side_to"] = default_resize(size)
    return {
        "placement_search.placement": str(arch.get("placement_string")),
        "placement_search.num_classes": str(classes),
        "placement_search.input": f"N x {arch['input']['channels']} x {frames} x {size} x {size} (NCTHW)",
        "placement_search.preprocessing": json.dumps(pre),
    }


def _build_for_export(space: SearchSpace, placement: Placement, num_classes: int, state: Any) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = space.build(placement, num_classes=num_classes)
    if state is not None:
        model.load_state_dict(state)
    return model.eval()


@dataclass
class _EagerCheck:
    """The network to trace, the random clips it is checked on and eager PyTorch's output on them."""

    model: nn.Module
    x: torch.Tensor
    ref: torch.Tensor
    classes: int
    frames: int
    size: int


def _write(
    info: StudySource,
    plan: ExportPlan,
    out: Path,
    formats: Sequence[str],
    weights: bool,
    clip: tuple[int, int] | None,
    overwrite: bool,
) -> ExportedArchitecture:
    n = plan.trial.number
    where = f"trial {n}"
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    # written next to its final place, then moved there whole: no half-written folder on failure
    tmp = out / f".{plan.folder.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial"
    tmp.mkdir()
    try:
        arch = _arch_record(info, plan)
        files: dict[str, dict[str, Any]] = arch["files"]
        _copy_artifacts(info, plan, tmp, files)
        state = None
        if weights:
            t = time.perf_counter()
            state = _copy_weights(info, plan, tmp, files, where)
            seconds["weights"] = time.perf_counter() - t
        models = [f for f in formats if f in ("torchscript", "onnx")]
        if models:
            _write_models(info, plan, arch, tmp, models, clip, state, where, seconds)
        _write_card_and_arch(arch, tmp)
        _move_into_place(tmp, plan.folder, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds["total"] = time.perf_counter() - t0
    return ExportedArchitecture(
        trial=n,
        folder=plan.folder,
        files=tuple(sorted([ARCH_FILE, *files])),
        placement=arch["placement_string"],
        named=arch["named"],
        accuracy=arch["proxy"]["accuracy"],
        params=plan.cost.params,
        macs=plan.cost.macs,
        seconds={k: round(v, 3) for k, v in seconds.items()},
    )


def _copy_artifacts(info: StudySource, plan: ExportPlan, tmp: Path, files: dict[str, dict[str, Any]]) -> None:
    """The trial artifacts copied as they are (:data:`_COPIED`), where the trial kept them."""
    for name, description in _COPIED.items():
        if name in plan.artifacts:
            data = read_artifact(info, plan.artifacts[name])
            if data is not None:
                (tmp / name).write_bytes(data)
                files[name] = {"description": description, **digest(data)}


def _copy_weights(
    info: StudySource, plan: ExportPlan, tmp: Path, files: dict[str, dict[str, Any]], where: str
) -> dict[str, torch.Tensor]:
    """Copy the proxy-trained weights, check they fit the placement, and return them."""
    data = read_artifact(info, plan.artifacts[WEIGHTS_FILE])
    if data is None:  # pragma: no cover - checked by plan_export
        raise UserError(f"{where}: {WEIGHTS_FILE} disappeared from {info.artifact_dir}")
    (tmp / WEIGHTS_FILE).write_bytes(data)
    state, metadata = read_safetensors(tmp / WEIGHTS_FILE)
    check_weights_placement(metadata, plan.placement, f"{where}: {WEIGHTS_FILE}")
    if plan.proxy_classes is None:  # pragma: no cover - known from the weights' shapes
        raise UserError(f"{where}: cannot tell the number of classes of {WEIGHTS_FILE}")
    expected = meta_build(
        info.space.backbone_for(plan.placement).build, plan.placement.as_dict(), num_classes=plan.proxy_classes
    ).state_dict()
    bad = sorted(set(expected) ^ set(state)) or [k for k in expected if expected[k].shape != state[k].shape]
    if bad:
        raise UserError(f"{where}: {WEIGHTS_FILE} does not fit the trial's placement (first mismatch: {bad[0]})")
    files[WEIGHTS_FILE] = {
        "description": f"the proxy-trained state dict ({plan.proxy_classes} classes: the proxy data's)",
        "format": "safetensors",
        "num_classes": plan.proxy_classes,
        **digest(data),
    }
    return state


def _eager_check(
    info: StudySource, plan: ExportPlan, clip: tuple[int, int] | None, state: Any, seconds: dict[str, float]
) -> _EagerCheck:
    """The network (with the proxy weights, if copied) and its eager output on random clips."""
    classes = plan.proxy_classes if state is not None and plan.proxy_classes else info.num_classes
    model = _build_for_export(info.space, plan.placement, classes, state)
    frames, size = clip or (info.frames, info.size)
    shape = (CHECK_BATCH, info.space.input_shape()[1], frames, size, size)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    t = time.perf_counter()
    with torch.no_grad():
        try:
            ref = model(x)
        except RuntimeError as e:
            raise UserError(f"--clip {frames}x{size}: too small for this network ({first_line(e)})") from None
    seconds["eager"] = time.perf_counter() - t
    return _EagerCheck(model, x, ref, classes, frames, size)


def _write_models(
    info: StudySource,
    plan: ExportPlan,
    arch: dict[str, Any],
    tmp: Path,
    models: Sequence[str],
    clip: tuple[int, int] | None,
    state: Any,
    where: str,
    seconds: dict[str, float],
) -> None:
    """TorchScript and ONNX (those in ``models``), each checked against eager PyTorch."""
    check = _eager_check(info, plan, clip, state, seconds)
    classes, frames, size = check.classes, check.frames, check.size
    common = {
        "input": [1, check.x.shape[1], frames, size, size],
        "num_classes": classes,
        "weights": WEIGHTS_FILE if state is not None else "random (seed 0)",
        "tolerance": TOLERANCE,
    }
    for fmt, name in (("torchscript", TORCHSCRIPT_FILE), ("onnx", ONNX_FILE)):
        if fmt not in models:
            continue
        t = time.perf_counter()
        checked = (
            onnx_export(check.model, check.x, check.ref, tmp / name, where, _onnx_metadata(arch, classes, frames, size))
            if fmt == "onnx"
            else torchscript(check.model, check.x, check.ref, tmp / name, where)
        )
        what = "TorchScript (torch.jit.trace)" if fmt == "torchscript" else "ONNX (torch.onnx dynamo exporter)"
        arch["files"][name] = {
            "description": f"{what} of the network with {common['weights']} weights, {classes} classes, "
            f"clips of {frames}x{size}x{size}; checked against eager PyTorch",
            "format": fmt,
            **common,
            **checked,
            **digest((tmp / name).read_bytes()),
        }
        seconds[fmt] = time.perf_counter() - t


def _write_card_and_arch(arch: dict[str, Any], tmp: Path) -> None:
    """The model card, then ``arch.json`` (which lists the card with its digest)."""
    files = arch["files"]
    files[CARD_FILE] = {"description": "this architecture's model card"}
    card = model_card(arch).encode("utf-8")
    (tmp / CARD_FILE).write_bytes(card)
    files[CARD_FILE].update(digest(card))
    (tmp / ARCH_FILE).write_text(json.dumps(arch, indent=2) + "\n", encoding="utf-8")


def _move_into_place(tmp: Path, folder: Path, overwrite: bool) -> None:
    if folder.exists() or folder.is_symlink():
        if not overwrite or folder.is_symlink():  # pragma: no cover - checked by plan_export
            raise UserError(f"{folder} exists; pass --overwrite to replace it")
        if folder.is_dir():
            shutil.rmtree(folder)
        else:
            folder.unlink()
    tmp.rename(folder)


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """Formats from ``"json,onnx"`` or a sequence, in :data:`FORMATS` order, ``json`` always included."""
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    wanted = {f.strip().lower() for f in items if f.strip()}
    unknown = sorted(wanted - set(FORMATS))
    if unknown:
        raise UserError(f"--format: unknown format {unknown[0]!r}; formats are {', '.join(FORMATS)} (comma-separated)")
    return tuple(f for f in FORMATS if f in wanted or f == "json")


def export_study(
    storage: str,
    study: str,
    out_dir: str | Path,
    *,
    trials: Sequence[int] | None = None,
    pareto: bool = False,
    formats: str | Sequence[str] = ("json",),
    weights: bool = False,
    clip: tuple[int, int] | None = None,
    overwrite: bool = False,
    on_exported: Callable[[ExportedArchitecture], None] | None = None,
    any_status: bool = False,
) -> list[ExportedArchitecture]:
    """Export trials of a study, one folder each (``trial-0007``) under ``out_dir``.

    Every trial is checked (it exists and has finished, its compute agrees with the space the
    study stored, its weights are there if asked for, its folder is free) before anything is written;
    each folder is written to a temporary folder first and moved into place when complete.

    Args:
        storage: the study's storage URL.
        study: the study name.
        out_dir: the output folder (created if missing).
        trials: trial numbers to export.
        pareto: export the Pareto-optimal trials instead (each architecture once, as ``pareto``).
        formats: ``json`` (always), ``torchscript``, ``onnx``; a list or ``"json,onnx"``.
        weights: copy the trial's proxy-trained weights; TorchScript and ONNX then carry them
            (with the proxy data's classes), else they are randomly initialised (seed 0) with
            the study's target classes.
        clip: ``(frames, size)`` at which TorchScript and ONNX are traced and checked (default:
            the study's target input). ``arch.json``'s cost is always at the target input.
        overwrite: replace existing, non-empty trial folders.
        on_exported: called with each folder as soon as it is written.
        any_status: also export trials without a result (failed, interrupted, infeasible...);
            by default asking for one is an error.
    """
    fmts = parse_formats(formats)
    _check_packages_and_clip(fmts, clip)
    info = open_source(storage, study)
    selected = select_trials(info, trials, pareto)
    out = _output_folder(out_dir)
    if weights:
        _check_weights_kept(info)
    _check_writable(out)
    plans = [plan_export(info, t, out, weights, overwrite, any_status) for t in selected]
    if any(f in fmts for f in ("torchscript", "onnx")):
        _check_trace_memory(info, plans, weights, clip)
    results = []
    for plan in plans:
        try:
            result = _write(info, plan, out, fmts, weights, clip, overwrite)
        except OSError as e:
            raise UserError(f"-o {out}: cannot write trial {plan.trial.number}'s folder: {e.strerror or e}") from None
        results.append(result)
        if on_exported is not None:
            on_exported(result)
    return results


def _check_packages_and_clip(fmts: Sequence[str], clip: tuple[int, int] | None) -> None:
    """ONNX's packages are installed when asked for; ``clip`` is two positive sizes."""
    if "onnx" in fmts:
        require_onnx()
    if clip is not None and (len(clip) != 2 or min(clip) < 1):
        raise UserError(f"--clip: expected positive FRAMES and SIZE, got {clip!r}")


def _output_folder(out_dir: str | Path) -> Path:
    """``-o``, created if missing, as an absolute path."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"-o {out}: cannot create the folder: {e}") from None
    return out.resolve()


def _check_weights_kept(info: StudySource) -> None:
    """``--weights`` needs the study's artifact folder."""
    if info.artifact_store is None:
        why = (
            f"its artifact folder {info.artifact_dir} (study attribute artifact_dir) does not exist; was it moved?"
            if info.artifact_dir
            else "it kept no artifacts ([artifacts] enabled = false)"
        )
        raise UserError(f"--weights: study {info.name!r} has no stored weights: {why}")


def _check_writable(out: Path) -> None:
    """A folder we cannot write to (read-only, /proc, a full disk) is found before any work."""
    try:
        import tempfile

        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise UserError(f"-o {out}: cannot write files there: {e.strerror or e}") from None


def _check_trace_memory(
    info: StudySource, plans: Sequence[ExportPlan], weights: bool, clip: tuple[int, int] | None
) -> None:
    """Enough memory to trace each network at the clip size."""
    from ..limits import check_memory, model_memory

    frames, size = clip or (info.frames, info.size)
    for plan in plans:
        classes = plan.proxy_classes if weights and plan.proxy_classes else info.num_classes
        cost = info.space.cost(plan.placement, frames=frames, size=size, num_classes=classes)
        # tracing and the eager reference hold the activations of a CHECK_BATCH batch about twice
        need = 2 * model_memory(cost, batch=CHECK_BATCH)
        check_memory(need, f"tracing trial {plan.trial.number} at {frames}x{size}x{size}", "--clip")
