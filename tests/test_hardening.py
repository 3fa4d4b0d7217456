"""Regression tests for what broke when the tool was tried as a new user would (issue 13):
each test failed on the code before the fix."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from search_helpers import sqlite_url, write_study

from placement_search.cli import main
from placement_search.cli._format import self_command
from placement_search.errors import UserError
from placement_search.study import SearchDriver, load_study_config
from placement_search.study.records import trial_attrs

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "placement_search"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _small_study_db(folder: Path) -> str:
    """A SQLite study with two finished trials (made with Optuna's public API)."""
    url = sqlite_url(folder)
    from placement_search.study.storage import open_storage

    st = optuna.create_study(study_name="small", storage=open_storage(url, create=True), directions=["maximize"])
    st.set_user_attr("space", "tiny")
    for v in (0.5, 0.6):
        st.add_trial(optuna.trial.create_trial(value=v, user_attrs={"status": "ok"}))
    return url


# -- 1. SIGTERM is a clean stop ---------------------------------------------------------------


SLOW = """
schema_version = 1
name = "slow"
space = "tiny"
trials = 4
[data]
frames = 8
size = 16
eval_clips = 22
[proxy]
steps = 100000
batch_size = 8
eval_every = 0
[artifacts]
enabled = false
[resources]
cpus = 1
"""


def test_sigterm_stops_the_driver_cleanly_with_exit_143(tmp_path):
    (tmp_path / "slow.toml").write_text(SLOW)
    db = tmp_path / "term.db"
    proc = subprocess.Popen(
        [*CLI, "run", "slow.toml", "--storage", f"sqlite:///{db}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 300  # a loaded 2-core machine starts Ray slowly
        running = 0
        while time.monotonic() < deadline and running < 1:  # wait for a trial to be training
            time.sleep(1)
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the driver ended (exit {proc.returncode}) before a trial started:\n{err[-2000:]}")
            if db.exists():
                try:
                    st = optuna.load_study(study_name="slow", storage=f"sqlite:///{db}")
                    running = len(st.get_trials(states=(optuna.trial.TrialState.RUNNING,)))
                except Exception:
                    running = 0
        assert running >= 1, "no trial started within 300 s"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert "interrupted (SIGTERM)" in out and "Pareto front" in out  # the summary
    assert "SIGTERM received" not in err and "Traceback" not in err
    st = optuna.load_study(study_name="slow", storage=f"sqlite:///{db}")
    states = [t.state for t in st.trials]
    assert optuna.trial.TrialState.RUNNING not in states  # nothing left running
    interrupted = [t for t in st.trials if trial_attrs(t).get("status") == "interrupted"]
    waiting = [t for t in st.trials if t.state == optuna.trial.TrialState.WAITING]
    assert interrupted and len(waiting) == len(interrupted)  # queued again for the next run


# -- 2. a storage that cannot outlive the process ---------------------------------------------


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://"])
def test_in_memory_storage_is_refused_before_anything_runs(url, capsys):
    rc = main(["run", str(ROOT / "studies" / "quickstart.toml"), "--storage", url])
    err = capsys.readouterr().err
    assert rc == 2 and "in-memory database" in err and err.count("\n") == 1


# -- 3. read-only and damaged databases -------------------------------------------------------


def _immutable(path: Path) -> bool:
    chattr = shutil.which("chattr")
    if chattr is None:
        return False
    return subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0


def test_read_only_database_run_is_one_error_and_reads_still_work(tmp_path, capsys):
    url = _small_study_db(tmp_path)
    db = tmp_path / "study.db"
    study_file = write_study(tmp_path)
    if os.geteuid() != 0:
        db.chmod(0o444)
    elif not _immutable(db):
        pytest.skip("needs chattr +i (root ignores file modes) on a file system that supports it")
    before = _digest(db)
    try:
        rc = main(["run", str(study_file), "--storage", url])
        err = capsys.readouterr().err
        assert rc == 2 and "cannot be written" in err and err.strip().count("\n") == 0
        assert main(["status", "--storage", url, "--study", "small"]) == 0  # reading still works
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(db)], check=False)
        else:
            db.chmod(0o644)
    assert _digest(db) == before


def test_damaged_database_is_one_clear_error(tmp_path, capsys):
    url = _small_study_db(tmp_path)
    db = tmp_path / "study.db"
    import sqlite3

    con = sqlite3.connect(db)  # fold the write-ahead log into the file, as a closed study is
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    with db.open("r+b") as f:
        f.seek(8192)
        f.write(b"\xff" * 4096)
    before = _digest(db)
    rc = main(["status", "--storage", url, "--study", "small"])
    err = capsys.readouterr().err
    assert rc == 2 and "damaged" in err and "malformed" in err and "Traceback" not in err
    assert _digest(db) == before


# -- 4. sizes checked before anything is allocated --------------------------------------------


def test_huge_clip_for_flops_is_one_error(capsys):
    rc = main(["flops", "tiny", "--placement", "all_3d", "--frames", "3000000", "--size", "3000000"])
    err = capsys.readouterr().err
    assert rc == 2 and "outside the sizes this tool accepts" in err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A small study run by the real driver in this process (inline executor, a trainer that
    returns at once), and one trial marked as left running by a killed driver."""
    from test_search_driver import instant_trial

    folder = tmp_path_factory.mktemp("hardening")
    url = sqlite_url(folder)
    cfg = load_study_config(write_study(folder, trials=3, evaluate_first=["all_2d"]))
    SearchDriver(cfg, storage=url, trial_fn=instant_trial, executor="inline").run()
    st = optuna.load_study(study_name="small", storage=url)
    ua = {**trial_attrs(st.trials[0]), "status": "driver_died", "reason": "the driver stopped while this trial ran"}
    ua.pop("values", None)
    st.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL,
            params=st.trials[0].params,
            distributions=st.trials[0].distributions,
            user_attrs=ua,
        )
    )
    return folder, url, len(st.trials) - 1


def test_export_into_an_unwritable_folder_is_one_error(finished, capsys):
    _, url, _ = finished
    rc = main(["export", "--storage", url, "--study", "small", "--trial", "0", "-o", "/proc/self"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot write files there" in err


def test_export_at_a_clip_too_large_for_memory_is_refused(finished, tmp_path, capsys):
    _, url, _ = finished
    rc = main(
        ["export", "--storage", url, "--study", "small", "--trial", "0", "-o", str(tmp_path), "--clip", "4000x8000"]
        + ["--format", "torchscript"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "more than the" in err and "of memory available" in err
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    "edit",
    [
        lambda a: a.update(num_classes=10**12),
        lambda a: [
            a["placement"]["positions"][p].update(op="3d", kt=10**9 + 1) for p in ("layer4.0.conv1", "layer4.0.conv2")
        ],
    ],
)
def test_load_architecture_checks_memory_before_allocating(finished, tmp_path, edit):
    from placement_search.architecture import ARCH_FILE, load_architecture
    from placement_search.inspect.export import export_study

    _, url, _ = finished
    export_study(url, "small", tmp_path, trials=[0])
    arch = tmp_path / "trial-0000" / ARCH_FILE
    data = json.loads(arch.read_text())
    edit(data)
    arch.write_text(json.dumps(data))
    with pytest.raises(UserError, match="of memory available"):
        load_architecture(tmp_path / "trial-0000")


# -- 5. data sets that cannot train -----------------------------------------------------------


def _video(path: Path, n: int = 24) -> None:
    from test_video_data import _write_video

    _write_video(path, n)


def test_class_without_readable_video_and_single_class_are_errors(tmp_path):
    from placement_search.data.video import video_clip_data

    root = tmp_path / "data"
    for name in ("walk", "jump"):
        (root / name).mkdir(parents=True)
    _video(root / "walk" / "a.mp4")
    _video(root / "walk" / "b.mp4")
    (root / "jump" / "broken.mp4").write_bytes(b"\x00" * 2000)
    with (
        pytest.warns(UserWarning),
        pytest.raises(UserError, match=r"no readable training video: 'jump'"),
    ):
        video_clip_data(root, frames=4, size=32, cache_dir=tmp_path / "cache")
    one = tmp_path / "one"
    (one / "walk").mkdir(parents=True)
    _video(one / "walk" / "a.mp4")
    _video(one / "walk" / "b.mp4")
    with pytest.raises(UserError, match="only one class"):
        video_clip_data(one, frames=4, size=32, cache_dir=tmp_path / "cache")


def test_skipped_videos_warning_is_one_line_naming_the_list(tmp_path):
    from placement_search.data.video import SkippedVideosWarning, video_clip_data

    root = tmp_path / "data"
    for name in ("walk", "jump"):
        (root / name).mkdir(parents=True)
        _video(root / name / "a.mp4")
        _video(root / name / "b.mp4")
    (root / "walk" / "broken.mp4").write_bytes(b"\x00" * 2000)
    with pytest.warns(SkippedVideosWarning) as rec:
        video_clip_data(root, frames=4, size=32, cache_dir=tmp_path / "cache")
    message = str(rec[0].message)
    assert "\n" not in message and message.startswith("skipped 1 of 5 videos")
    listing = Path(message.split("the full list: ")[1])
    assert listing.is_file() and "broken.mp4" in listing.read_text()
    from placement_search.cli.main import _plain_warning

    line = _plain_warning(rec[0].message, SkippedVideosWarning, "x.py", 1)
    assert line == f"placement-search: warning: {message}\n"


def test_subset_leaves_out_zero_byte_videos(tmp_path):
    from placement_search.data.video import make_subset

    root = tmp_path / "data"
    for name in ("walk", "jump"):
        (root / name).mkdir(parents=True)
        _video(root / name / "a.mp4", 4)
    (root / "walk" / "empty.mp4").write_bytes(b"")
    with pytest.warns(UserWarning, match="zero-byte"):
        sub = make_subset(root, tmp_path / "out", val_per_class=0)
    assert "empty.mp4" not in sub.train.read_text() and sub.train_videos == 2


# -- 6. long runs show progress -----------------------------------------------------------------


def test_train_shows_a_progress_bar_on_stderr_unless_json_or_quiet(capsys):
    args = [
        "train",
        "tiny",
        "--placement",
        "all_2d",
        "--steps",
        "3",
        "--frames",
        "8",
        "--size",
        "16",
        "--eval-every",
        "0",
    ]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "training" in err and "3/3" in err
    assert main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    assert "training" not in captured.err and json.loads(captured.out)["status"] == "ok"  # stderr is no terminal
    assert main([*args, "--quiet"]) == 0
    assert "training" not in capsys.readouterr().err


# -- 7. status says whether the driver lives ------------------------------------------------------


def test_status_of_a_killed_driver_and_of_an_empty_study(tmp_path, capsys):
    url = _small_study_db(tmp_path)
    st = optuna.load_study(study_name="small", storage=url)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # exited and reaped: that pid is gone
    dead_pid = gone.pid
    import socket

    st.set_user_attr("driver", {"host": socket.gethostname(), "pid": dead_pid, "heartbeat": time.time() - 5})
    trial = st.ask()  # a trial left RUNNING
    assert trial.number == 2
    assert main(["status", "--storage", url, "--study", "small"]) == 0
    out = capsys.readouterr().out
    assert "driver: dead" in out and "'running' trial(s) are not running" in out
    assert "mark the 1 trial(s) left running as driver_died" in out
    optuna.create_study(study_name="empty", storage=url)
    assert main(["status", "--storage", url, "--study", "empty"]) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "nothing has run yet" in out and "driver: none" in out


# -- 8. what the program prints is what works ----------------------------------------------------


def test_next_hints_print_a_command_that_runs(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", [".venv/bin/placement-search", "run"])
    monkeypatch.setenv("PATH", str(tmp_path))  # not on PATH: the path it was started by
    assert self_command() == ".venv/bin/placement-search"
    fake = tmp_path / "placement-search"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "argv", [str(fake), "run"])
    assert self_command() == "placement-search"  # on PATH and the same program


def test_eta_uses_this_runs_rate():
    from placement_search.cli.progress import Progress

    p = Progress(live=False)
    snap = {"by_status": {}, "elapsed_s": 6.0, "counted": 20, "target": 24, "running": 2, "pareto": 3}
    resumed = p.status_line({**snap, "counted_this_run": 0})
    assert "left" not in resumed  # no trial of this run has ended: no estimate yet
    line = p.status_line({**snap, "elapsed_s": 60.0, "counted_this_run": 2})
    assert "~02:00 left" in line  # 30 s a trial in this run, 4 to go


@pytest.mark.usefixtures("ray_local")
def test_rerunning_a_finished_study_says_how_to_go_on(tmp_path, capsys):
    study = write_study(tmp_path, trials=1)
    url = sqlite_url(tmp_path)
    assert main(["run", str(study), "--storage", url]) == 0
    capsys.readouterr()
    assert main(["run", str(study), "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "--trials 21" in out and "already holds 1 counted trials" in out


# -- 9. report and figures -------------------------------------------------------------------------


def test_figures_label_family_members_front_ends_and_scales(tmp_path):
    from placement_search.inspect.figures import families_figure, heatmap_figure, pareto_figure

    front = [
        {"trial": 1, "placement": "2d 2d", "macs": 1e9, "accuracy": 0.4},
        {"trial": 2, "placement": "3d 3d", "macs": 2e9, "accuracy": 0.8},
    ]
    members = {
        fam: [{"name": f"{fam}_{k}", "trial": k, "macs": (k + 1) * 1e9, "accuracy": 0.1 * k} for k in range(3)]
        for fam in ("bottom_heavy", "top_heavy")
    }
    fam = families_figure({"family_kind": "3d", "lines": members, "uniform": [], "front": front, "missing": []})
    texts = {tr.name: list(tr.text) for tr in fam.data if tr.name and "heavy" in tr.name}
    assert all(t == ["0", "1", "2"] for t in texts.values()) and len(texts) == 2
    notes = {a.text for a in fam.layout.annotations}
    assert notes == {"trial 1: 2d 2d", "trial 2: 3d 3d"}  # the cheapest and the most accurate are named
    assert fam.layout.yaxis.tickformat == ".0%"
    par = pareto_figure({"points": [], "front": front, "named": [], "target_input": "16x112x112"})
    assert par.layout.yaxis.tickformat == ".0%" and len(par.layout.annotations) == 2
    heat = heatmap_figure(
        {"share": [[1.0, 0.0]], "kinds": ["2d", "3d"], "groups": ["stem"], "counts": [[1, 0]], "pareto_trials": 1}
    )
    assert heat.data[0].colorbar.title.text.startswith("share of")


def test_gitignore_covers_what_the_readme_writes():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "report.html" in ignored and "exported/" in ignored


def test_temporal_analysis_says_when_weights_are_barely_trained(tmp_path):
    from placement_search.inspect.temporal import TemporalKernel, _training_notes

    (tmp_path / "arch.json").write_text(json.dumps({"proxy": {"steps_done": 80}}))
    k = TemporalKernel(0, "stem", "3d", 3, (16, 3, 3, 3, 3), (-1, 0, 1), (0.33, 0.34, 0.33))
    notes = _training_notes(tmp_path, [k])
    assert any("80 steps" in n for n in notes) and any("within 0.05 of 1/kt" in n for n in notes)
    trained = TemporalKernel(0, "stem", "3d", 3, (16, 3, 3, 3, 3), (-1, 0, 1), (0.1, 0.8, 0.1))
    (tmp_path / "arch.json").write_text(json.dumps({"proxy": {"steps_done": 50000}}))
    assert _training_notes(tmp_path, [trained]) == []


# -- 10. smaller things -----------------------------------------------------------------------------


def test_too_many_cpus_per_trial_is_refused_before_the_study_exists(tmp_path):
    study = write_study(tmp_path, extra="").read_text().replace("cpus = 1", "cpus = 1000")
    (tmp_path / "big.toml").write_text(study)
    with pytest.raises(UserError, match="cpus = 1000 per trial"):
        SearchDriver(load_study_config(tmp_path / "big.toml"), storage=sqlite_url(tmp_path))
    assert not (tmp_path / "study.db").exists()


def test_flops_notes_a_kernel_outside_the_space(capsys):
    assert main(["flops", "tiny", "--placement", "3d:99 2d 2d 2d 2d", "--frames", "16", "--size", "32"]) == 0
    err = capsys.readouterr().err
    assert "outside the choices of space 'tiny'" in err and "longer than the 16-frame clip" in err
    assert main(["flops", "tiny", "--placement", "all_3d"]) == 0
    assert "note" not in capsys.readouterr().err


def test_space_show_labels_every_column(capsys):
    assert main(["space", "show", "inception"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("named placement"))
    assert "in space?" in header
    assert any("no: a reference model" in line for line in out.splitlines() if line.startswith("i3d "))


def test_export_of_a_trial_without_result_needs_any_status(finished, tmp_path, capsys):
    _, url, died = finished
    rc = main(["export", "--storage", url, "--study", "small", "--trial", str(died), "-o", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "has no result (status driver_died" in err and "--any-status" in err
    rc = main(
        ["export", "--storage", url, "--study", "small", "--trial", str(died), "-o", str(tmp_path), "--any-status"]
    )
    assert rc == 0 and (tmp_path / f"trial-{died:04d}" / "arch.json").is_file()


def test_missing_sqlite_folder_is_created_and_said(tmp_path, capsys):
    from placement_search.study.storage import open_storage

    open_storage(f"sqlite:///{tmp_path / 'new' / 'deeper' / 's.db'}", create=True)
    err = capsys.readouterr().err
    assert f"created the folder {tmp_path / 'new' / 'deeper'}" in err


def test_postgresql_without_its_extra_names_the_extra(tmp_path):
    """PostgreSQL support is the ``postgres`` extra: without psycopg2 a postgresql URL is one
    error naming the extra (psycopg2 hidden from a child process, as if not installed)."""
    code = (
        "import sys; sys.modules['psycopg2'] = None\n"
        "from placement_search.cli import main\n"
        "sys.exit(main(['status', '--storage', 'postgresql+psycopg2://me:secret@127.0.0.1:1/db', '--study', 'x']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "placement-search[postgres]" in r.stderr and "Traceback" not in r.stderr
    assert "secret" not in r.stderr  # the password is not echoed


def test_ray_address_comes_from_the_environment_unless_given(monkeypatch):
    """As with Ray's own tools: no --ray-address joins the cluster $RAY_ADDRESS names; an
    explicit address (or 'local') wins."""
    from types import SimpleNamespace

    from placement_search.study.executor import RayExecutor

    res = SimpleNamespace(cpus=1, gpus=0, memory_gb=None, max_concurrent=None)
    ray_cfg = SimpleNamespace(num_cpus=None, num_gpus=None, object_store_memory=None)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    ex = RayExecutor(lambda spec: iter(()), res, ray_cfg, None)
    assert (ex.address, ex.address_from) == ("10.0.0.5:6379", "$RAY_ADDRESS")
    assert RayExecutor(lambda spec: iter(()), res, ray_cfg, "local").address == "local"
    monkeypatch.delenv("RAY_ADDRESS")
    assert RayExecutor(lambda spec: iter(()), res, ray_cfg, None).address is None
