"""The search driver with a real local Ray instance and real SQLite storage.

Trials train the tiny space for 6 steps on 8x16x16 synthetic clips (well under a second), or
run a trainer that returns at once where only the orchestration is under test.
"""

from __future__ import annotations

import json
import sys

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import sqlite_url, write_study

from placement_search.errors import UserError
from placement_search.space import load_space
from placement_search.study import SearchDriver, load_study_config
from placement_search.study.records import trial_attrs
from placement_search.study.samplers import SAMPLERS
from placement_search.study.storage import pareto_rows, study_status

pytestmark = pytest.mark.usefixtures("ray_local")

# Ray workers cannot import this test module: ship the trainers below by value
import ray.cloudpickle  # noqa: E402

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def instant_trial(spec):
    """A trainer that returns at once: accuracy grows with the number of temporal groups, so the
    study has a real accuracy/compute trade-off without training."""
    temporal = sum(1 for c in spec["placement"]["positions"].values() if c["op"] != "2d")
    acc = temporal / (len(spec["placement"]["positions"]) + 1)
    yield {"event": "started", "host": "test", "pid": 0, "device": "cpu"}
    yield {
        "event": "result",
        "result": {
            "status": "ok",
            "accuracy": acc,
            "top5": None,
            "eval_curve": [[6, acc]],
            "loss_curve": [],
            "per_class_accuracy": {},
            "steps_done": 6,
            "clips_per_s": 0.0,
            "train_time_s": 0.0,
            "device": "cpu",
            "precision": "fp32",
        },
        "stopped_by": [],
    }


def stopped_trial(spec):
    """A trainer whose run the early-stopping rule stopped at step 3."""
    yield {"event": "eval", "step": 3, "accuracy": 0.25}
    yield {
        "event": "result",
        "result": {
            "status": "stopped",
            "accuracy": 0.25,
            "top5": None,
            "eval_curve": [[3, 0.25]],
            "loss_curve": [],
            "per_class_accuracy": {},
            "steps_done": 3,
            "clips_per_s": 0.0,
            "train_time_s": 0.0,
            "device": "cpu",
            "precision": "fp32",
        },
        "stopped_by": [0],
    }


def load(url, name="small"):
    return optuna.load_study(study_name=name, storage=url)


def test_small_study_end_to_end_is_visible_to_plain_optuna(tmp_path):
    url = sqlite_url(tmp_path)
    cfg = load_study_config(write_study(tmp_path, trials=4, evaluate_first=["all_2d", "all_3d"]))
    result = SearchDriver(cfg, storage=url).run()
    assert result.counted == 4 and result.created and not result.interrupted

    study = load(url)  # plain Optuna, no placement-search code
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert study.metric_names == ["accuracy", "macs"]
    assert study.user_attrs["space"] == "tiny"
    trials = study.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    space = load_space("tiny")
    # the named placements come first, in the order given
    assert trial_attrs(trials[0])["named"] == "all_2d" and trial_attrs(trials[1])["named"] == "all_3d"
    assert trial_attrs(trials[0])["placement_string"] == "2d 2d 2d 2d 2d"
    for t in trials:
        ua = trial_attrs(t)
        cost = space.cost(json.dumps(ua["placement"]), frames=16, size=112, num_classes=400)
        # compute recorded at the target input equals an independent count of the built model
        assert ua["macs"] == cost.macs and ua["params"] == cost.params and ua["flops"] == 2 * cost.macs
        assert t.values[0] == pytest.approx(ua["accuracy"]) and 0.0 <= ua["accuracy"] <= 1.0
        assert t.values[1] == ua["macs"]
        proxy = space.cost(json.dumps(ua["placement"]), frames=8, size=16, num_classes=11)
        assert ua["proxy_macs"] == proxy.macs and ua["proxy_input"] == "8x16x16" and ua["target_input"] == "16x112x112"
        assert ua["status"] == "ok" and ua["device"] == "cpu" and ua["wall_time_s"] > 0
        assert ua["proxy_budget"]["steps"] == 6 and len(ua["eval_curve"]) == 2
        # the intermediate evaluation (step 3 of 6) streamed back and is stored for dashboards
        assert t.intermediate_values == {3: pytest.approx(ua["eval_curve"][0][1])}
        assert t.params == {g.name: tok for g, tok in zip(space.groups, ua["placement_string"].split())}
    st = study_status(study)
    assert st["counted"] == 4 and st["by_status"] == {"ok": 4}


