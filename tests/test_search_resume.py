"""Crash safety: ``kill -9`` of the driver loses no completed trial and leaves none RUNNING after a
resume; Ctrl-C cancels running trials, records them and exits 130. Real driver processes, real
local Ray, real SQLite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from search_helpers import sqlite_url, write_study

from placement_search.study import SearchDriver, load_study_config
from placement_search.study.records import trial_attrs

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# a proxy of ~1-2 s per trial, so that the driver is caught with trials running
SLOWER = [("steps = 6", "steps = 40"), ("eval_every = 3", "eval_every = 20")]


def _study(tmp_path: Path, trials: int) -> Path:
    path = write_study(tmp_path, trials=trials, evaluate_first=["all_2d", "all_3d"])
    text = path.read_text()
    for a, b in SLOWER:
        text = text.replace(a, b)
    path.write_text(text)
    return path


def _start(path: Path, url: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "placement_search", "run", str(path), "--storage", url],
        cwd=path.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal job
    )


def _trials(url: str) -> list:
    try:
        return optuna.load_study(study_name="small", storage=url).get_trials()
    except KeyError:
        return []


def _wait_for(url: str, proc: subprocess.Popen, complete: int, running: int, limit: float = 120.0) -> list:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if proc.poll() is not None:
            pytest.fail(f"the driver ended early ({proc.returncode}):\n{proc.stdout.read() if proc.stdout else ''}")
        trials = _trials(url)
        states = [t.state for t in trials]
        if states.count(TrialState.COMPLETE) >= complete and states.count(TrialState.RUNNING) >= running:
            return trials
        time.sleep(0.2)
    proc.kill()
    pytest.fail("the driver did not get going in time")


def test_kill_9_then_resume_loses_nothing_and_leaves_nothing_running(tmp_path, ray_local):
    url = sqlite_url(tmp_path)
    path = _study(tmp_path, trials=40)
    proc = _start(path, url)
    _wait_for(url, proc, complete=2, running=1)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything in its process group
    proc.wait(timeout=30)
    proc.stdout.close()
    killed = _trials(url)
    done = {t.number: t.values for t in killed if t.state == TrialState.COMPLETE}
    running = [t for t in killed if t.state == TrialState.RUNNING]
    assert len(done) >= 2 and running  # the crash left trials RUNNING

    cfg = load_study_config(path)
    target = len(done) + len(running) + 1
    result = SearchDriver(cfg, storage=url, trials=target).run()
    assert result.recovered == len(running)
    after = _trials(url)
    assert not [t for t in after if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # every completed trial is still there, unchanged
    assert {t.number: t.values for t in after if t.number in done} == done
    by_number = {t.number: t for t in after}
    for t in running:
        dead = by_number[t.number]
        assert dead.state == TrialState.FAIL and trial_attrs(dead)["status"] == "driver_died"
        # its placement was queued again and trained in the resumed run
        retry = [x for x in after if trial_attrs(x).get("retry_of") == t.number]
        assert len(retry) == 1 and retry[0].params == t.params and retry[0].state == TrialState.COMPLETE


def test_ctrl_c_cancels_running_trials_records_them_and_exits_130(tmp_path):
    url = sqlite_url(tmp_path)
    path = _study(tmp_path, trials=40)
    proc = _start(path, url)
    _wait_for(url, proc, complete=1, running=1)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Traceback" not in out and "interrupted" in out
    trials = _trials(url)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    interrupted = [t for t in trials if trial_attrs(t).get("status") == "interrupted"]
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert interrupted and all(t.state == TrialState.FAIL for t in interrupted)
    # each cancelled placement is queued for the next run
    assert sorted(trial_attrs(t)["retry_of"] for t in waiting) == sorted(t.number for t in interrupted)
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.WAITING) for t in trials)


def test_an_edited_space_file_is_caught_at_resume(tmp_path):
    """The study keeps its space file's text; resuming it with an edited file is one clear error
    (before anything trains), and the unedited file resumes."""
    import shutil

    from search_helpers import sqlite_url, write_study
    from test_search_driver import instant_trial

    from placement_search.errors import UserError
    from placement_search.space import load_space
    from placement_search.study import SearchDriver, load_study_config

    space_file = tmp_path / "myspace.toml"
    shutil.copy(load_space("tiny").path, space_file)
    study_file = write_study(tmp_path, trials=2)
    text = study_file.read_text().replace('space = "tiny"', f'space = "{space_file}"')
    study_file.write_text(text)
    url = sqlite_url(tmp_path)
    SearchDriver(load_study_config(study_file), storage=url, executor="inline", trial_fn=instant_trial).run()
    original = space_file.read_text()
    space_file.write_text(original + "\n# an edit\n")
    with pytest.raises(UserError, match=r"space file .*myspace\.toml changed since the study was created"):
        SearchDriver(
            load_study_config(study_file), storage=url, trials=3, executor="inline", trial_fn=instant_trial
        ).run()
    space_file.write_text(original)
    r = SearchDriver(
        load_study_config(study_file), storage=url, trials=3, executor="inline", trial_fn=instant_trial
    ).run()
    assert r.counted == 3
