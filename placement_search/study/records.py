"""The study's vocabulary: what a stored trial says, and the only code that writes or reads it.

A trial of a study is written twice, through Optuna's public storage API only:

* **at dispatch** (:func:`write_started`): one ``create_new_trial`` with a RUNNING template
  trial holding the params, the known costs (``placement``, ``placement_string``, ``macs``,
  ``flops``, ``params``), where it came from (``named``, ``retry_of``), the proxy budget and the
  constraints (exact costs are known before training);
* **at its end** (:func:`write_finished`): one user attribute, ``result``, holding everything the
  run produced (status, accuracy, curves, times, host, reason...), the files through
  ``optuna.artifacts.upload_artifact``, then the final state and values. A driver killed between
  the two leaves a RUNNING trial whose ``result`` is already stored: the next run completes it
  from there instead of training it again.

Studies written by earlier releases keep every result field as its own user attribute;
:func:`trial_attrs` reads both layouts, so every reader (status, pareto, figures, report,
export, the driver's resume) sees one flat dictionary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..placement import placement_key

__all__ = [
    "COUNTED",
    "FINAL",
    "RESULT",
    "placement_key",
    "run_attrs",
    "run_fields",
    "run_outcome",
    "study_space",
    "trial_attrs",
    "trial_status",
    "write_finished",
    "write_started",
    "write_trial",
]

#: the user attribute that holds a finished trial's results (this release's layout)
RESULT = "result"
#: outcomes that count against the trial budget (the training work was spent)
COUNTED = ("ok", "early_stopped", "diverged", "out_of_memory", "failed", "worker_died")
#: outcomes that are final for a placement (the same placement is not trained again)
FINAL = ("ok", "early_stopped", "diverged", "out_of_memory", "infeasible")


def trial_attrs(trial: Any) -> dict[str, Any]:
    """A trial's user attributes with its ``result`` (if any) spread over them: the one flat
    view of a trial, whichever release wrote it."""
    ua = trial.user_attrs
    result = ua.get(RESULT)
    if not isinstance(result, Mapping):
        return dict(ua)
    merged = {k: v for k, v in ua.items() if k != RESULT}
    merged.update(result)
    return merged


#: the attributes that say which run of its placement a trial is (see :func:`run_fields`)
RUN_FIELDS = ("budget_steps", "trainer_seed", "run_kind", "run_of")


def run_attrs(budget: Mapping[str, Any], kind: str, run_of: int | None = None) -> dict[str, Any]:
    """The attributes a run is dispatched with: running, its proxy budget, which run it is."""
    return {
        "status": "running",
        "proxy_budget": {k: v for k, v in budget.items() if k not in ("threads", "log_every")},
        "budget_steps": budget["steps"],
        "trainer_seed": budget["seed"],
        "run_kind": kind,
        **({"run_of": run_of} if run_of is not None else {}),
    }


def run_fields(attrs: Mapping[str, Any]) -> tuple[int | None, int | None, str]:
    """Which run of its placement a trial is: ``(steps, trainer seed, kind)``, kind ``sampled``
    (the sampler proposed it), ``repeat`` (another trainer seed) or ``promotion`` (a bigger
    budget). Trials of earlier releases, one run per placement, read as their proxy budget's."""
    pb = attrs.get("proxy_budget")
    budget: Mapping[str, Any] = pb if isinstance(pb, Mapping) else {}
    steps = attrs.get("budget_steps", budget.get("steps"))
    seed = attrs.get("trainer_seed", budget.get("seed"))
    return (
        int(steps) if steps is not None else None,
        int(seed) if seed is not None else None,
        str(attrs.get("run_kind", "sampled")),
    )


def trial_status(trial: Any, attrs: Mapping[str, Any] | None = None) -> str:
    """``running``/``waiting`` by state, else the status the driver recorded (``ok``,
    ``early_stopped``, ``reused``, ``infeasible``, ``failed``...), else one from the state."""
    from optuna.trial import TrialState

    if trial.state == TrialState.RUNNING:
        return "running"
    if trial.state == TrialState.WAITING:
        return "waiting"
    s = (attrs if attrs is not None else trial_attrs(trial)).get("status")
    if s and s != "running":
        return str(s)
    return {TrialState.COMPLETE: "ok", TrialState.PRUNED: "early_stopped", TrialState.FAIL: "failed"}[trial.state]


