"""The `train` and `subset` commands, end to end in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_video_data import _write_video as _write

ROOT = Path(__file__).resolve().parent.parent


def _write_video(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, n)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "placement_search", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_train_synthetic_json():
    p = run(
        "train",
        "tiny",
        "--placement",
        "top_heavy_2",
        "--steps",
        "4",
        "--batch",
        "8",
        "--frames",
        "8",
        "--size",
        "16",
        "--eval-every",
        "2",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["status"] == "ok" and 0 <= out["accuracy"] <= 1
    assert len(out["per_class_accuracy"]) == 11 and out["steps_done"] == 4
    assert [s for s, _ in out["eval_curve"]] == [2, 4]
    assert out["placement"] == "2d 2d 3d 3d 3d" and out["device"] == "cpu"
    assert out["proxy_cost"]["input"] == [1, 3, 8, 16, 16]


def test_train_text_output_and_real_video(tmp_path):
    # a folder per class of tiny real videos, split 4 / 1 per class by the trainer's hold-out
    for cls in ("jump", "wave"):
        for i in range(5):
            _write_video(tmp_path / "videos" / cls / f"{cls}{i}.mp4", 20)
    p = run(
        "train",
        "tiny",
        "--placement",
        "all_sep",
        "--data",
        str(tmp_path / "videos"),
        "--steps",
        "2",
        "--batch",
        "4",
        "--frames",
        "4",
        "--size",
        "32",
        "--eval-every",
        "0",
    )
    assert p.returncode == 0, p.stderr
    assert "status: ok" in p.stdout and "held-out top-1" in p.stdout and "jump" in p.stdout


def test_subset_command(tmp_path):
    for cls in ("a", "b", "c"):
        for i in range(4):
            _write_video(tmp_path / "src" / cls / f"{i}.mp4", 4)
    p = run(
        "subset",
        str(tmp_path / "src"),
        "-o",
        str(tmp_path / "mini"),
        "--classes",
        "2",
        "--per-class",
        "2",
        "--val-per-class",
        "1",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert len(out["classes"]) == 2 and out["train_videos"] == 4 and out["val_videos"] == 2
    lines = Path(out["train"]).read_text().split("\n")
    assert len([x for x in lines if x.strip() and not x.startswith("#")]) == 4


def test_train_errors_are_one_line():
    for args in (["--data", "/no/such/videos"], ["--steps", "0"], ["--placement", "nope"]):
        full = ["train", "tiny", "--placement", "all_2d", *args]
        p = run(*full)
        assert p.returncode == 2 and "Traceback" not in p.stderr, (args, p.stderr)
        assert "error:" in p.stderr


def test_diverged_run_gives_strict_json_and_a_failing_status():
    p = run(
        "train",
        "tiny",
        "--placement",
        "all_2d",
        "--steps",
        "15",
        "--lr",
        "1e30",
        "--optimizer",
        "sgd",
        "--frames",
        "8",
        "--size",
        "16",
        "--batch",
        "4",
        "--json",
    )
    assert p.returncode == 1

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    out = json.loads(p.stdout, parse_constant=refuse)
    assert out["status"] == "diverged" and out["accuracy"] is None and out["steps_done"] < 15


def test_subset_bad_requests_are_user_errors(tmp_path):
    import pytest

    from placement_search import UserError
    from placement_search.data.video import make_subset

    for cls in ("a", "b"):
        for i in range(2):
            _write_video(tmp_path / "src" / cls / f"{i}.mp4", 2)
    with pytest.raises(UserError, match="val_per_class"):
        make_subset(tmp_path / "src", tmp_path / "out", val_per_class=-1)
    with pytest.raises(UserError, match="empty"):
        make_subset(tmp_path / "src", tmp_path / "out", classes=[])
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="cannot write"):
        make_subset(tmp_path / "src", tmp_path / "file")
