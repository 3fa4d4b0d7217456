"""How a trial is stored (placement_search.study.records): written through Optuna's public
storage API, read back the same from this release's layout and from the earlier flat one."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from placement_search.placement import placement_key
from placement_search.study.records import (
    RESULT,
    stored_result,
    trial_attrs,
    trial_status,
    write_finished,
    write_started,
)
from placement_search.study.storage import open_storage

DISTS = {"stem": CategoricalDistribution(("2d", "3d", "sep")), "layer1": CategoricalDistribution(("2d", "3d:5"))}
PARAMS = {"stem": "sep", "layer1": "3d:5"}
UA = {"placement": {"b": 1, "a": [1, 2]}, "macs": 123456789, "status": "running", "named": None}
SA = {"constraints:max_macs": -0.25}


def _comparable(t: FrozenTrial) -> tuple:
    return (t.number, t.state, t.values, t.params, t.distributions, t.user_attrs, t.system_attrs, t.constraints)


@pytest.mark.parametrize("state", [TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED])
def test_write_started_is_optunas_own_add_trial(tmp_path, state):
    """The same trial through ``study.add_trial`` (Optuna's documented way to store a whole
    trial) and through ``write_started``: the same stored trial, numbered after a queued one."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url, create=True)
    values = [0.5, float("inf")] if state == TrialState.COMPLETE else None
    ours = optuna.create_study(storage=storage, study_name="ours", directions=["maximize", "minimize"])
    theirs = optuna.create_study(storage=storage, study_name="theirs", directions=["maximize", "minimize"])
    for study in (ours, theirs):
        study.enqueue_trial({"stem": "2d", "layer1": "2d"})  # trial 0 exists already: numbering must follow
    tid, number = write_started(
        storage,
        ours._study_id,
        state=state,
        params=PARAMS,
        distributions=DISTS,
        user_attrs=UA,
        system_attrs=SA,
        values=values,
    )
    assert (tid, number) == (ours.get_trials()[-1]._trial_id, 1)
    if state != TrialState.RUNNING:  # add_trial takes finished trials only
        theirs.add_trial(
            optuna.trial.create_trial(
                state=state, values=values, params=PARAMS, distributions=DISTS, user_attrs=UA, system_attrs=SA
            )
        )
        a = optuna.load_study(study_name="ours", storage=url).get_trials()[-1]
        b = optuna.load_study(study_name="theirs", storage=url).get_trials()[-1]
        assert _comparable(a) == _comparable(b)
    a = optuna.load_study(study_name="ours", storage=url).get_trials()[-1]
    assert a.state == state and a.params == PARAMS and a.constraints == {"max_macs": -0.25}


def test_a_finished_trial_reads_the_same_in_both_layouts(tmp_path):
    """This release stores a run's results in one ``result`` attribute; earlier ones stored each
    as its own attribute. ``trial_attrs`` gives one flat view of either."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url, create=True)
    done = {"status": "ok", "accuracy": 0.75, "eval_curve": [[3, 0.5], [6, 0.75]], "wall_time_s": 1.5}
    views = []
    for name in ("new", "old"):
        study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"])
        tid, _ = write_started(
            storage,
            study._study_id,
            state=TrialState.RUNNING,
            params=PARAMS,
            distributions=DISTS,
            user_attrs=UA,
            system_attrs=SA,
        )
        if name == "new":
            write_finished(storage, tid, state=TrialState.COMPLETE, result=done, values=[0.75, 2.0])
        else:  # the layout of earlier releases
            for k, v in done.items():
                storage.set_trial_user_attr(tid, k, v)
            storage.set_trial_state_values(tid, TrialState.COMPLETE, [0.75, 2.0])
        t = optuna.load_study(study_name=name, storage=url).get_trials()[0]
        a = trial_attrs(t)
        views.append({k: v for k, v in a.items() if k != "values"})
        assert trial_status(t) == "ok" and t.values == [0.75, 2.0]
        assert (a["accuracy"], a["macs"], a.get("placement_string")) == (0.75, 123456789, None)
        assert placement_key(a["placement"]) == placement_key({"a": [1, 2], "b": 1})
    assert views[0] == views[1]
    assert views[0]["status"] == "ok"  # the result's status wins over "running" from dispatch
    new = optuna.load_study(study_name="new", storage=url).get_trials()[0]
    assert set(new.user_attrs) == {*UA, RESULT}  # one attribute for the results


def test_finishing_refuses_a_finished_trial(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", create=True)
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    trial = study.ask(DISTS)
    study.tell(trial, [0.1, 1.0])
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        write_finished(storage, trial._trial_id, state=TrialState.FAIL, result={"status": "failed"})


def _running_trial(tmp_path):
    """A new study in a SQLite file holding one RUNNING trial, written as the driver writes it."""
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", create=True)
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    tid, _ = write_started(
        storage,
        study._study_id,
        state=TrialState.RUNNING,
        params=PARAMS,
        distributions=DISTS,
        user_attrs=UA,
        system_attrs={},
    )
    return storage, study, tid


def test_a_nan_objective_is_refused_before_anything_is_written(tmp_path):
    storage, study, tid = _running_trial(tmp_path)
    with pytest.raises(ValueError, match="NaN"):
        write_finished(storage, tid, state=TrialState.COMPLETE, result={"status": "ok"}, values=[float("nan"), 1.0])
    t = study.get_trials()[0]
    assert t.state == TrialState.RUNNING and RESULT not in t.user_attrs


def test_a_stored_result_survives_a_crash_before_the_final_state(tmp_path):
    """The result attribute is written before the state: a trial caught in between is RUNNING
    with its result, which ``stored_result`` hands back (the driver completes it on resume)."""
    storage, study, tid = _running_trial(tmp_path)
    assert stored_result(study.get_trials()[0]) is None
    storage.set_trial_user_attr(tid, RESULT, {"status": "ok", "accuracy": 0.5, "values": [0.5, 3.0]})
    t = study.get_trials()[0]
    assert t.state == TrialState.RUNNING and trial_status(t) == "running"
    assert stored_result(t) == {"status": "ok", "accuracy": 0.5, "values": [0.5, 3.0]}


def test_placement_key_ignores_key_order_only():
    assert placement_key({"a": 1, "b": {"y": 2, "x": 1}}) == placement_key({"b": {"x": 1, "y": 2}, "a": 1})
    assert placement_key({"a": 1}) != placement_key({"a": 2})