def run_outcome(
    final: Mapping[str, Any] | None, failure: Mapping[str, Any] | None, *, margin: float
) -> tuple[str, Any, dict[str, Any]]:
    """What a run's end means: its status, its Optuna state and its result attributes, from the
    worker's last event (``result`` or ``infeasible``) or the driver's ``failure`` (a dead
    worker, an error); ``margin`` is the early-stopping rule's, for the reason it gives."""
    from optuna.trial import TrialState

    if failure is None and not final:
        failure = {"status": "failed", "reason": "the worker ended without a result"}
    if failure is not None:
        return str(failure["status"]), TrialState.FAIL, {"status": failure["status"], "reason": failure["reason"]}
    assert final is not None
    if final["event"] == "infeasible":
        return "infeasible", TrialState.PRUNED, {"status": "infeasible", "reason": final["reason"]}
    r = final["result"]
    out: dict[str, Any] = {
        "accuracy": r["accuracy"],
        "top5": r["top5"],
        "eval_curve": r["eval_curve"],
        "loss_curve": r["loss_curve"],
        "per_class_accuracy": r["per_class_accuracy"],
        "steps_done": r["steps_done"],
        "clips_per_s": round(r["clips_per_s"], 2),
        "train_time_s": round(r["train_time_s"], 3),
        "device": r["device"],
        "precision": r["precision"],
    }
    if "table_seed" in r:  # a table evaluator's answer: which of the table's runs it was
        out["table_seed"] = r["table_seed"]
    if r["status"] == "ok":
        status, state = "ok", TrialState.COMPLETE
    elif r["status"] == "stopped":
        status, state = "early_stopped", TrialState.PRUNED
        out["stopped_by"] = final.get("stopped_by", [])
        out["reason"] = (
            f"stopped at step {r['steps_done']}: trials {final.get('stopped_by')} cost no more and were "
            f">= {margin:.0%} more accurate at that step"
        )
    else:
        status, state = r["status"], TrialState.FAIL
        out["reason"] = r["reason"]
    out["status"] = status
    return status, state, out


def _checked_values(values: Sequence[float] | None) -> list[float] | None:
    if values is None:
        return None
    out = [float(v) for v in values]
    for i, v in enumerate(out):
        if math.isnan(v):
            raise ValueError(f"objective {i} is NaN")
    return out


def write_started(
    storage: Any,
    study_id: int,
    *,
    state: Any,
    params: Mapping[str, Any],
    distributions: Mapping[str, Any],
    user_attrs: Mapping[str, Any],
    system_attrs: Mapping[str, Any],
    values: Sequence[float] | None = None,
) -> tuple[int, int]:
    """Create a whole trial in one storage call (Optuna's ``create_new_trial`` with a template:
    one transaction on RDB storage, one record in a journal); returns ``(trial_id, number)``."""
    import datetime as _dt

    from optuna.trial import FrozenTrial

    now = _dt.datetime.now()
    template = FrozenTrial(
        number=0,
        state=state,
        value=None,
        values=_checked_values(values),
        datetime_start=now,
        datetime_complete=now if state.is_finished() else None,
        params=dict(params),
        distributions={k: distributions[k] for k in params},
        user_attrs=dict(user_attrs),
        system_attrs=dict(system_attrs),
        intermediate_values={},
        trial_id=0,
    )
    trial_id = storage.create_new_trial(study_id, template_trial=template)
    return int(trial_id), int(storage.get_trial_number_from_id(trial_id))


