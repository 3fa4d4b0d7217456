"""Checking a trial before :func:`~placement_search.inspect.export.export_study` writes anything:
it has finished with a result, its cost agrees with the space the study stored, its weights are
there if asked for, and its folder is free. The outcome is an :class:`ExportPlan`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..architecture import WEIGHTS_FILE
from ..cost import Cost
from ..errors import UserError
from ..placement import Placement
from .study_source import StudySource, artifacts_of, proxy_classes, weights_header

__all__ = ["ExportPlan", "plan_export"]


@dataclass
class ExportPlan:
    """One trial to export, checked."""

    trial: Any  # the FrozenTrial asked for
    source: Any  # the FrozenTrial that was trained (itself unless it reused another)
    placement: Placement
    cost: Cost
    artifacts: dict[str, str]  # filename -> artifact id, of the source trial
    folder: Path
    proxy_classes: int | None


def plan_export(
    info: StudySource, trial: Any, out: Path, weights: bool, overwrite: bool, any_status: bool = False
) -> ExportPlan:
    """Check that ``trial`` can be exported into ``out`` (see the module); raise a
    :class:`UserError` naming it otherwise."""
    n = trial.number
    where = f"--trial {n}"
    ua = _finished_attrs(trial, where, any_status)
    source = _trained_trial(info, trial, ua, where)
    placement, cost = _placement_and_cost(info, n, ua, where)
    artifacts = artifacts_of(info, source)
    header = weights_header(info, artifacts[WEIGHTS_FILE]) if WEIGHTS_FILE in artifacts else None
    shapes = header[0] if header else {}
    if weights and header is None:
        raise _no_weights(info, trial, source, artifacts)
    folder = _free_folder(out, n, overwrite)
    return ExportPlan(
        trial, source, placement, cost, artifacts, folder, proxy_classes(info, info.space, placement, shapes)
    )


def _finished_attrs(trial: Any, where: str, any_status: bool) -> dict[str, Any]:
    """The attributes of a finished trial that recorded a placement and (unless ``any_status``) a result."""
    from optuna.trial import TrialState

    from ..study.records import trial_attrs, trial_status

    n = trial.number
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        raise UserError(f"{where}: trial {n} is {trial.state.name.lower()}; export it once it has finished")
    ua = trial_attrs(trial)
    if not isinstance(ua.get("placement"), dict):
        raise UserError(f"{where}: trial {n} recorded no placement (status {trial_status(trial)})")
    status = trial_status(trial)
    if status not in ("ok", "early_stopped", "reused") and not any_status:
        reason = f": {ua['reason']}" if ua.get("reason") else ""
        raise UserError(
            f"{where}: trial {n} has no result (status {status}{reason}); its placement was not measured. "
            "Export a trial that trained it (see `placement-search pareto`), or pass --any-status to export "
            "the architecture anyway"
        )
    return ua


def _trained_trial(info: StudySource, trial: Any, ua: dict[str, Any], where: str) -> Any:
    """The trial that was trained: ``trial`` itself, or the one whose result it reused."""
    if ua.get("status") != "reused":
        return trial
    src = ua.get("reused_from")
    found = [t for t in info.study.get_trials(deepcopy=False) if t.number == src]
    if not found:
        raise UserError(f"{where}: trial {trial.number} reuses trial {src!r}, which is not in study {info.name!r}")
    return found[0]


def _placement_and_cost(info: StudySource, n: int, ua: dict[str, Any], where: str) -> tuple[Placement, Cost]:
    """The trial's placement and its cost at the target input, which must be the cost it recorded."""
    placement = info.space.validate(
        Placement.from_dict(ua["placement"], f"trial {n}: placement"), f"trial {n}: placement"
    )
    cost = info.space.cost(placement, frames=info.frames, size=info.size, num_classes=info.num_classes)
    recorded = (ua.get("macs"), ua.get("params"))
    if recorded != (None, None) and recorded != (cost.macs, cost.params):
        raise UserError(
            f"{where}: trial {n} recorded {ua.get('macs')!r} MACs and {ua.get('params')!r} params at "
            f"{info.frames}x{info.size}x{info.size}, but {info.space_note} gives {cost.macs:,} MACs and "
            f"{cost.params:,} params: the space or the backbone code changed since the study ran; export with "
            f"the placement-search version that ran it ({info.study.user_attrs.get('placement_search_version', '?')})"
        )
    return placement, cost


def _no_weights(info: StudySource, trial: Any, source: Any, artifacts: dict[str, str]) -> UserError:
    """``--weights`` for a trial without readable proxy weights: why they are missing."""
    from ..study.records import trial_status

    n = trial.number
    of = f"trial {n} (a reuse of trial {source.number})" if source is not trial else f"trial {n}"
    if WEIGHTS_FILE in artifacts:
        why = f"the {WEIGHTS_FILE} of {of} is missing from the artifact folder {info.artifact_dir}"
    else:
        why = (
            f"{of} kept no proxy weights (status {trial_status(source)}; the study's [artifacts] keep_weights "
            f"is {(info.config.get('artifacts') or {}).get('keep_weights', 'pareto')!r}: 'pareto' keeps the "
            "weights of trials on the Pareto front when they finish)"
        )
    return UserError(
        f'--weights: {why}; set keep_weights = "all" in the study file\'s [artifacts] table to keep every '
        "trial's weights, or export without --weights"
    )


def _free_folder(out: Path, n: int, overwrite: bool) -> Path:
    """``out/trial-0007``: inside ``out``, not a symbolic link, and empty unless ``overwrite``."""
    folder = out / f"trial-{n:04d}"
    target = folder.resolve()
    if not target.is_relative_to(out) or target.parent != out:
        raise UserError(
            f"-o {out}: {folder} resolves to {target}, outside the output folder; remove it or use another -o"
        )
    if folder.is_symlink():
        raise UserError(f"-o {out}: {folder} is a symbolic link; remove it or use another -o")
    if folder.exists() and not overwrite and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder} exists and is not empty; pass --overwrite to replace it")
    return folder
