"""``placement-search status / studies / pareto`` on a real study, and their errors."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pytest
import ray.cloudpickle
from search_helpers import sqlite_url, write_study
from test_search_driver import instant_trial

from placement_search.cli import main
from placement_search.study import SearchDriver, load_study_config
from placement_search.study.records import trial_attrs

ray.cloudpickle.register_pickle_by_value(sys.modules["test_search_driver"])


@pytest.fixture(scope="module")
def study_db(tmp_path_factory, ray_local):
    folder = tmp_path_factory.mktemp("cli")
    url = sqlite_url(folder)
    cfg = load_study_config(write_study(folder, trials=6, evaluate_first=["all_2d", "all_3d"]))
    SearchDriver(cfg, storage=url, trial_fn=instant_trial).run()
    return url


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_pareto_json_lists_the_front(study_db, capsys):
    rows = run_json(capsys, "pareto", "--storage", study_db, "--study", "small", "--json")
    study = optuna.load_study(study_name="small", storage=study_db)
    assert {r["trial"] for r in rows} == {t.number for t in study.best_trials if trial_attrs(t)["status"] != "reused"}
    for r in rows:
        assert {"trial", "placement", "accuracy", "macs", "params"} <= set(r)
        t = study.trials[r["trial"]]
        assert r["accuracy"] == t.values[0] and r["macs"] == t.values[1] == trial_attrs(t)["macs"]
        assert r["placement"] == trial_attrs(t)["placement_string"]
    # all_2d is the cheapest placement of the space: always on the front, listed first
    assert rows[0]["placement"] == "2d 2d 2d 2d 2d" and rows[0]["named"] == "all_2d"


def test_status_and_studies(study_db, capsys):
    st = run_json(capsys, "status", "--storage", study_db, "--study", "small", "--json")
    assert st["study"] == "small" and st["space"] == "tiny" and st["counted"] == 6
    assert [o["name"] for o in st["objectives"]] == ["accuracy", "macs"]
    assert st["objectives"][0]["direction"] == "maximize" and st["pareto_size"] >= 1
    studies = run_json(capsys, "studies", "--storage", study_db, "--json")
    assert [s["study"] for s in studies] == ["small"] and studies[0]["trials"] >= 6
    assert main(["status", "--storage", study_db, "--study", "small"]) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and "ok 6" in out
    assert main(["pareto", "--storage", study_db, "--study", "small"]) == 0
    assert "2d 2d 2d 2d 2d" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["status", "--study", "nope"], "no study 'nope'"),
        (["pareto", "--study", "nope"], "no study 'nope'"),
    ],
)
def test_unknown_study_is_a_clear_error(study_db, capsys, argv, message):
    assert main([argv[0], "--storage", study_db, *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert message in err and "small" in err  # lists the studies there are


def test_missing_sqlite_file_is_not_created(tmp_path):
    db = tmp_path / "typo.db"
    r = subprocess.run(
        [sys.executable, "-m", "placement_search", "studies", "--storage", f"sqlite:///{db}"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "no such SQLite file" in r.stderr and "Traceback" not in r.stderr
    assert not db.exists()


def test_unreachable_postgres_is_a_clear_error():
    r = subprocess.run(
        [sys.executable, "-m", "placement_search", "studies", "--storage", "postgresql+psycopg2://u@127.0.0.1:9/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "cannot open" in r.stderr and "Traceback" not in r.stderr


def test_a_url_whose_driver_is_missing_is_a_clear_error():
    r = subprocess.run(
        [sys.executable, "-m", "placement_search", "studies", "--storage", "postgresql://u@127.0.0.1:9/x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "postgresql+psycopg2" in r.stderr
