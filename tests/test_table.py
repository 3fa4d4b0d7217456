"""The ground-truth table: sub-space enumeration, the [table] section, building on real Ray and
SQLite (with a trainer that returns at once), the CSV round trip, the table evaluator behind the
real driver, and the grid sampler."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest
import ray.cloudpickle
from search_helpers import sqlite_url, write_study

from placement_search.errors import UserError
from placement_search.space import load_space
from placement_search.study import SearchDriver, load_study_config
from placement_search.study.records import trial_attrs
from placement_search.study.storage import open_storage, pareto_rows
from placement_search.study.table_build import _only, build_table, table_jobs, table_placements
from placement_search.table import COLUMNS, read_table, write_table
from placement_search.table.evaluator import TableEvaluator

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

TABLE = """
[table]
choices = ["2d", "3d"]
seeds = 2

[table.reference]
steps = 12
seeds = [7]
eval_clips = 33
"""


def two_kind_space(folder: Path) -> Path:
    """The tiny space with two op kinds per block: 2^5 = 32 placements."""
    text = (Path(__file__).resolve().parents[1] / "search_spaces" / "tiny.toml").read_text()
    text = text.replace('name = "tiny"', 'name = "tiny2"').replace('["2d", "3d", "sep", "2plus1d"]', '["2d", "3d"]')
    path = folder / "tiny2.toml"
    path.write_text(text)
    return path


# -- sub-spaces and jobs ------------------------------------------------------------------------


def test_sub_space_sizes():
    space = load_space("tiny")
    # 5 decisions: 3^5 with three op kinds, 4^5 with all four, 1 with only 2d
    assert len(table_placements(space, ("2d", "3d", "sep"))) == 3**5
    assert len(table_placements(space, None)) == 4**5
    only = table_placements(space, ("2d",))
    assert [space.placement_string(p) for p in only] == ["2d 2d 2d 2d 2d"]
    with pytest.raises(UserError, match="leaves group 'stem' no choice"):
        table_placements(space, ("mystery",))


def test_jobs_order(tmp_path):
    cfg = load_study_config(write_study(tmp_path, extra=TABLE))
    space = load_space("tiny")
    jobs = table_jobs(cfg, space)
    # 32 placements x (2 proxy seeds + 1 reference seed)
    assert len(jobs) == 32 * 3
    assert [j.budget for j in jobs] == ["proxy"] * 64 + ["reference"] * 32
    assert [j.seed for j in jobs[:64]] == [0] * 32 + [1] * 32 and {j.seed for j in jobs[64:]} == {7}
    # each seed covers every placement once, in the same fixed shuffled order (not by cost, so
    # that a table stopped part-way through a budget holds a uniform sample of the space)
    order = [j.placement_string for j in jobs[:32]]
    assert len(set(order)) == 32 and order == [j.placement_string for j in jobs[32:64]]
    assert order == [j.placement_string for j in table_jobs(cfg, space)[:32]]  # reproducible
    macs = [j.proxy_macs for j in jobs[:32]]
    assert macs != sorted(macs) and macs != sorted(macs, reverse=True)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ("[table]\nchoise = 1\n", "unknown field 'choise'"),
        ('[table]\nchoices = "2d"\n', "choices: expected a list of op kinds"),
        ("[table]\nseeds = 0\n", "seeds: expected a positive number of seeds"),
        ("[table]\nseeds = [1, 1]\n", "distinct seeds"),
        ("[table.reference]\nsteps = 0\n", r"\[table\].reference"),
        ("[table.reference]\nsize = 2.5\n", r"reference.size: expected an integer"),
        ("[table.reference]\nwings = 2\n", "unknown field 'wings'"),
        ("[table.proxy]\nsteps = 9\n", "not 'proxy'"),
        ("[table.Long-Run]\nsteps = 9\n", "a budget's name is lower-case"),
    ],
)
def test_table_config_errors(tmp_path, extra, match):
    with pytest.raises(UserError, match=match):
        load_study_config(write_study(tmp_path, extra=extra))


def test_reference_budget_overrides(tmp_path):
    cfg = load_study_config(write_study(tmp_path, extra=TABLE))
    proxy, ref = cfg.table.budgets
    assert (proxy.name, proxy.seeds, proxy.proxy.steps, proxy.data.eval_clips) == ("proxy", (0, 1), 6, 22)
    assert (ref.name, ref.seeds, ref.proxy.steps, ref.data.eval_clips) == ("reference", (7,), 12, 33)
    assert ref.proxy.batch_size == proxy.proxy.batch_size  # not overridden: the proxy's


def test_candidate_budgets_come_between_the_proxy_and_the_reference(tmp_path):
    extra = TABLE.replace("[table.reference]", "[table.long]\nsteps = 9\nsize = 40\n\n[table.reference]")
    cfg = load_study_config(write_study(tmp_path, extra=extra))
    assert [b.name for b in cfg.table.budgets] == ["proxy", "long", "reference"]
    long = cfg.table.budget("long")
    assert (long.seeds, long.proxy.steps, long.data.size, long.data.eval_clips) == ((0,), 9, 40, 22)
    space = load_space(two_kind_space(tmp_path))
    jobs = table_jobs(cfg, space)
    assert [j.budget for j in jobs] == ["proxy"] * 64 + ["long"] * 32 + ["reference"] * 32


# -- CSV round trip -------------------------------------------------------------------------------


def _row(placement: str, budget: str, seed: int, acc: float, groups: list[str], **kw) -> dict:
    row = {c: "" for c in COLUMNS}
    row.update(
        space="tiny2",
        placement=placement,
        budget=budget,
        seed=seed,
        status="ok",
        accuracy=acc,
        params=1000,
        macs_target=kw.get("macs", 10**9),
        flops_target=2 * kw.get("macs", 10**9),
        macs_proxy=10**6,
        steps=kw.get("steps", 6),
        wall_time_s=kw.get("wall", 2.0),
        train_time_s=kw.get("train", 1.5),
        eval_curve=kw.get("curve", [[3, acc / 2], [kw.get("steps", 6), acc]]),
        per_class={"square": acc},
        trial=0,
    )
    for g, tok in zip(groups, placement.split()):
        row[f"op:{g}"] = tok
    row["family:appearance"] = acc
    return row


def test_csv_round_trip(tmp_path):
    groups = ["stem", "layer1.0"]
    rows = [
        _row("2d 3d", "proxy", 0, 0.5, groups, macs=123456789012, curve=[[3, 0.25], [6, 0.5]]),
        _row("2d 3d", "proxy", 1, 0.7, groups),
        _row("3d 3d", "reference", 0, 0.9, groups, steps=30, wall=10.5, train=9.25),
    ]
    path = tmp_path / "t.csv"
    assert write_table(path, rows, groups, ["appearance"]) == 3
    t = read_table(path)
    assert t.space == "tiny2" and t.groups == ("stem", "layer1.0") and t.families == ("appearance",)
    assert t.budgets == ["proxy", "reference"]
    assert t.placements() == ["2d 3d", "3d 3d"]
    assert t.placements("reference") == ["3d 3d"]
    assert t.seeds("proxy") == [0, 1]
    r = t.row("2d 3d", "proxy", 0)
    assert r.ops == ("2d", "3d") and r.macs_target == 123456789012 and r.eval_curve == ((3, 0.25), (6, 0.5))
    assert r.per_class == {"square": 0.5} and r.families == {"appearance": 0.5}
    mean, std, n = t.stats("2d 3d", "proxy")
    assert (round(mean, 9), round(std, 9), n) == (0.6, round((0.02) ** 0.5, 9), 2)  # sample std of 0.5, 0.7
    ref = t.row("3d 3d", "reference", 0)
    assert (ref.steps, ref.wall_time_s, ref.train_time_s) == (30, 10.5, 9.25)


def test_csv_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("placement,accuracy\n2d,0.5\n")
    with pytest.raises(UserError, match="not a placement-search table"):
        read_table(bad)
    with pytest.raises(UserError, match="cannot read"):
        read_table(tmp_path / "missing.csv")
    groups = ["stem"]
    good = tmp_path / "good.csv"
    write_table(good, [_row("2d", "proxy", 0, 0.5, groups)], groups, [])
    text = good.read_text().replace(",0.5,", ",half,", 1)
    good.write_text(text)
    with pytest.raises(UserError, match="line 3: accuracy: expected a number"):
        read_table(good)


# -- building on Ray -----------------------------------------------------------------------------


def formula_trial(spec):
    """A trainer that returns at once: accuracy from the placement and the trainer seed."""
    temporal = sum(1 for c in spec["placement"]["positions"].values() if c["op"] != "2d")
    acc = round(0.1 + 0.05 * temporal + 0.01 * spec["proxy"]["seed"], 6)
    steps = spec["proxy"]["steps"]
    yield {"event": "started", "host": "test", "pid": 0, "device": "cpu"}
    yield {
        "event": "result",
        "result": {
            "status": "ok",
            "accuracy": acc,
            "top5": None,
            "eval_loss": 1.0,
            "eval_curve": [[steps // 2, acc / 2], [steps, acc]],
            "loss_curve": [],
            "per_class_accuracy": {"square": acc, "disk": acc},
            "steps_done": steps,
            "clips_per_s": 0.0,
            "train_time_s": 0.5,
            "device": "cpu",
            "precision": "fp32",
        },
        "stopped_by": [],
    }


@pytest.mark.usefixtures("ray_local")
def test_build_resume_and_export(tmp_path):
    space_file = two_kind_space(tmp_path)
    study = write_study(tmp_path, extra=TABLE).read_text().replace('space = "tiny"', f'space = "{space_file}"')
    (tmp_path / "t.toml").write_text(study)
    cfg = load_study_config(tmp_path / "t.toml")
    url = sqlite_url(tmp_path)
    first = build_table(cfg, storage=url, max_runs=40, trial_fn=formula_trial)
    assert (first.total, first.done_before, first.done, first.failed) == (96, 0, 40, 0)
    again = build_table(cfg, storage=url, trial_fn=formula_trial)  # resumes: only the other 56
    assert (again.done_before, again.done) == (40, 56)
    assert build_table(cfg, storage=url, trial_fn=formula_trial).stop_reason == "the table is complete"

    import optuna

    st = optuna.load_study(study_name="small", storage=open_storage(url, create=False))
    assert len(st.trials) == 96  # each run once
    from placement_search.inspect.table_export import export_table

    out = export_table(st, tmp_path / "out" / "table.csv")
    assert out["rows"] == 96 and (tmp_path / "out" / "table.md").is_file()
    t = read_table(tmp_path / "out" / "table.csv")
    assert t.budgets == ["proxy", "reference"] and len(t.placements(complete=True)) == 32
    assert t.seeds("proxy") == [0, 1] and t.seeds("reference") == [7]
    # every accuracy is the formula's, so nothing was mixed up between runs
    for r in t.rows:
        temporal = (r.ops[0] != "2d") + 2 * sum(op != "2d" for op in r.ops[1:])  # positions: stem, 2 per block
        assert r.accuracy == pytest.approx(0.1 + 0.05 * temporal + 0.01 * r.seed)
        assert r.families["appearance"] == pytest.approx(r.accuracy)
    # another sitting, on another machine: a new study grows from the exported CSV
    other = sqlite_url(tmp_path, "other.db")
    cont = build_table(cfg, storage=other, seed_table=t, max_runs=1, trial_fn=formula_trial)
    assert (cont.imported, cont.done_before, cont.done) == (96, 96, 0)
    st2 = optuna.load_study(study_name="small", storage=open_storage(other, create=False))
    assert len(st2.trials) == 96 and all(trial_attrs(tr)["imported_from"].endswith("table.csv") for tr in st2.trials)
    assert sorted(tr.values[0] for tr in st2.trials) == sorted(tr.values[0] for tr in st.trials)
    # a budget redefined under the same name is refused (its rows would not be comparable)
    changed = (tmp_path / "t.toml").read_text().replace("steps = 12", "steps = 13")
    (tmp_path / "t.toml").write_text(changed)
    with pytest.raises(UserError, match="budget 'reference' was built with a different proxy"):
        build_table(load_study_config(tmp_path / "t.toml"), storage=url, trial_fn=formula_trial)
    with pytest.raises(UserError, match="budget 'reference' of the table was trained with other settings"):
        build_table(load_study_config(tmp_path / "t.toml"), storage=sqlite_url(tmp_path, "third.db"), seed_table=t)


@pytest.mark.usefixtures("ray_local")
def test_build_only_listed_placements_in_their_order(tmp_path, capsys):
    """``--placements FILE``: only the listed placements' runs, budgets and seeds in the table's
    order, within each the file's; a name that is not a placement of the table is a clear error."""
    space_file = two_kind_space(tmp_path)
    study = write_study(tmp_path, extra=TABLE).read_text().replace('space = "tiny"', f'space = "{space_file}"')
    (tmp_path / "t.toml").write_text(study)
    listed = ["3d 3d 2d 2d 2d", "2d 2d 2d 2d 3d"]  # stem, then one token a block (block-tied)
    (tmp_path / "front.txt").write_text(f"# near the front\n{listed[0]}\n\n  2d  2d 2d 2d   3d  # spaces collapse\n")
    url = sqlite_url(tmp_path)
    from placement_search.cli.main import main

    argv = ["table", "build", str(tmp_path / "t.toml"), "--storage", url, "--placements", str(tmp_path / "front.txt")]
    cfg = load_study_config(tmp_path / "t.toml")
    # the real trainer is not wanted here: the library call takes the test's formula trainer
    from placement_search.cli.table import _read_placements

    got = build_table(
        cfg, storage=url, trial_fn=formula_trial, placements=_read_placements(str(tmp_path / "front.txt"))
    )
    assert (got.done_before, got.done, got.failed) == (0, 6, 0)  # 2 placements x (2 proxy seeds + 1 reference)
    import optuna

    st = optuna.load_study(study_name="small", storage=open_storage(url, create=False))
    ran = sorted(
        (trial_attrs(t)["budget"], trial_attrs(t)["seed"], trial_attrs(t)["placement_string"]) for t in st.trials
    )
    assert ran == sorted((b, s_, p) for b, s_ in [("proxy", 0), ("proxy", 1), ("reference", 7)] for p in listed)
    # the order they start in (two at a time on Ray, so finishing order may differ)
    jobs = table_jobs(cfg, load_space(space_file))
    order = [(j.budget, j.seed, j.placement_string) for j in _only(jobs, [(p, "x") for p in listed])]
    assert order == [(b, s_, p) for b, s_ in [("proxy", 0), ("proxy", 1), ("reference", 7)] for p in listed]
    back = [j.placement_string for j in _only(jobs, [(p, "x") for p in reversed(listed)])]
    assert back == [*reversed(listed)] * 3  # the file's order, not the table's shuffle
    again = build_table(cfg, storage=url, trial_fn=formula_trial, placements=[(listed[1], "x")])
    assert (again.done, again.stop_reason) == (0, "the listed placements' runs are done")
    (tmp_path / "bad.txt").write_text(f"{listed[0]}\n2d 4d 2d 2d 2d\n")
    assert main([*argv[:-1], str(tmp_path / "bad.txt")]) == 2
    err = capsys.readouterr().err
    assert "bad.txt, line 2: '2d 4d 2d 2d 2d' is not a placement of this table" in err and "Traceback" not in err
    (tmp_path / "empty.txt").write_text("# nothing\n")
    assert main([*argv[:-1], str(tmp_path / "empty.txt")]) == 2
    assert "no placements in it" in capsys.readouterr().err