def write_trial(
    storage: Any,
    study_id: int,
    waiting: tuple[int, int] | None,
    *,
    state: Any,
    params: Mapping[str, Any],
    distributions: Mapping[str, Any],
    user_attrs: Mapping[str, Any],
    system_attrs: Mapping[str, Any],
    values: Sequence[float] | None = None,
) -> tuple[int, int]:
    """A proposed trial into storage: a new row (:func:`write_started`), or the study's queued
    (WAITING) row ``waiting = (trial_id, number)`` it came from. A queued row gets its
    attributes and params first and RUNNING last, so that a crash in between leaves it WAITING
    (its ``fixed_params`` intact) for the next run."""
    from optuna.trial import TrialState

    if waiting is None:
        return write_started(
            storage,
            study_id,
            state=state,
            params=params,
            distributions=distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
            values=values,
        )
    trial_id, number = waiting
    for k, v in user_attrs.items():
        storage.set_trial_user_attr(trial_id, k, v)
    for k, v in system_attrs.items():
        storage.set_trial_system_attr(trial_id, k, v)
    for name, value in params.items():
        dist = distributions[name]
        storage.set_trial_param(trial_id, name, dist.to_internal_repr(value), dist)
    storage.set_trial_state_values(trial_id, TrialState.RUNNING)
    if state != TrialState.RUNNING:
        storage.set_trial_state_values(trial_id, state, _checked_values(values))
    return trial_id, number


def write_finished(
    storage: Any,
    trial_id: int,
    *,
    state: Any,
    result: Mapping[str, Any],
    values: Sequence[float] | None = None,
    system_attrs: Mapping[str, Any] | None = None,
    files: Sequence[tuple[str, bytes, str]] = (),
    artifact_store: Any = None,
) -> None:
    """A RUNNING trial's end: its ``result`` attribute, its files (``(filename, data, mimetype)``,
    through ``optuna.artifacts.upload_artifact``), extra system attributes (constraints set since
    dispatch), then the final state and values: last, so that a crash before it leaves the trial
    RUNNING with its result stored (see :func:`stored_result`)."""
    checked = _checked_values(values)
    storage.set_trial_user_attr(trial_id, RESULT, {**result, **({"values": checked} if checked else {})})
    if files:
        _upload(storage, trial_id, files, artifact_store)
    for k, v in (system_attrs or {}).items():
        storage.set_trial_system_attr(trial_id, k, v)
    storage.set_trial_state_values(trial_id, state, checked)


def _upload(storage: Any, trial_id: int, files: Sequence[tuple[str, bytes, str]], artifact_store: Any) -> None:
    import tempfile
    from pathlib import Path

    from optuna.artifacts import upload_artifact

    # upload_artifact needs only the trial's id from a FrozenTrial: a handle, not the whole trial
    # read back from storage (params, attributes, curves: the largest cost of an upload)
    trial = _handle(trial_id)
    with tempfile.TemporaryDirectory(prefix="placement-search-") as tmp:
        for filename, data, mimetype in files:
            path = Path(tmp) / filename
            path.write_bytes(data)
            upload_artifact(
                artifact_store=artifact_store,
                file_path=str(path),
                study_or_trial=trial,
                storage=storage,
                mimetype=mimetype,
            )


def _handle(trial_id: int) -> Any:
    """A FrozenTrial that stands for stored trial ``trial_id`` where only its id is read."""
    import datetime as _dt

    from optuna.trial import FrozenTrial, TrialState

    return FrozenTrial(
        number=-1,
        state=TrialState.RUNNING,
        value=None,
        values=None,
        datetime_start=_dt.datetime.now(),
        datetime_complete=None,
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=trial_id,
    )


def stored_result(trial: Any) -> dict[str, Any] | None:
    """The ``result`` a RUNNING trial already holds (its driver died between writing it and
    the final state), or None."""
    r = trial.user_attrs.get(RESULT)
    return dict(r) if isinstance(r, Mapping) and r.get("status") not in (None, "running") else None


def study_space(study: Any) -> tuple[Any, str, str]:
    """The search space a study ran, from the space file text it stored (else the shipped space
    it names), with that text and a note on where it came from; errors name the study."""
    from ..errors import UserError
    from ..space import load_space, space_from_text

    name = study.user_attrs.get("space")
    text = study.user_attrs.get("space_toml")
    if isinstance(text, str):
        try:
            space = space_from_text(text, where="its stored space file")
        except UserError as e:
            raise UserError(f"study {study.study_name!r}: {e}") from None
        return space, text, "the space file stored with the study"
    if not isinstance(name, str):
        raise UserError(f"study {study.study_name!r} records no search space (was it created by placement-search run?)")
    space = load_space(name)
    if space.path is None:  # pragma: no cover - load_space always sets it
        raise UserError(f"study {study.study_name!r}: cannot find the text of space {name!r}")
    return space, space.path.read_text(encoding="utf-8"), f"the shipped space {name!r} (the study stored no space file)"
