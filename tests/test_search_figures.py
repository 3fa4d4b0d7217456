"""Figure data from first principles, the HTML report in headless Chromium, and optuna-dashboard
over HTTP on loopback."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings

import optuna
import pytest
import ray.cloudpickle
from optuna.trial import TrialState
from search_helpers import sqlite_url, write_study
from test_search_driver import instant_trial

from placement_search.inspect import figures as F
from placement_search.inspect.report import report_data
from placement_search.space import load_space
from placement_search.study import SearchDriver, load_study_config
from placement_search.study.records import trial_attrs

ray.cloudpickle.register_pickle_by_value(sys.modules["test_search_driver"])


def test_pareto_indices():
    pts = [(1, 5), (2, 2), (3, 3), (5, 1), (2, 2)]
    assert F.pareto_indices(pts) == [0, 1, 3, 4]  # (3,3) is dominated by (2,2); duplicates stay


def _study_with(values_and_tokens):
    """An in-memory study shaped like the driver's, with given (accuracy, macs, tokens) trials."""
    space = load_space("tiny")
    dists = {g.name: optuna.distributions.CategoricalDistribution(tuple(g.tokens)) for g in space.groups}
    study = optuna.create_study(directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "macs"])
    study.set_user_attr("groups", [g.name for g in space.groups])
    for acc, macs, tokens in values_and_tokens:
        p = space.from_group_tokens(tokens.split())
        study.add_trial(
            optuna.trial.create_trial(
                params=dict(zip(dists, tokens.split())),
                distributions=dists,
                values=[acc, macs],
                user_attrs={
                    "placement": p.to_dict(),
                    "placement_string": tokens,
                    "accuracy": acc,
                    "macs": macs,
                    "status": "ok",
                    "named": "all_2d" if tokens == "2d 2d 2d 2d 2d" else None,
                },
            )
        )
    return study, space


def test_heatmap_counts_op_kinds_of_pareto_trials():
    study, _ = _study_with(
        [
            (0.5, 100, "2d 2d 2d 2d 2d"),  # front
            (0.8, 200, "3d 3d 2d 2d 2d"),  # front
            (0.7, 300, "2d 2d 2d 3d 3d"),  # dominated by the previous one
            (0.9, 400, "3d sep 2d 2d 3d"),  # front
        ]
    )
    d = F.heatmap_data(study)
    assert d["pareto_trials"] == 3 and d["groups"][0] == "stem" and d["kinds"] == ["2d", "3d", "sep", "2plus1d"]
    # stem: 2d in 1 of 3 front trials, 3d in 2 of 3; layer1.0: 2d, 3d, sep once each; layer4.0: 2d 2/3, 3d 1/3
    assert d["share"][0] == pytest.approx([1 / 3, 2 / 3, 0, 0])
    assert d["share"][1] == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0])
    assert d["share"][4] == pytest.approx([2 / 3, 1 / 3, 0, 0])
    p = F.pareto_data(study)
    assert [x["trial"] for x in p["front"]] == [0, 1, 3]
    assert [x["named"] for x in p["named"]] == ["all_2d"]


def test_hypervolume_history_is_monotone_and_exact():
    study, _ = _study_with([(0.5, 100, "2d 2d 2d 2d 2d"), (0.8, 200, "3d 3d 2d 2d 2d"), (0.7, 300, "2d 2d 2d 3d 3d")])
    d = F.hypervolume_data(study)
    ref = 1.1 * 300
    assert d["reference"] == {"accuracy": 0.0, "macs": pytest.approx(ref)}
    h = [x["hypervolume"] for x in d["history"]]
    # after trial 0: box accuracy 0.5 x (1 - 100/ref); after 1: plus 0.3 x (1 - 200/ref); trial 2 adds nothing
    first = 0.5 * (1 - 100 / ref)
    second = first + (0.8 - 0.5) * (1 - 200 / ref)
    assert h == pytest.approx([first, second, second])


def test_families_data_matches_placements_not_names():
    study, space = _study_with(
        [(0.5, 100, "2d 2d 2d 2d 2d"), (0.6, 150, "3d 2d 2d 2d 2d"), (0.7, 160, "2d 2d 2d 2d 3d")]
    )
    d = F.families_data(study, space)
    bottom = {m["name"]: m for m in d["lines"]["bottom_heavy"]}
    top = {m["name"]: m for m in d["lines"]["top_heavy"]}
    # bottom_heavy_1 = 3D at the first group only; top_heavy_4 = 2D at the first four, 3D after
    assert bottom["bottom_heavy_1"]["trial"] == 1 and top["top_heavy_4"]["trial"] == 2
    assert bottom["bottom_heavy_0"]["trial"] == 0 and top["top_heavy_5"]["trial"] == 0  # both are all_2d
    assert "all_3d" in d["missing"] and "bottom_heavy_2" in d["missing"]