# -- the table evaluator behind the real driver ----------------------------------------------------


def _handmade_table(tmp_path: Path, space) -> tuple[Path, dict[str, float]]:
    """Accuracy of every placement of the 2-kind space: temporal ops help, most in the stem and
    in layer4 (a front with several points); two seeds that agree."""
    groups = [g.name for g in space.groups]
    acc = {}
    rows = []
    for combo in itertools.product(["2d", "3d"], repeat=5):
        p = " ".join(combo)
        t = [c == "3d" for c in combo]
        a = round(0.2 + 0.3 * t[0] + 0.25 * t[4] + 0.02 * sum(t[1:4]), 6)
        acc[p] = a
        for seed in (0, 1):
            rows.append(_row(p, "proxy", seed, a, groups, curve=[[3, a / 2], [6, a]]))
    path = tmp_path / "hand.csv"
    write_table(path, rows, groups, ["appearance"])
    return path, acc


@pytest.mark.usefixtures("ray_local")
def test_table_evaluator_gives_the_expected_front(tmp_path):
    space_file = two_kind_space(tmp_path)
    space = load_space(str(space_file))
    table, acc = _handmade_table(tmp_path, space)
    study = write_study(tmp_path, sampler="grid", trials=32).read_text()
    study = study.replace('space = "tiny"', f'space = "{space_file}"').replace(
        "[proxy]\n", f'[proxy]\nevaluator = "table:{table.name}"\n'
    )
    (tmp_path / "replay.toml").write_text(study)
    cfg = load_study_config(tmp_path / "replay.toml")
    assert cfg.evaluator == f"table:{table}"
    url = sqlite_url(tmp_path)
    r = SearchDriver(cfg, storage=url).run()
    assert r.counted == 32 and r.by_status.get("ok") == 32  # the grid: every placement once
    # the expected front, by brute force over the handmade accuracies and exact MACs
    costs = space.costs(frames=16, size=112, num_classes=400)
    points = {p: (acc[p], costs.cost(space.from_group_tokens(p.split()))[0]) for p in acc}
    front = {
        p
        for p, (a, m) in points.items()
        if not any((a2 >= a and m2 <= m) and (a2 > a or m2 < m) for a2, m2 in points.values())
    }
    import optuna

    st = optuna.load_study(study_name="small", storage=open_storage(url, create=False))
    got = {row["placement"] for row in pareto_rows(st)}
    assert got == front and len(front) >= 3
    for t in st.trials:  # results came from the table: its accuracy, a seed it holds, its curve
        assert trial_attrs(t)["accuracy"] == pytest.approx(acc[trial_attrs(t)["placement_string"]])
        assert trial_attrs(t)["device"].startswith("table:")
        assert t.intermediate_values == {3: pytest.approx(acc[trial_attrs(t)["placement_string"]] / 2)}


