"""A study written by an earlier release (tests/fixtures/old_study) opens, reads, resumes and
exports with today's code: its trials keep every result as its own attribute, today's keep them
in one ``result`` attribute, and every reader sees both the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_search_driver import instant_trial

from placement_search.architecture import load_architecture, read_architecture
from placement_search.cli import main as cli_main
from placement_search.study import SearchDriver, load_study_config
from placement_search.study.records import RESULT, trial_attrs, trial_status

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "old_study"


@pytest.fixture
def old(tmp_path: Path) -> tuple[Path, str]:
    for f in ("fixture.db", "fixture.toml"):
        shutil.copy(FIXTURE / f, tmp_path / f)
    return tmp_path, f"sqlite:///{tmp_path / 'fixture.db'}"


def test_the_old_study_reads_as_it_was_written(old, capsys):
    _folder, url = old
    study = optuna.load_study(study_name="fixture", storage=url)
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert all(RESULT not in t.user_attrs and "accuracy" in t.user_attrs for t in trials)  # the old layout
    for t in trials:
        assert trial_status(t) == "ok" and trial_attrs(t)["accuracy"] == t.values[0]
    assert [trial_attrs(t)["named"] for t in trials[:2]] == ["all_2d", "all_3d"]
    assert cli_main(["pareto", "--storage", url, "--study", "fixture", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["trial"] for r in rows} == {t.number for t in study.best_trials}
    assert all(r["accuracy"] == trials[r["trial"]].values[0] for r in rows)
    assert cli_main(["status", "--storage", url, "--study", "fixture", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counted"] == 4


def test_the_old_study_resumes_in_the_new_layout(old):
    folder, url = old
    cfg = load_study_config(folder / "fixture.toml")
    result = SearchDriver(cfg, storage=url, trials=6, executor="inline", trial_fn=instant_trial).run()
    assert not result.created and result.counted == 6
    trials = optuna.load_study(study_name="fixture", storage=url).get_trials()
    assert [RESULT in t.user_attrs for t in trials] == [False] * 4 + [True] * 2
    keys = {json.dumps(trial_attrs(t)["placement"], sort_keys=True) for t in trials}
    assert len(keys) == 6  # the old trials' placements are known to the resumed driver: none trained twice


def test_the_old_study_exports(old, tmp_path):
    _folder, url = old
    out = tmp_path / "exported"
    assert cli_main(["export", "--storage", url, "--study", "fixture", "--pareto", "-o", str(out)]) == 0
    folders = sorted(out.iterdir())
    assert folders
    for f in folders:
        arch = read_architecture(f / "arch.json")
        model = load_architecture(f)
        assert sum(p.numel() for p in model.parameters()) > 0 and arch.placement is not None