# -- a real study: report and dashboard ------------------------------------------------------------


@pytest.fixture(scope="module")
def study_db(tmp_path_factory, ray_local):
    folder = tmp_path_factory.mktemp("figs")
    url = sqlite_url(folder)
    cfg = load_study_config(
        write_study(folder, trials=12, evaluate_first=["all_2d", "all_3d", "all_sep", "bottom_heavy_*", "top_heavy_*"])
    )
    SearchDriver(cfg, storage=url, trial_fn=instant_trial, publish_figures=F.push_dashboard_figures).run()
    return url


def test_driver_pushes_figures_and_artifacts(study_db):
    study = optuna.load_study(study_name="small", storage=study_db)
    attrs = study._storage.get_study_system_attrs(study._study_id)
    for gid in ("pareto_front", "hypervolume", "placement_heatmap", "families"):
        assert f"dashboard:plot_data:placement_search_{gid}:0" in attrs
    t = study.trials[0]
    metas = optuna.artifacts.get_all_artifact_meta(t, storage=study._storage)
    assert {"placement.json", "curve.csv"} <= {m.filename for m in metas}


def test_report_data_and_rendering_in_headless_chromium(study_db, tmp_path):
    study = optuna.load_study(study_name="small", storage=study_db)
    data = report_data(study)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE and trial_attrs(t)["status"] != "reused"]
    assert len(data["pareto"]["points"]) == len(done)
    assert {r["trial"] for r in data["pareto_table"]} == {p["trial"] for p in data["pareto"]["front"]}
    assert data["families"]["missing"] == []  # the study evaluated the whole families
    assert data["config"]["name"] == "small"
    out = tmp_path / "report.html"
    from placement_search.cli import main

    assert main(["report", "--storage", study_db, "--study", "small", "-o", str(out)]) == 0
    text = out.read_text()
    # self-contained: plotly.js inline, nothing loaded from elsewhere
    assert "<script" in text and not re.search(r"<script[^>]*\ssrc=", text) and "<link" not in text
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("headless Chromium is not installed: apt-get install chromium (.ci/run installs it)")
    dom = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=15000",
            "--dump-dom",
            out.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    figures = re.split(r'<div class="figure" data-figure="', dom)[1:]
    assert [f.split('"')[0] for f in figures] == ["pareto_front", "families", "hypervolume", "placement_heatmap"]
    for f in figures:
        body = f.split("</h2>")[0]
        assert 'class="main-svg"' in body  # plotly drew the figure
    assert "scatterlayer" in figures[0] and "heatmaplayer" in figures[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_the_study_and_its_artifacts_on_loopback(study_db):
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "placement_search",
            "dashboard",
            "--storage",
            study_db,
            "--study",
            "small",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                studies = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=2))
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the dashboard did not answer")
        (s,) = [s for s in studies["study_summaries"] if s["study_name"] == "small"]
        detail = json.load(urllib.request.urlopen(f"{base}/api/studies/{s['study_id']}/?after=0", timeout=10))
        graph_ids = {g["id"] for g in detail["plotly_graph_objects"]}
        assert "placement_search_pareto_front" in graph_ids and "placement_search_placement_heatmap" in graph_ids
        trial = detail["trials"][0]
        arts = {a["filename"]: a for a in trial["artifacts"]}
        assert "placement.json" in arts
        a = arts["placement.json"]
        body = urllib.request.urlopen(f"{base}/artifacts/{s['study_id']}/{trial['trial_id']}/{a['artifact_id']}").read()
        study = optuna.load_study(study_name="small", storage=study_db)
        assert json.loads(body) == trial_attrs(study.trials[0])["placement"]
        # bound to loopback only: not reachable on another local address of this machine
        other = socket.gethostbyname(socket.gethostname())
        if not other.startswith("127."):
            with pytest.raises(OSError):
                socket.create_connection((other, port), timeout=2).close()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert f"http://127.0.0.1:{port}/dashboard/studies/" in out