def test_failing_diverging_and_worker_killing_trials_are_recorded_and_the_study_completes(tmp_path):
    url = sqlite_url(tmp_path)
    cfg = load_study_config(
        write_study(tmp_path, sampler="families", evaluate_first=["all_2d", "all_3d", "all_sep", "all_2plus1d"])
    )
    faults = {"2d 2d 2d 2d 2d": "raise", "3d 3d 3d 3d 3d": "diverge", "sep sep sep sep sep": "kill"}
    result = SearchDriver(cfg, storage=url, faults=faults).run()
    assert not result.interrupted
    by = {trial_attrs(t)["placement_string"]: t for t in load(url).get_trials()}
    assert len(by) == 4
    raised, diverged, killed, fine = (
        by[k]
        for k in ["2d 2d 2d 2d 2d", "3d 3d 3d 3d 3d", "sep sep sep sep sep", "2plus1d 2plus1d 2plus1d 2plus1d 2plus1d"]
    )
    assert raised.state == TrialState.FAIL and trial_attrs(raised)["status"] == "failed"
    assert "RuntimeError" in trial_attrs(raised)["reason"] and "injected failure" in trial_attrs(raised)["reason"]
    assert diverged.state == TrialState.FAIL and trial_attrs(diverged)["status"] == "diverged"
    assert "nan" in trial_attrs(diverged)["reason"].lower() or "inf" in trial_attrs(diverged)["reason"].lower()
    # the worker process was killed: retried [resources] retries (2) times, then recorded
    assert killed.state == TrialState.FAIL and trial_attrs(killed)["status"] == "worker_died"
    assert trial_attrs(killed)["attempts"] == 3 and "died" in trial_attrs(killed)["reason"]
    assert fine.state == TrialState.COMPLETE and trial_attrs(fine)["status"] == "ok"
    assert not [t for t in load(url).get_trials() if t.state == TrialState.RUNNING]


def test_constraint_records_over_budget_placements_infeasible_without_training(tmp_path):
    url = sqlite_url(tmp_path)
    space = load_space("tiny")
    macs_2d = space.cost("all_2d", frames=16, size=112, num_classes=400).macs
    macs_3d = space.cost("all_3d", frames=16, size=112, num_classes=400).macs
    budget = (macs_2d + macs_3d) // 2
    cfg = load_study_config(
        write_study(
            tmp_path,
            sampler="families",
            evaluate_first=["all_2d", "all_3d"],
            extra=f"\n[constraints]\nmax_macs = {budget}\n",
        )
    )
    SearchDriver(cfg, storage=url, trial_fn=instant_trial).run()
    study = load(url)
    t2d, t3d = study.get_trials()
    assert t3d.state == TrialState.PRUNED and trial_attrs(t3d)["status"] == "infeasible"
    assert "wall_time_s" not in t3d.user_attrs  # never dispatched
    # Optuna's constraint convention: feasible iff <= 0 (here the relative excess over the budget)
    assert t3d.constraints["max_macs"] == pytest.approx((macs_3d - budget) / budget)
    assert t3d.constraints["max_macs"] > 0
    assert "over max_macs" in trial_attrs(t3d)["reason"]
    assert t2d.state == TrialState.COMPLETE, trial_attrs(t2d).get("reason")
    assert t2d.constraints["max_macs"] <= 0
    assert [t.number for t in study.best_trials] == [0]


def test_budget_below_the_cheapest_placement_is_a_user_error(tmp_path):
    cfg = load_study_config(write_study(tmp_path, extra='\n[constraints]\nmax_macs = "1M"\n'))
    with pytest.raises(UserError, match="no placement of space 'tiny' fits"):
        SearchDriver(cfg, storage=sqlite_url(tmp_path))


def test_an_evaluated_placement_is_reused_not_trained_again(tmp_path):
    url = sqlite_url(tmp_path)
    cfg = load_study_config(write_study(tmp_path, trials=2, evaluate_first=["all_2d", "all_3d"]))
    SearchDriver(cfg, storage=url, trial_fn=instant_trial).run()
    study = load(url)
    first = study.get_trials()[0]
    study.enqueue_trial(first.params)  # the same placement again
    r = SearchDriver(cfg, storage=url, trials=3, trial_fn=instant_trial).run()
    assert r.by_status.get("reused") == 1
    trials = load(url).get_trials()
    reused = trials[2]
    assert trial_attrs(reused)["status"] == "reused" and trial_attrs(reused)["reused_from"] == 0
    assert reused.values == first.values and trial_attrs(reused)["placement"] == trial_attrs(first)["placement"]
    assert "wall_time_s" in trial_attrs(first) and trial_attrs(reused).get("host") == trial_attrs(first).get("host")
    # reused trials are free: the study went on to 3 counted (trained) trials
    assert sum(1 for t in trials if trial_attrs(t)["status"] == "ok") == 3


