"""Writing a trial to Optuna's SQL storage in one transaction with a handful of statements.

Optuna's RDB storage writes each parameter and attribute with its own look-up, check and
upsert (about 100 SQL statements for one of our trials, in one or more transactions). The
driver is the only writer of its study and knows the whole row, so it writes it the way a
bulk loader would: one INSERT per table, in one transaction, through Optuna's own table
models (so the rows are exactly Optuna's). :func:`create_trial` and :func:`finish_trial`
return False where the storage is not Optuna's RDB storage with the internals expected
(another Optuna version); the driver then uses the public API.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["create_trial", "finish_trial", "rdb_backend"]


def rdb_backend(storage: Any) -> Any | None:
    """The ``RDBStorage`` behind ``storage`` (Optuna wraps it in a cache), or None."""
    try:
        from optuna.storages import RDBStorage
        from optuna.storages._rdb import models  # noqa: F401
        from optuna.storages._rdb.storage import _create_scoped_session  # noqa: F401
    except ImportError:  # pragma: no cover - another Optuna layout
        return None
    rdb = getattr(storage, "_backend", storage)
    return rdb if isinstance(rdb, RDBStorage) and hasattr(rdb, "scoped_session") else None


def _attr_rows(trial_id: int, attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items()]


def _value_rows(models: Any, trial_id: int, values: Sequence[float] | None) -> list[dict[str, Any]]:
    rows = []
    for i, v in enumerate(values or []):
        if math.isnan(v):
            raise ValueError(f"objective {i} is NaN")
        stored, kind = models.TrialValueModel.value_to_stored_repr(v)
        rows.append({"trial_id": trial_id, "objective": i, "value": stored, "value_type": kind})
    return rows


def _insert(session: Any, model: Any, rows: list[dict[str, Any]]) -> None:
    """One multi-row INSERT (executemany) per table, without building ORM objects."""
    if rows:
        from sqlalchemy import insert

        session.execute(insert(model), rows)


def create_trial(
    storage: Any,
    study_id: int,
    *,
    state: Any,
    params: Mapping[str, Any],
    distributions: Mapping[str, Any],
    user_attrs: Mapping[str, Any],
    system_attrs: Mapping[str, Any],
    values: Sequence[float] | None = None,
) -> tuple[int, int] | None:
    """Insert a whole trial; returns ``(trial_id, number)``, or None where not supported."""
    rdb = rdb_backend(storage)
    if rdb is None:
        return None
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    now = _dt.datetime.now()
    with _create_scoped_session(rdb.scoped_session, True) as session:
        # the study row lock serialises trial numbering, as Optuna does
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        trial = models.TrialModel(
            study_id=study_id,
            number=None,
            state=state,
            datetime_start=now,
            datetime_complete=now if state.is_finished() else None,
        )
        session.add(trial)
        session.flush()
        tid = int(trial.trial_id)
        _insert(
            session,
            models.TrialParamModel,
            [
                {
                    "trial_id": tid,
                    "param_name": name,
                    "param_value": distributions[name].to_internal_repr(value),
                    "distribution_json": distribution_to_json(distributions[name]),
                }
                for name, value in params.items()
            ],
        )
        _insert(session, models.TrialUserAttributeModel, _attr_rows(tid, user_attrs))
        _insert(session, models.TrialSystemAttributeModel, _attr_rows(tid, system_attrs))
        _insert(session, models.TrialValueModel, _value_rows(models, tid, values))
        trial.number = trial.count_past_trials(session)
        number = trial.number
    return int(tid), int(number)


def finish_trial(
    storage: Any,
    trial_id: int,
    *,
    state: Any,
    user_attrs: Mapping[str, Any],
    system_attrs: Mapping[str, Any],
    values: Sequence[float] | None = None,
) -> bool:
    """Set attributes (replacing same-named ones), values and the final state of a RUNNING
    trial in one transaction. False where not supported."""
    rdb = rdb_backend(storage)
    if rdb is None:
        return False
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(rdb.scoped_session, True) as session:
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
        rdb.check_trial_is_updatable(trial_id, trial.state)
        for model, attrs in (
            (models.TrialUserAttributeModel, user_attrs),
            (models.TrialSystemAttributeModel, system_attrs),
        ):
            if attrs:
                session.query(model).filter(model.trial_id == trial_id, model.key.in_(list(attrs))).delete(
                    synchronize_session=False
                )
        _insert(session, models.TrialUserAttributeModel, _attr_rows(trial_id, user_attrs))
        _insert(session, models.TrialSystemAttributeModel, _attr_rows(trial_id, system_attrs))
        _insert(session, models.TrialValueModel, _value_rows(models, trial_id, values))
        trial.state = state
        trial.datetime_complete = _dt.datetime.now()
    return True
