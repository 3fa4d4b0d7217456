"""One contract for every storage a study can live in: SQLite (the default), Optuna's journal
file, and a real PostgreSQL server (skipped, saying why, where none can be started).

Each storage runs the real driver (in-process executor, a trainer that returns at once), is
resumed, is read by ``status``/``pareto`` through the command line, and recovers a driver that
died mid-trial: with its result stored (completed from it, not trained again) or without
(failed, its placement queued again).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import write_study
from test_search_driver import instant_trial

from placement_search.cli import main as cli_main
from placement_search.study import SearchDriver, load_study_config
from placement_search.study.records import RESULT, trial_attrs, trial_status, write_started
from placement_search.study.storage import COUNTED, open_storage

KINDS = ["sqlite", "journal", "postgresql"]


@pytest.fixture(params=KINDS)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    if request.param == "journal":
        return f"journal:///{tmp_path / 'study.log'}"
    return str(request.getfixturevalue("postgres_url"))


def _study(folder: Path, trials: int, name: str) -> object:
    return load_study_config(write_study(folder, name=name, trials=trials, evaluate_first=["all_2d", "all_3d"]))


def _run(cfg: object, url: str, **kw: object) -> object:
    return SearchDriver(cfg, storage=url, executor="inline", trial_fn=instant_trial, **kw).run()  # type: ignore[arg-type]


def test_a_study_runs_resumes_and_reads_back(storage_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    name = f"contract-{uuid.uuid4().hex[:8]}"  # an external PostgreSQL server may hold earlier runs
    cfg = _study(tmp_path, 4, name)
    first = _run(cfg, storage_url)
    assert first.counted == 4
    again = _run(cfg, storage_url, trials=6)  # resume: two more, numbering goes on
    assert again.counted == 6 and not again.created
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url, create=False))
    trials = study.get_trials()
    assert [t.number for t in trials] == list(range(len(trials)))
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    counted = [t for t in trials if trial_status(t) in COUNTED]
    assert len(counted) == 6
    keys = [json.dumps(trial_attrs(t)["placement"], sort_keys=True) for t in counted]
    assert len(set(keys)) == len(keys)  # each placement trained once
    for t in counted:  # the stored values are the ones the trainer reported and the exact MACs
        a = trial_attrs(t)
        temporal = sum(1 for c in a["placement"]["positions"].values() if c["op"] != "2d")
        assert t.values == pytest.approx([temporal / (len(a["placement"]["positions"]) + 1), a["macs"]])
        assert a["status"] == "ok" and a["flops"] == 2 * a["macs"]
    named = {trial_attrs(t).get("named") for t in trials}
    assert {"all_2d", "all_3d"} <= named

    assert cli_main(["pareto", "--storage", storage_url, "--study", name, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    front = {t.number for t in study.best_trials if trial_attrs(t)["status"] != "reused"}
    assert {r["trial"] for r in rows} == front
    assert cli_main(["status", "--storage", storage_url, "--study", name, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counted"] == 6 and status["by_status"].get("ok") == len(counted)


def test_a_dead_driver_is_recovered_from_what_it_stored(storage_url: str, tmp_path: Path):
    """Two trials left RUNNING by a driver that died: one had stored its result (the driver
    died before the final state), one had not. The next run completes the first from its
    result and fails the second, queuing its placement again; nothing stays RUNNING."""
    name = f"dead-{uuid.uuid4().hex[:8]}"
    cfg = _study(tmp_path, 2, name)
    _run(cfg, storage_url)
    storage = open_storage(storage_url, create=False)
    study = optuna.load_study(study_name=name, storage=storage)
    template = trial_attrs(study.get_trials()[0])
    dists = study.get_trials()[0].distributions
    params = {k: "sep" for k in dists}
    assert all("sep" in d.choices for d in dists.values())
    placement = {
        **template["placement"],
        "positions": {p: {"op": "sep", "kt": 3} for p in template["placement"]["positions"]},
    }
    ua = {"placement": placement, "placement_string": "sep sep sep sep sep", "macs": 5, "flops": 10, "params": 1}
    done_id, done_no = write_started(
        storage,
        study._study_id,
        state=TrialState.RUNNING,
        params=params,
        distributions=dists,
        user_attrs=ua,
        system_attrs={},
    )
    storage.set_trial_user_attr(done_id, RESULT, {"status": "ok", "accuracy": 0.9, "values": [0.9, 5.0]})
    lost_ua = {**ua, "placement": {**placement, "positions": {**placement["positions"]}}, "placement_string": "lost"}
    _lost_id, lost_no = write_started(
        storage,
        study._study_id,
        state=TrialState.RUNNING,
        params=params,
        distributions=dists,
        user_attrs=lost_ua,
        system_attrs={},
    )
    _run(cfg, storage_url, trials=3)
    trials = {t.number: t for t in optuna.load_study(study_name=name, storage=storage).get_trials()}
    done, lost = trials[done_no], trials[lost_no]
    assert done.state == TrialState.COMPLETE and done.values == [0.9, 5.0] and trial_attrs(done)["accuracy"] == 0.9
    assert lost.state == TrialState.FAIL and trial_attrs(lost)["status"] == "driver_died"
    assert any(trial_attrs(t).get("retry_of") == lost_no for t in trials.values())
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]


def _slow_trial(spec):
    """A trainer that takes a moment, so that readers overlap the writes."""
    import time

    time.sleep(0.05)
    yield from instant_trial(spec)


def test_readers_beside_a_writer_never_see_a_torn_trial(storage_url: str, tmp_path: Path, capsys):
    """While a driver writes a study, ``status``, ``pareto`` and ``export`` read it in a loop:
    the writer never fails (no "database is locked"), every reader call succeeds, and no reader
    ever sees a finished trial without its result or values."""
    import threading

    name = f"readers-{uuid.uuid4().hex[:8]}"
    cfg = _study(tmp_path, 30, name)
    # the study exists before the readers start
    _run(cfg, storage_url, trials=2)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            SearchDriver(cfg, storage=storage_url, trials=30, executor="inline", trial_fn=_slow_trial).run()
        except BaseException as e:
            errors.append(e)

    writer = threading.Thread(target=write)
    writer.start()
    reads = torn = 0
    storage = open_storage(storage_url, create=False)
    while writer.is_alive() or reads < 3:
        for t in optuna.load_study(study_name=name, storage=storage).get_trials():
            if t.state == TrialState.COMPLETE:
                a = trial_attrs(t)
                torn += not (
                    t.values and len(t.values) == 2 and a.get("status") in ("ok", "reused") and "accuracy" in a
                )
        assert cli_main(["status", "--storage", storage_url, "--study", name, "--json"]) == 0
        assert cli_main(["pareto", "--storage", storage_url, "--study", name, "--json"]) == 0
        if reads % 5 == 0:
            out = tmp_path / f"export-{reads}"
            assert cli_main(["export", "--storage", storage_url, "--study", name, "--pareto", "-o", str(out)]) == 0
        capsys.readouterr()
        reads += 1
    writer.join()
    assert not errors, errors
    assert torn == 0
    assert reads >= 3
    final = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert sum(1 for t in final if trial_status(t) in COUNTED) == 30