def test_evaluator_seed_draw_is_reproducible_and_uses_every_seed(tmp_path):
    groups = ["stem"]
    rows = [_row("3d", "proxy", s, 0.1 * (s + 1), groups) for s in (0, 1, 2)]
    path = tmp_path / "t.csv"
    write_table(path, rows, groups, [])
    ev = TableEvaluator(read_table(path))
    seeds = [ev.seed_for("3d", draw) for draw in range(300)]
    assert seeds == [ev.seed_for("3d", draw) for draw in range(300)]
    assert all(seeds.count(s) > 60 for s in (0, 1, 2))  # roughly uniform (expected 100 each)
    assert ev.result("2d", 0) is None
    r = ev.result("3d", 5)
    assert r["accuracy"] == pytest.approx(0.1 * (r["table_seed"] + 1))
    with pytest.raises(UserError, match="no budget 'reference'"):
        TableEvaluator(read_table(path), "reference")


def test_evaluator_field_errors(tmp_path):
    study = write_study(tmp_path).read_text().replace("[proxy]\n", '[proxy]\nevaluator = "table:nope.csv"\n')
    (tmp_path / "s.toml").write_text(study)
    with pytest.raises(UserError, match="evaluator: no such table file"):
        load_study_config(tmp_path / "s.toml")
    (tmp_path / "s.toml").write_text(study.replace("table:nope.csv", "lookup"))
    with pytest.raises(UserError, match='expected "train" or "table:PATH"'):
        load_study_config(tmp_path / "s.toml")


# -- the grid sampler --------------------------------------------------------------------------


@pytest.mark.usefixtures("ray_local")
def test_grid_sampler_evaluates_every_placement_once(tmp_path):
    from test_search_driver import instant_trial

    space_file = two_kind_space(tmp_path)
    study = write_study(tmp_path, sampler="grid", trials=100, evaluate_first=["all_3d"]).read_text()
    (tmp_path / "g.toml").write_text(study.replace('space = "tiny"', f'space = "{space_file}"'))
    cfg = load_study_config(tmp_path / "g.toml")
    url = sqlite_url(tmp_path)
    r = SearchDriver(cfg, storage=url, trial_fn=instant_trial).run()
    assert r.stop_reason == "every placement of the space has been evaluated"
    import optuna

    st = optuna.load_study(study_name="small", storage=open_storage(url, create=False))
    trained = [trial_attrs(t)["placement_string"] for t in st.trials if trial_attrs(t).get("status") == "ok"]
    assert len(trained) == 32 and len(set(trained)) == 32
    assert json.loads(json.dumps(r.by_status)).get("ok") == 32
