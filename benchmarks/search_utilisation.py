"""Worker utilisation of the search driver on 10-second trials.

The driver runs 8 trials of the ``tiny`` space on 2 workers (``[resources] cpus = 1`` on a
local 2-CPU Ray instance, started first and not timed). Each trial's function sleeps 10 s in
0.1 s steps, streams two intermediate evaluations (``{"event": "eval"}`` at 1/3 and 2/3) and
then its result; it measures its own busy time (first line of the function to the result) and
returns it as ``train_time_s``, which the driver stores with the trial.

    utilisation = sum of the trials' busy time / (workers x wall time from the first dispatch
                  to the last result recorded)

so everything the driver does between trials (ask, SQL writes, dispatch, Ray scheduling,
worker start, tell) counts as idle time. The baseline in the same run is the ideal: 8 x 10 s
of work on 2 workers, i.e. 40 s of wall time at 100 %.

Goal: >= 95 %.

    python benchmarks/search_utilisation.py

Takes about 50 s on 2 CPU cores. The last line printed is the headline.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: Ray's session folder (short: it holds unix sockets); removed at the end like the study folder
RAY_TMP = tempfile.mkdtemp(prefix="rb", dir="/tmp")

TRIALS = 8
WORKERS = 2
TRIAL_S = 10.0
GOAL = 0.95

STUDY = """
schema_version = 1
name = "utilisation"
space = "tiny"
sampler = "tpe"
seed = 0
trials = {trials}

[target]
frames = 16
size = 112
num_classes = 400

[data]
source = "synthetic"
frames = 8
size = 16
eval_clips = 22

[proxy]
steps = 30
eval_every = 10

[resources]
cpus = 1
"""


def sleeping_trial(spec: dict[str, Any]):
    """A 10-second 'training': sleeps in small steps, reports two evaluations, then the result."""
    t0 = time.monotonic()
    yield {"event": "started", "host": "bench", "pid": os.getpid(), "device": "cpu"}
    curve = []
    for k in (1, 2, 3):
        while time.monotonic() - t0 < TRIAL_S * k / 3:
            time.sleep(0.1)
        acc = round(0.1 * k + (spec["macs"] % 97) / 1000, 4)
        curve.append([10 * k, acc])
        if k < 3:
            yield {"event": "eval", "step": 10 * k, "accuracy": acc}
    busy = time.monotonic() - t0
    result = {
        "status": "ok",
        "accuracy": curve[-1][1],
        "top5": curve[-1][1],
        "eval_curve": curve,
        "loss_curve": [[0, 2.4], [30, 1.2]],
        "per_class_accuracy": {},
        "steps_done": 30,
        "clips_per_s": 0.0,
        "train_time_s": busy,
        "device": "cpu",
        "precision": "fp32",
    }
    yield {"event": "result", "result": result, "stopped_by": []}


def main() -> None:
    import optuna
    import ray

    from placement_search.study.config import load_study_config
    from placement_search.study.driver import SearchDriver
    from placement_search.study.records import trial_attrs
    from placement_search.study.storage import quiet_optuna

    quiet_optuna()
    warnings.filterwarnings("ignore")
    t_all = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench_util_"))
    (tmp / "utilisation.toml").write_text(STUDY.format(trials=TRIALS))
    cfg = load_study_config(tmp / "utilisation.toml")
    url = f"sqlite:///{tmp / 'study.db'}"
    print(
        f"{TRIALS} trials of {TRIAL_S:g} s on {WORKERS} workers (cpus=1 each, local Ray), tiny space, TPE, "
        f"SQLite {tmp / 'study.db'}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    t0 = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=WORKERS,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        _temp_dir=RAY_TMP,
    )
    print(f"  ray.init: {time.perf_counter() - t0:.2f} s (excluded)")

    marks: dict[str, Any] = {"starts": {}, "ends": {}, "evals": 0}

    def on_event(kind: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if kind == "start":
            marks["starts"][info["number"]] = now
        elif kind == "end_trial":
            marks["ends"][info["number"]] = now
        elif kind == "eval":
            marks["evals"] += 1

    drv = SearchDriver(cfg, storage=url, trials=TRIALS, trial_fn=sleeping_trial, on_event=on_event)
    res = drv.run()
    first, last = min(marks["starts"].values()), max(marks["ends"].values())
    wall = last - first
    study = optuna.load_study(study_name="utilisation", storage=url)
    busy = [
        trial_attrs(t)["train_time_s"] for t in study.get_trials(deepcopy=False) if trial_attrs(t).get("status") == "ok"
    ]
    util = sum(busy) / (WORKERS * wall)
    gaps = []
    for n, start in marks["starts"].items():  # dispatch -> result recorded, minus the trial's own busy time
        t = study.trials[n]
        gaps.append(marks["ends"][n] - start - trial_attrs(t)["train_time_s"])
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)  # the SQLite files and trial artifacts
    shutil.rmtree(RAY_TMP, ignore_errors=True)
    print(f"  trials: {res.by_status}, {marks['evals']} intermediate evaluations streamed, stop: {res.stop_reason}")
    print(
        f"  busy time (measured in the trials): {sum(busy):.2f} s over {len(busy)} trials "
        f"({min(busy):.2f}-{max(busy):.2f} s each)"
    )
    print(
        f"  wall, first dispatch -> last result: {wall:.2f} s (ideal {len(busy) * TRIAL_S / WORKERS:.1f} s); "
        f"per trial dispatch -> recorded minus busy: mean {1000 * sum(gaps) / len(gaps):.0f} ms, "
        f"max {1000 * max(gaps):.0f} ms"
    )
    print(f"  total benchmark time: {time.perf_counter() - t_all:.0f} s; goal >= {GOAL:.0%}: ", end="")
    print("met" if util >= GOAL else "MISSED")
    print(f"worker utilisation: {100 * util:.1f}% (goal >= {100 * GOAL:.0f}%)")


if __name__ == "__main__":
    main()
