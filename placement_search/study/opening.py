"""Opening a study for a run: create it (recording what identifies it) or check that a resumed
one is the same study (config identity, space file, objectives); its artifact folder; the
``evaluate_first`` queue; and the recovery of trials a killed driver left RUNNING."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import UserError
from ..placement import Placement, placement_key
from ..space import SearchSpace
from .config import StudyConfig
from .records import RUN_FIELDS, stored_result, write_finished

__all__ = [
    "artifact_dir",
    "enqueue_first",
    "group_params",
    "open_study",
    "recover",
    "requeue",
    "sha256",
    "trial_params",
]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def open_study(
    storage: Any,
    *,
    name: str,
    url: str,
    cfg: StudyConfig,
    space: SearchSpace,
    space_text: str | None,
    attrs: dict[str, Any],
) -> tuple[Any, bool]:
    """The study ``name``: created with ``attrs`` (and the space file's text and hash) when new,
    else checked to be the same study. Returns ``(study, created)``."""
    import optuna

    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        study = None
    identity = cfg.identity()
    if study is not None:
        old = study.user_attrs.get("identity")
        if old is not None and old != json.loads(json.dumps(identity)):
            diff = [k for k in identity if json.loads(json.dumps(identity[k])) != old.get(k)]
            raise UserError(
                f"study {name!r} in {url} was created with a different "
                f"{', '.join(diff)}; its trials would not be comparable. Use --study-name for a new study"
            )
        check_space_unchanged(study, name, space, space_text)
        if [d.name.lower() for d in study.directions] != cfg.directions:
            raise UserError(f"study {name!r}: its objectives differ from {list(cfg.objectives)}")
        return study, False
    study = optuna.create_study(storage=storage, study_name=name, directions=cfg.directions, load_if_exists=True)
    study.set_metric_names(list(cfg.objectives))
    created = {
        "space": space.name,
        "identity": identity,
        "config": json.loads(json.dumps(cfg.to_dict(), default=str)),
        "placement_search_version": __version__,
        "groups": [g.name for g in space.groups],
        **attrs,
    }
    if space_text is not None:
        # the space file itself, so that exported architectures rebuild without it, and its
        # hash, so that a resume notices an edited file
        created.update(space_toml=space_text, space_sha256=sha256(space_text))
    for k, v in created.items():
        study.set_user_attr(k, v)
    return study, True


def check_space_unchanged(study: Any, name: str, space: SearchSpace, space_text: str | None) -> None:
    """A resumed study must train the space it was created with: the space file's text is
    compared with the one the study stored (its hash, or the text itself for studies of
    earlier releases)."""
    if space_text is None:
        return
    stored = study.user_attrs.get("space_sha256")
    if stored is None and study.user_attrs.get("space_toml") is not None:
        stored = sha256(study.user_attrs["space_toml"])
    if stored is not None and stored != sha256(space_text):
        raise UserError(
            f"study {name!r}: the space file {space.path} changed since the study was created "
            "(its text is stored in the study); trials of the two versions would not be comparable. Restore "
            "the file (placement-search export writes the stored one into each arch.json), or use --study-name "
            "for a new study"
        )


def artifact_dir(cfg: StudyConfig, recorded: str | None, storage_url: str) -> Path:
    """The artifact folder: the config's, else the one the study recorded, else next to a
    SQLite or journal file (``<name>-artifacts``), else ``./placement-search-artifacts``."""
    if cfg.artifacts.path:
        return Path(cfg.artifacts.path)
    if recorded:
        return Path(recorded)
    from .storage import storage_file

    db = storage_file(storage_url)
    if db is not None:
        return (db.parent / f"{db.stem}-artifacts").resolve()
    return (Path.cwd() / "placement-search-artifacts").resolve()


def group_params(space: SearchSpace, p: Placement) -> dict[str, str]:
    """A placement as the study's params: one choice token per decision (group)."""
    out = {}
    for g in space.groups:
        i = space.group_choice_index(p, g)
        if i is None:
            raise UserError(f"placement {space.placement_string(p)!r} is outside space {space.name!r}")
        out[g.name] = g.tokens[i]
    return out


def trial_params(t: Any) -> dict[str, Any]:
    """A trial's placement params; a queued row holds them as ``fixed_params`` (and a row
    caught between its queue and its start may hold only some as params)."""
    return dict(t.system_attrs.get("fixed_params") or t.params)


def enqueue_first(study: Any, space: SearchSpace, first: Sequence[tuple[str, Placement]]) -> None:
    """Queue the ``evaluate_first`` placements the study has not seen yet (all of them for a
    new study; names added to the study file since, on a resume)."""
    from optuna.trial import TrialState

    seen: set[str] = set()
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            try:
                seen.add(placement_key(space.from_group_tokens({k: str(v) for k, v in trial_params(t).items()})))
            except UserError:
                continue
        elif t.user_attrs.get("placement"):  # stored at dispatch
            seen.add(placement_key(t.user_attrs["placement"]))
    for name, p in first:
        key = placement_key(p)
        if key not in seen:
            seen.add(key)
            study.enqueue_trial(group_params(space, p), user_attrs={"named": name})


def requeue(study: Any, t: Any) -> None:
    """Queue a trial's placement again for the next run (it keeps its name)."""
    params = trial_params(t)
    if params:
        ua = {"retry_of": t.number, **({"named": t.user_attrs["named"]} if t.user_attrs.get("named") else {})}
        # a follow-up run (a repeat, a promotion) is queued as the same run: same budget and seed
        ua.update(
            {k: t.user_attrs[k] for k in RUN_FIELDS if k in t.user_attrs and t.user_attrs.get("run_kind") != "sampled"}
        )
        study.enqueue_trial(params, user_attrs=ua)


def recover(study: Any, storage: Any) -> int:
    """Trials left RUNNING by a driver that died: one whose result is stored is completed from
    it; the others are recorded ``driver_died`` and their placements queued again. Returns how
    many were queued again."""
    from optuna.trial import TrialState

    final = {"ok": TrialState.COMPLETE, "early_stopped": TrialState.PRUNED, "infeasible": TrialState.PRUNED}
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        done = stored_result(t)
        if done is not None:
            # the driver died after storing the result and before the final state: finish it
            status = done["status"]
            values = done.get("values") if status == "ok" else None
            if status != "ok" or values:
                storage.set_trial_state_values(t._trial_id, final.get(status, TrialState.FAIL), values)
                continue
        write_finished(
            storage,
            t._trial_id,
            state=TrialState.FAIL,
            result={"status": "driver_died", "reason": "the driver stopped while this trial ran"},
        )
        requeue(study, t)
        n += 1
    return n
