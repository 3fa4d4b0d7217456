"""The driver's one-transaction trial writes give exactly the rows Optuna's own API writes."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from placement_search.search.fastsql import create_trial, finish_trial
from placement_search.search.storage import open_storage

DISTS = {"stem": CategoricalDistribution(("2d", "3d", "sep")), "layer1": CategoricalDistribution(("2d", "3d:5"))}
PARAMS = {"stem": "sep", "layer1": "3d:5"}
UA = {"placement": {"a": [1, 2]}, "macs": 123456789, "status": "running", "named": None}
SA = {"constraints:max_macs": -0.25, "artifacts:x": '{"filename": "a.csv"}'}


def _comparable(t: FrozenTrial) -> tuple:
    return (t.number, t.state, t.values, t.params, t.distributions, t.user_attrs, t.system_attrs, t.constraints)


@pytest.mark.parametrize("state", [TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED])
def test_create_trial_matches_optunas_template_path(tmp_path, state):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", create=True)
    values = [0.5, float("inf")] if state == TrialState.COMPLETE else None
    ours = optuna.create_study(storage=storage, study_name="ours", directions=["maximize", "minimize"])
    theirs = optuna.create_study(storage=storage, study_name="theirs", directions=["maximize", "minimize"])
    for study in (ours, theirs):
        study.enqueue_trial({"stem": "2d", "layer1": "2d"})  # trial 0 exists already: numbering must follow
    assert create_trial(
        storage,
        ours._study_id,
        state=state,
        params=PARAMS,
        distributions=DISTS,
        user_attrs=UA,
        system_attrs=SA,
        values=values,
    ) == (ours.get_trials()[-1]._trial_id, 1)
    now = ours.get_trials()[-1].datetime_start
    template = FrozenTrial(
        number=0,
        state=state,
        value=None,
        values=values,
        datetime_start=now,
        datetime_complete=now if state.is_finished() else None,
        params=PARAMS,
        distributions=DISTS,
        user_attrs=UA,
        system_attrs=SA,
        intermediate_values={},
        trial_id=0,
    )
    storage.create_new_trial(theirs._study_id, template_trial=template)
    a = optuna.load_study(study_name="ours", storage=f"sqlite:///{tmp_path / 's.db'}").get_trials()[-1]
    b = optuna.load_study(study_name="theirs", storage=f"sqlite:///{tmp_path / 's.db'}").get_trials()[-1]
    assert _comparable(a) == _comparable(b)
    assert a.constraints == {"max_macs": -0.25}


def test_finish_trial_matches_the_public_api(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url, create=True)
    results = []
    for name, fast in (("ours", True), ("theirs", False)):
        study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"])
        study.enqueue_trial(PARAMS)
        trial = study.ask(DISTS)
        for k, v in UA.items():
            study._storage.set_trial_user_attr(trial._trial_id, k, v)
        done = {"status": "ok", "accuracy": 0.75, "eval_curve": [[3, 0.5], [6, 0.75]]}
        sys_attrs = {"constraints:max_macs": 0.1}
        if fast:
            assert finish_trial(
                storage,
                trial._trial_id,
                state=TrialState.COMPLETE,
                user_attrs=done,
                system_attrs=sys_attrs,
                values=[0.75, 2.0],
            )
        else:
            for k, v in done.items():
                storage.set_trial_user_attr(trial._trial_id, k, v)
            for k, v in sys_attrs.items():
                storage.set_trial_system_attr(trial._trial_id, k, v)
            storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [0.75, 2.0])
        t = optuna.load_study(study_name=name, storage=url).get_trials()[0]
        results.append((t.state, t.values, t.params, t.user_attrs, t.system_attrs))
    assert results[0] == results[1]
    assert results[0][3]["status"] == "ok"  # replaced, not duplicated


def test_finish_refuses_a_finished_trial(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}", create=True)
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    trial = study.ask(DISTS)
    study.tell(trial, [0.1, 1.0])
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        finish_trial(storage, trial._trial_id, state=TrialState.FAIL, user_attrs={}, system_attrs={})