def test_stopped_runs_are_recorded_pruned_with_their_dominators(tmp_path):
    url = sqlite_url(tmp_path)
    cfg = load_study_config(write_study(tmp_path, trials=1, evaluate_first=["all_3d"], early_stopping=True))
    SearchDriver(cfg, storage=url, trial_fn=stopped_trial).run()
    (t,) = load(url).get_trials()
    assert t.state == TrialState.PRUNED and trial_attrs(t)["status"] == "early_stopped"
    assert trial_attrs(t)["stopped_by"] == [0] and trial_attrs(t)["eval_curve"] == [[3, 0.25]]
    assert "stopped at step 3" in trial_attrs(t)["reason"]


@pytest.mark.parametrize(
    "sampler", [s for s in SAMPLERS if s != "families"]
)  # families: runs its queue only, tested above
def test_every_sampler_runs_and_is_reproducible(tmp_path, sampler):
    """Every sampler of the registry, through the real driver (in-process executor)."""
    seqs = []
    for run in range(2):
        folder = tmp_path / str(run)
        folder.mkdir()
        text = write_study(folder, sampler=sampler, trials=12).read_text()
        text = text.replace("[resources]\ncpus = 1", "[resources]\ncpus = 1\nmax_concurrent = 1")
        if sampler in ("nsga2", "nsga3"):
            text = text.replace(
                f'sampler = "{sampler}"', f'sampler = "{sampler}"\nsampler_options = {{ population_size = 4 }}'
            )
        (folder / "small.toml").write_text(text)
        cfg = load_study_config(folder / "small.toml")
        SearchDriver(cfg, storage=sqlite_url(folder), trial_fn=instant_trial, executor="inline").run()
        seqs.append([trial_attrs(t)["placement_string"] for t in load(sqlite_url(folder)).get_trials()])
    assert len(seqs[0]) >= 12
    assert seqs[0] == seqs[1]  # same seed, one trial at a time: the same placements in the same order


def test_resume_continues_and_a_changed_config_is_refused(tmp_path):
    url = sqlite_url(tmp_path)
    path = write_study(tmp_path, trials=2)
    cfg = load_study_config(path)
    SearchDriver(cfg, storage=url, trial_fn=instant_trial).run()
    before = [(t.number, t.values) for t in load(url).get_trials()]
    r = SearchDriver(cfg, storage=url, trials=4, trial_fn=instant_trial).run()
    assert not r.created and r.counted == 4
    after = load(url).get_trials()
    assert [(t.number, t.values) for t in after[:2]] == before
    # the resumed sampler does not replay the first run's draws
    assert r.by_status.get("reused", 0) == 0
    # nothing to do when the study already holds its trials
    r = SearchDriver(cfg, storage=url, trials=4, trial_fn=instant_trial).run()
    assert r.counted == 4 and "reached 4" in r.stop_reason and len(load(url).get_trials()) == len(after)
    text = path.read_text().replace("steps = 6", "steps = 7")
    path.write_text(text)
    changed = load_study_config(path)
    with pytest.raises(UserError, match="different proxy"):
        SearchDriver(changed, storage=url, trial_fn=instant_trial).run()


def test_pareto_rows_are_the_non_dominated_trials(tmp_path):
    url = sqlite_url(tmp_path)
    cfg = load_study_config(write_study(tmp_path, trials=10))
    SearchDriver(cfg, storage=url, trial_fn=instant_trial).run()
    study = load(url)
    done = [(t.values[0], t.values[1], t.number) for t in study.get_trials() if t.state == TrialState.COMPLETE]
    # first principles: a trial is on the front iff no other is at least as accurate and at most as costly,
    # and strictly better in one
    expected = {n for a, c, n in done if not any((a2 >= a and c2 <= c) and (a2 > a or c2 < c) for a2, c2, _ in done)}
    rows = pareto_rows(study)
    assert {r["trial"] for r in rows} == expected
    assert [r["macs"] for r in rows] == sorted(r["macs"] for r in rows)
    assert all(set(r) >= {"trial", "placement", "accuracy", "macs", "params"} for r in rows)


