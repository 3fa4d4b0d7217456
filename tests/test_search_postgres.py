"""The study storage with a real PostgreSQL server: a small study end to end, its resume, and
``placement-search pareto`` against it.

The server is a throw-away one started for the session (see ``tests/pg_server.py``), or the one
in ``$PLACEMENT_SEARCH_TEST_POSTGRES_URL``. Without PostgreSQL the tests skip, saying what is
missing. Trials really train (tiny space, 6 steps on 8x16x16 synthetic clips) on the shared
local Ray instance of ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from search_helpers import write_study

optuna = pytest.importorskip("optuna", reason="optuna is a dependency of placement-search; install the package")
from optuna.study import StudyDirection  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from placement_search.cli import main as cli_main  # noqa: E402
from placement_search.space import load_space  # noqa: E402
from placement_search.study import SearchDriver, load_study_config  # noqa: E402
from placement_search.study.records import trial_attrs  # noqa: E402
from placement_search.study.storage import COUNTED, trial_status  # noqa: E402


def _counted(trials: list) -> list:
    return [t for t in trials if trial_status(t) in COUNTED]


@pytest.fixture(scope="module")
def pg_study(
    postgres_url: str, ray_local: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimpleNamespace]:
    """A 3-trial study run through the driver (on the shared Ray instance, which it reuses) into
    PostgreSQL; ``trials`` is what the study held then."""
    name = f"pg-e2e-{uuid.uuid4().hex[:8]}"  # unique: an external server may hold earlier runs
    folder: Path = tmp_path_factory.mktemp("pg-study")
    cfg = load_study_config(write_study(folder, name=name, trials=3, evaluate_first=["all_2d"]))
    result = SearchDriver(cfg, storage=postgres_url).run()
    study = optuna.load_study(study_name=name, storage=postgres_url)
    yield SimpleNamespace(url=postgres_url, name=name, folder=folder, result=result, trials=study.get_trials())
    try:
        optuna.delete_study(study_name=name, storage=postgres_url)
    except Exception:
        pass  # a throw-away server goes anyway


def test_study_end_to_end_in_postgres_is_plain_optuna(pg_study: SimpleNamespace) -> None:
    r = pg_study.result
    assert r.created and not r.interrupted and r.counted == 3, r
    assert r.storage.startswith("postgresql+psycopg2://")

    study = optuna.load_study(study_name=pg_study.name, storage=pg_study.url)
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    assert study.metric_names == ["accuracy", "macs"]

    trials = pg_study.trials
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    ok = [t for t in trials if trial_attrs(t).get("status") == "ok"]
    assert len(ok) == 3 and len(_counted(trials)) == 3, [
        (t.number, t.state, trial_attrs(t).get("status")) for t in trials
    ]
    # anything else may only be a free re-use of an already trained placement
    assert all(trial_attrs(t).get("status") in ("ok", "reused") for t in trials)
    for t in ok:
        ua = trial_attrs(t)
        assert t.state == TrialState.COMPLETE
        assert isinstance(ua["placement"], dict) and ua["placement"]
        assert isinstance(ua["placement_string"], str) and ua["placement_string"]
        assert isinstance(ua["macs"], int) and ua["macs"] > 0
        assert ua["flops"] == 2 * ua["macs"]
        assert isinstance(ua["params"], int) and ua["params"] > 0
        assert 0.0 <= ua["accuracy"] <= 1.0
        assert t.values[0] == pytest.approx(ua["accuracy"])
        assert t.values[1] == ua["macs"]
        assert set(t.params) == {"stem", "layer1.0", "layer2.0", "layer3.0", "layer4.0"}
    named = [t for t in trials if trial_attrs(t).get("named") == "all_2d"]
    assert len(named) == 1 and trial_attrs(named[0])["status"] == "ok", named
    assert trial_attrs(named[0])["placement"] == load_space("tiny").named["all_2d"].placement.to_dict()


def test_running_again_resumes_the_postgres_study(pg_study: SimpleNamespace) -> None:
    cfg = load_study_config(write_study(pg_study.folder, name=pg_study.name, trials=5, evaluate_first=["all_2d"]))
    result = SearchDriver(cfg, storage=pg_study.url).run()
    assert not result.created and not result.interrupted and result.counted == 5, result
    assert result.recovered == 0

    trials = optuna.load_study(study_name=pg_study.name, storage=pg_study.url).get_trials()
    counted = _counted(trials)
    assert len(counted) == 5 and all(t.state == TrialState.COMPLETE for t in counted)
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    if len(trials) == 5:  # no free re-use of a placement in between (the usual case)
        assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    # the first run's trials are unchanged
    by_number = {t.number: t for t in trials}
    for old in pg_study.trials:
        new = by_number[old.number]
        assert (new.state, new.values, new.params) == (old.state, old.values, old.params)
        assert new.user_attrs == old.user_attrs
        assert new.datetime_complete == old.datetime_complete
    # and the resumed run did not train an already trained placement again
    keys = [json.dumps(trial_attrs(t)["placement"], sort_keys=True) for t in counted]
    assert len(set(keys)) == len(keys)


def test_pareto_cli_reads_the_postgres_study(pg_study: SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    rc = cli_main(["pareto", "--storage", pg_study.url, "--study", pg_study.name, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list) and rows
    trials = {t.number: t for t in optuna.load_study(study_name=pg_study.name, storage=pg_study.url).get_trials()}
    for row in rows:
        assert {"trial", "placement", "accuracy", "macs"} <= set(row)
        t = trials[row["trial"]]
        assert t.state == TrialState.COMPLETE
        assert row["placement"] == trial_attrs(t)["placement_string"]
        assert row["macs"] == trial_attrs(t)["macs"]
        assert row["accuracy"] == pytest.approx(t.values[0])
    # cheapest first, and no row dominated by another
    assert [r["macs"] for r in rows] == sorted(r["macs"] for r in rows)
    for a in rows:
        assert not any(
            b["accuracy"] >= a["accuracy"]
            and b["macs"] <= a["macs"]
            and (b["accuracy"], b["macs"]) != (a["accuracy"], a["macs"])
            for b in rows
        )


def test_pareto_cli_names_a_missing_study(postgres_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    rc = cli_main(["pareto", "--storage", postgres_url, "--study", "no-such-study-here", "--json"])
    _, err = capsys.readouterr()
    assert rc == 2 and "no study 'no-such-study-here'" in err
