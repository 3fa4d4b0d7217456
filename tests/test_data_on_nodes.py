"""Data on every node: the decoded-clip cache built ahead (``cache build``), the search refusing
to train while it is missing (or building it in place when told), every node checked before its
first trial, and a trial's own output reaching the driver once."""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import ray.cloudpickle
from search_helpers import SMALL_STUDY, sqlite_url, write_study
from test_search_driver import instant_trial

from placement_search._version import __version__
from placement_search.cli import main
from placement_search.data.config import DataConfig
from placement_search.data.prepare import build_caches, cache_status
from placement_search.errors import UserError
from placement_search.study import SearchDriver, load_study_config
from placement_search.study.nodes import NodeReport, check_payload, node_problems, node_report

av = pytest.importorskip("av", reason="PyAV (a dependency) decodes the test videos")
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _write_video(path: Path, n: int, shade: int) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for k in range(n):
            frame = av.VideoFrame.from_ndarray(np.full((32, 48, 3), (shade + 3 * k) % 250, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of three short videos each."""
    root = tmp_path_factory.mktemp("videos")
    for c, name in enumerate(("left", "right")):
        (root / name).mkdir()
        for i in range(3):
            _write_video(root / name / f"{name}{i}.mp4", 16, 40 * c + 10 * i)
    return root


def _video_study(folder: Path, videos: Path, cache_dir: Path) -> Path:
    text = SMALL_STUDY.format(name="vid", sampler="random", trials=2, evaluate_first="[]", early_stopping="false")
    text = text.replace(
        'source = "synthetic"\nframes = 8\nsize = 16\neval_clips = 22',
        f'source = "{videos}"\nframes = 4\nsize = 16\nval_fraction = 0.34\ncache_dir = "{cache_dir}"',
    )
    path = folder / "vid.toml"
    path.write_text(text)
    return path


def test_status_build_and_the_trials_data_factory_agree_on_the_cache(videos: Path, tmp_path: Path) -> None:
    cfg = DataConfig(source=str(videos), frames=4, size=16, cache_dir=str(tmp_path / "cache"))
    (before,) = cache_status(cfg)
    assert not before.ready and before.split == "train" and before.videos == 6
    assert not Path(before.path).exists()
    (built,) = build_caches(cfg)
    assert built.ready and built.path == before.path and built.failed == 0 and built.seconds > 0
    index = Path(built.path) / "index.json"
    mtime = index.stat().st_mtime_ns
    data = cfg.build(num_workers=0)  # what a trial opens: the same cache, not a new build
    assert data.describe()["cache"] == built.path
    assert index.stat().st_mtime_ns == mtime
    (after,) = cache_status(cfg)
    assert after.ready and after.path == built.path
    # other decoding settings are another cache
    (other,) = cache_status(replace(cfg, fps=6.0))
    assert not other.ready and other.path != built.path


def test_cache_cli_status_build_and_synthetic(videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = _video_study(tmp_path, videos, tmp_path / "cache")
    assert main(["cache", "status", str(toml)]) == 1
    out = capsys.readouterr().out
    assert "missing" in out and f"cache build {toml}" in out
    assert main(["cache", "build", str(toml), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ready"] and [c["split"] for n in report["nodes"] for c in n["caches"]] == ["train"]
    assert report["nodes"][0]["caches"][0]["videos"] == 6
    assert main(["cache", "status", str(toml)]) == 0
    assert "ready" in capsys.readouterr().out
    synthetic = write_study(tmp_path)
    assert main(["cache", "build", str(synthetic)]) == 0
    assert "nothing to cache" in capsys.readouterr().out
    assert main(["cache", "build", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_search_refuses_to_train_without_the_cache_and_builds_it_when_told(videos: Path, tmp_path: Path) -> None:
    toml = _video_study(tmp_path, videos, tmp_path / "cache")
    cfg = load_study_config(toml)
    url = sqlite_url(tmp_path)
    with pytest.raises(UserError) as e:
        SearchDriver(cfg, storage=url, trial_fn=instant_trial, executor="inline").run()
    msg = str(e.value)
    assert "this machine" in msg and "train split" in msg and "not built" in msg
    assert f"placement-search cache build {toml}" in msg and "--build-cache" in msg
    assert not cache_status(cfg.data)[0].ready
    events: list[tuple[str, dict]] = []
    r = SearchDriver(
        cfg,
        storage=url,
        trial_fn=instant_trial,
        executor="inline",
        build_cache=True,
        on_event=lambda k, i: events.append((k, i)),
    ).run()
    assert r.counted == 2 and cache_status(cfg.data)[0].ready
    (nodes,) = [i["nodes"] for k, i in events if k == "nodes"]
    assert nodes[0]["caches"][0]["ready"] and nodes[0]["built_s"] > 0 and nodes[0]["version"] == __version__


def test_node_problems_name_the_node_and_the_fix() -> None:
    here = NodeReport(**node_report(check_payload({}, build_cache=False)))
    assert here.version == __version__ and here.caches == [] and here.data_error is None
    assert node_problems([here], study_toml="s.toml", gpus_per_trial=0) == []
    other = replace(here, node="a" * 40, host="gpu-7", version="0.0.1")
    (problem,) = node_problems([here, other], study_toml="s.toml", gpus_per_trial=0)
    assert problem.startswith("node aaaaaaaaaaaa (gpu-7): placement-search 0.0.1") and __version__ in problem
    # Ray counts GPUs that torch cannot see (a CPU build of torch on a GPU node)
    blind = replace(here, node="b" * 40, host="gpu-8", cuda_devices=0)
    (problem,) = node_problems([blind], study_toml="s.toml", gpus_per_trial=0.5, ray_gpus={"b" * 40: 2})
    assert "gpu-8" in problem and "Ray counts 2 GPUs" in problem and "sees 0" in problem
    assert node_problems([blind], study_toml="s.toml", gpus_per_trial=0, ray_gpus={"b" * 40: 2}) == []
    unreadable = NodeReport(**node_report(check_payload({"source": "/no/such/videos"}, build_cache=False)))
    (problem,) = node_problems([unreadable], study_toml="s.toml", gpus_per_trial=0)
    assert "cannot read the study's data" in problem and "/no/such/videos" in problem


def talking_trial(spec):
    """:func:`instant_trial`, printing, warning and logging on the way."""
    import logging as _logging

    print(f"hello from {spec['placement_string']}")
    warnings.warn("a deprecated thing", DeprecationWarning, stacklevel=1)
    _logging.getLogger("some.library").warning("low on something")
    _logging.getLogger("some.library").info("chatter nobody needs")
    yield from instant_trial(spec)


def test_worker_output_reaches_the_driver_once_per_trial(tmp_path: Path, ray_local: None) -> None:
    cfg = load_study_config(write_study(tmp_path, trials=2, sampler="random"))
    ended: list[dict] = []
    SearchDriver(
        cfg,
        storage=sqlite_url(tmp_path),
        trial_fn=talking_trial,
        on_event=lambda k, i: ended.append(i) if k == "end_trial" else None,
    ).run()
    assert len(ended) == 2
    for info in ended:
        out = info["output"]
        assert out.count(f"hello from {info['placement']}") == 1
        assert "DeprecationWarning: a deprecated thing" in out and "low on something" in out
        assert "chatter" not in out


# ---------------------------------------------------------------------------------------
# Latency on an idle device ([latency] measure = "idle", the default)

#: where :func:`timed_trial` notes its runs (set by each test; Ray pickles it with the function)
TIMES_FILE = ""


def timed_trial(spec):
    """:func:`instant_trial` that takes 0.3 s and notes when it ran (wall clock) in a file."""
    import time as _time

    t0 = _time.time()
    _time.sleep(0.3)
    with open(TIMES_FILE, "a") as f:
        f.write(json.dumps([spec["placement_string"], t0, _time.time()]) + "\n")
    yield from instant_trial(spec)


def test_latency_is_measured_once_per_placement_with_nothing_training_beside_it(
    tmp_path: Path, ray_local: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    times = tmp_path / "times.jsonl"
    monkeypatch.setattr(sys.modules[__name__], "TIMES_FILE", str(times))
    path = write_study(tmp_path, trials=6, sampler="random", extra="\n[latency]\nruns = 2\nwarmup = 0\n")
    text = path.read_text().replace(
        "trials = 6\n", 'trials = 6\nrepeats = 2\nobjectives = ["accuracy", "latency_ms"]\n'
    )
    path.write_text(text)
    cfg = load_study_config(path)
    assert cfg.needs_latency and cfg.latency.measure == "idle" and cfg.repeats == 2
    events: list[tuple[str, dict]] = []
    url = sqlite_url(tmp_path)
    SearchDriver(cfg, storage=url, trial_fn=timed_trial, on_event=lambda k, i: events.append((k, i))).run()
    import optuna

    from placement_search.study.records import trial_attrs

    trials = [t for t in optuna.load_study(study_name="small", storage=url).trials if t.state.name == "COMPLETE"]
    placements = {trial_attrs(t)["placement_string"] for t in trials}
    assert len(trials) >= 6 and len(placements) < len(trials)  # repeats: placements ran more than once
    for t in trials:
        a = trial_attrs(t)
        assert a["latency_ms"] > 0 and a["latency_device"].startswith("cpu: ") and t.values[1] == a["latency_ms"]
    by_placement = {}
    for t in trials:  # one measurement per placement: its runs carry the same value
        by_placement.setdefault(trial_attrs(t)["placement_string"], set()).add(trial_attrs(t)["latency_ms"])
    assert all(len(v) == 1 for v in by_placement.values())
    waves = [i for k, i in events if k == "latency_wave"]
    assert sum(w["measured"] for w in waves) == len(placements) and not any(w["error"] for w in waves)
    # nothing trained while a wave measured
    runs = [json.loads(line) for line in times.read_text().splitlines()]
    assert len(runs) == len(trials)
    for w in waves:
        for _, t0, t1 in runs:
            assert t1 <= w["start"] or t0 >= w["end"], (w, t0, t1)


def test_a_placement_over_the_latency_budget_is_never_trained(
    tmp_path: Path, ray_local: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    times = tmp_path / "times.jsonl"
    monkeypatch.setattr(sys.modules[__name__], "TIMES_FILE", str(times))
    extra = "\n[constraints]\nmax_latency_ms = 0.001\n[latency]\nruns = 1\nwarmup = 0\n"
    cfg = load_study_config(write_study(tmp_path, trials=2, sampler="random", extra=extra))
    r = SearchDriver(cfg, storage=sqlite_url(tmp_path), trial_fn=timed_trial).run()
    assert r.counted == 0 and r.by_status["infeasible"] >= 5 and "over max_latency_ms" in r.stop_reason
    assert not times.exists()  # no trial function ran


def test_ray_dashboard_without_its_packages_is_one_clear_error(tmp_path: Path) -> None:
    import importlib.util

    from placement_search.study.executor import DASHBOARD_MODULES

    missing = [m for m in DASHBOARD_MODULES if importlib.util.find_spec(m) is None]
    if not missing:
        pytest.skip("ray[default] is installed here: the dashboard starts (checked by hand, docs/cluster.md)")
    cfg = load_study_config(write_study(tmp_path))
    with pytest.raises(UserError) as e:
        SearchDriver(cfg, storage=sqlite_url(tmp_path), ray_dashboard=8265)
    assert "--ray-dashboard" in str(e.value) and "placement-search[ray-dashboard]" in str(e.value)
    assert missing[0] in str(e.value)
    assert not (tmp_path / "study.db").exists()  # refused before anything was created