def test_a_second_driver_on_a_running_study_is_refused(tmp_path):
    import socket
    import subprocess
    import time

    url = sqlite_url(tmp_path)
    cfg = load_study_config(write_study(tmp_path, trials=1))
    SearchDriver(cfg, storage=url, trial_fn=instant_trial).run()
    assert load(url).user_attrs["driver"] is None  # released at the end
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        load(url).set_user_attr("driver", {"host": socket.gethostname(), "pid": other.pid, "heartbeat": time.time()})
        with pytest.raises(UserError, match=f"being run by process {other.pid}"):
            SearchDriver(cfg, storage=url, trials=2, trial_fn=instant_trial).run()
    finally:
        other.kill()
        other.wait()
    # that process is gone: its claim is stale and the study resumes
    r = SearchDriver(cfg, storage=url, trials=2, trial_fn=instant_trial).run()
    assert r.counted == 2


def config_error_trial(spec):
    """A worker that finds the study's set-up wrong (as unreadable data on a node would be)."""
    from placement_search.errors import UserError as WorkerUserError

    raise WorkerUserError("/data/videos: no readable videos for the train split")
    yield  # pragma: no cover


def latency_infeasible_trial(spec):
    yield {"event": "latency", "latency_ms": 500.0, "device": "cpu"}
    yield {"event": "infeasible", "latency_ms": 500.0, "reason": "latency 500 ms over max_latency_ms 1"}


def test_resume_with_early_stopped_trials_keeps_sampling(tmp_path):
    # multi-objective TPE sorts PRUNED trials by their intermediate values and fails; the
    # sampler's copy of a resumed study must not carry them
    url = sqlite_url(tmp_path)
    path = write_study(tmp_path, trials=3, early_stopping=True)
    path.write_text(
        path.read_text().replace('sampler = "tpe"', 'sampler = "tpe"\nsampler_options = { n_startup_trials = 1 }')
    )
    cfg = load_study_config(path)
    SearchDriver(cfg, storage=url, trial_fn=stopped_trial).run()
    assert load(url).trials[0].intermediate_values == {3: 0.25}
    r = SearchDriver(cfg, storage=url, trials=6, trial_fn=stopped_trial).run()
    assert r.counted == 6 and r.by_status["early_stopped"] == 6


def test_a_configuration_error_on_a_worker_stops_the_study_and_loses_nothing(tmp_path):
    url = sqlite_url(tmp_path)
    cfg = load_study_config(write_study(tmp_path, trials=5, evaluate_first=["all_2d"]))
    with pytest.raises(UserError, match=r"(?s)no readable videos.*queued again"):
        SearchDriver(cfg, storage=url, trial_fn=config_error_trial).run()
    trials = load(url).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # not counted as failed placements: they are queued for the next run
    assert {trial_attrs(t).get("status") for t in trials if t.state == TrialState.FAIL} == {"interrupted"}
    assert any(t.state == TrialState.WAITING and trial_attrs(t).get("named") == "all_2d" for t in trials)
    r = SearchDriver(cfg, storage=url, trials=1, trial_fn=instant_trial).run()
    (done,) = [t for t in load(url).trials if trial_attrs(t).get("status") == "ok"]
    assert r.counted == 1 and trial_attrs(done).get("named") == "all_2d"  # the queue came first


def test_latency_budget_infeasible_trials_do_not_use_up_the_budget_and_an_impossible_one_stops(tmp_path):
    from placement_search.study import driver as drv

    url = sqlite_url(tmp_path)
    # the trial times its own latency ([latency] measure = "trial"; the idle-device default is
    # tested in test_data_on_nodes.py)
    extra = '\n[constraints]\nmax_latency_ms = 1\n[latency]\nmeasure = "trial"\n'
    cfg = load_study_config(write_study(tmp_path, trials=2, extra=extra))
    r = SearchDriver(cfg, storage=url, trial_fn=latency_infeasible_trial).run()
    assert r.counted == 0 and r.by_status["infeasible"] >= drv.MAX_LATENCY_INFEASIBLE
    assert "over max_latency_ms" in r.stop_reason
    t = load(url).trials[0]
    assert t.state == TrialState.PRUNED and trial_attrs(t)["status"] == "infeasible"
    assert t.constraints["max_latency_ms"] == pytest.approx(499.0)


def test_evaluate_first_names_added_later_are_queued_on_resume(tmp_path):
    url = sqlite_url(tmp_path)
    path = write_study(tmp_path, sampler="families", evaluate_first=["all_2d"])
    SearchDriver(load_study_config(path), storage=url, trial_fn=instant_trial).run()
    path.write_text(path.read_text().replace('evaluate_first = ["all_2d"]', 'evaluate_first = ["all_2d", "all_3d"]'))
    SearchDriver(load_study_config(path), storage=url, trial_fn=instant_trial).run()
    assert [trial_attrs(t)["named"] for t in load(url).trials] == ["all_2d", "all_3d"]


def spec_echo_trial(spec):
    """Reports, as its accuracy, whether the early-stopping rule was sent with the trial."""
    gen = instant_trial(spec)
    started, final = next(gen), next(gen)
    final["result"]["accuracy"] = 1.0 if "early_stopping" in spec else 0.0
    yield started
    yield final


def test_named_placements_run_their_whole_budget(tmp_path):
    url = sqlite_url(tmp_path)
    cfg = load_study_config(write_study(tmp_path, trials=3, evaluate_first=["all_2d"], early_stopping=True))
    SearchDriver(cfg, storage=url, trial_fn=spec_echo_trial).run()
    named = [trial_attrs(t)["accuracy"] for t in load(url).trials if trial_attrs(t).get("named")]
    sampled = [trial_attrs(t)["accuracy"] for t in load(url).trials if not trial_attrs(t).get("named")]
    assert named == [0.0] and sampled == [1.0, 1.0]


def test_trial_slots_follow_the_cluster_as_nodes_join(tmp_path, monkeypatch):
    """A cluster that grows from 1 to 3 trial slots (a node joined): the driver keeps 3 trials
    in flight from then on, and says so."""
    from placement_search.study import driver as driver_mod
    from placement_search.study.executor import InlineExecutor

    class Growing(InlineExecutor):
        calls = 0
        most = 0

        def slots(self) -> int:
            Growing.calls += 1
            return 1 if Growing.calls == 1 else 3

        def wait(self, handles, timeout):
            Growing.most = max(Growing.most, len(handles))
            return handles[:1]

    monkeypatch.setattr(driver_mod, "SLOTS_EVERY_S", 0.0)
    events = []
    cfg = load_study_config(write_study(tmp_path, trials=8))
    SearchDriver(
        cfg, storage=sqlite_url(tmp_path), executor=Growing(instant_trial), on_event=lambda k, i: events.append((k, i))
    ).run()
    assert Growing.most == 3
    assert ("slots", {"from": 1, "to": 3}) in events


def test_samplers_that_ignore_pruned_trials_see_early_stopped_runs_as_their_accuracy_when_stopped(tmp_path):
    """NSGA-II (like GP and costaware) learns from COMPLETE trials only: with most runs stopped
    early, its first generation would never fill and it would sample at random for ever. Its
    copy of the study shows a stopped run as COMPLETE with the accuracy it stopped at (also after
    a resume); the stored trial stays PRUNED, and TPE, which reads PRUNED trials, sees them so."""
    from optuna.trial import TrialState

    url = sqlite_url(tmp_path)
    path = write_study(tmp_path, sampler="nsga2", trials=12)
    path.write_text(
        path.read_text().replace('sampler = "nsga2"', 'sampler = "nsga2"\nsampler_options = { population_size = 4 }')
    )
    cfg = load_study_config(path)
    drv = SearchDriver(cfg, storage=url, trial_fn=stopped_trial, executor="inline")
    drv.run()
    stored = [t for t in load(url).trials if trial_attrs(t).get("status") == "early_stopped"]
    assert len(stored) == 12 and all(t.state == TrialState.PRUNED for t in stored)
    mirror = [t for t in drv.proposer.mirror.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    assert len(mirror) == 12 and all(t.values[0] == 0.25 for t in mirror)
    generations = {t.system_attrs.get("NSGAIISampler:generation") for t in mirror}
    assert max(g for g in generations if g is not None) >= 1  # it bred past its first generation
    again = SearchDriver(cfg, storage=url, trials=14, trial_fn=stopped_trial, executor="inline")
    again.run()
    seen = again.proposer.history
    assert sum(1 for t in seen if t.state == TrialState.COMPLETE and t.values[0] == 0.25) >= 12
    (tmp_path / "tpe").mkdir()
    tpe = write_study(tmp_path / "tpe", trials=6, sampler="tpe")
    drv = SearchDriver(
        load_study_config(tpe), storage=sqlite_url(tmp_path / "tpe"), trial_fn=stopped_trial, executor="inline"
    )
    drv.run()
    assert {t.state for t in drv.proposer.mirror.get_trials(deepcopy=False)} == {TrialState.PRUNED}
