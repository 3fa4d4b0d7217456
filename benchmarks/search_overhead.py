"""Per-trial orchestration overhead of the search driver against plain Optuna and Ray Tune.

The same search on all three: the ``tiny`` space (5 decisions x 4 choices, as categorical
parameters named like the space's groups), two objectives (accuracy up, MACs at 16 x 112 x 112
down), multivariate TPE with constant liar and seed 0 (the driver's default sampler), a SQLite
file per run in a temporary folder, 50 trials, and a trainer that returns at once (a made-up
accuracy, the MACs from the space's cost table; plain Optuna and Tune look both up in a dict
built from it, so a Tune trial process imports neither torch nor this package). What is measured
is everything around the trainer: ask -> dispatch -> report -> tell, the SQL writes included.

* ours: ``SearchDriver.run()`` with a no-op ``trial_fn`` (a Ray generator task per trial:
  ``started``, then ``result``), 2 trials at a time (``[resources] cpus = 1`` on a 2-CPU Ray),
  the study's defaults otherwise (trial artifacts written, dashboard figures pushed at the end).
* plain Optuna: ``study.optimize(objective, n_trials=50)`` (``create_study`` included),
  one process, sequential -- the floor for an ask/tell loop on SQLite.
* Ray Tune: ``Tuner.fit()`` with ``OptunaSearch`` (the same sampler and an ``RDBStorage`` on
  SQLite), ``num_samples=50``, ``max_concurrent_trials=2``, ``{"cpu": 1}`` per trial,
  the trainable reporting once; measured with Tune's default ``reuse_actors=False`` (the
  headline) and with ``reuse_actors=True`` (its fastest setting; printed as well).

Excluded from every time: ``ray.init`` (one local 2-CPU instance started first and shared;
its first two worker processes warmed up) and building the space's cost tables (the driver's
construction). ms/trial is the wall time of the whole call divided by the number of trials.
When the sampler re-proposes an evaluated placement the driver proposes an unevaluated
neighbour instead (no Ray task, nothing stored; counted as a repeat); its ms/trial is the whole
run divided by the 50 Ray trials. The steady-state time
(first trial start to last trial end) is printed for ours and Tune. Ours and plain Optuna take a
few seconds: each runs 3 times (alternating, fresh study each time) and the median is used, as
the machine may be shared; each Tune setting runs once.

Needs ``ray[tune]`` for the Tune baseline (``pip install -e '.[bench]'``, which ``make bench``
does); without it the Tune lines say so and the other ratio is still printed.

    python benchmarks/search_overhead.py

Takes about 2 minutes on 2 CPU cores (Tune's default setting takes 1-2 s a trial there); 50
trials keep it under 3 minutes. The last line printed is the headline.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
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

TRIALS = 50
REPEATS = 3
CONCURRENT = 2
GOAL = 20.0
SEED = 0

STUDY = """
schema_version = 1
name = "overhead"
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

[resources]
cpus = 1
"""


def fake_accuracy(placement_key: str, macs: int) -> float:
    """A made-up proxy accuracy: grows with compute, plus a fixed per-placement jitter."""
    digest = hashlib.blake2b(placement_key.encode(), digest_size=8).digest()
    return round(0.3 + 0.3 * min(1.0, macs / 3e9) + 0.2 * int.from_bytes(digest, "little") / 2**64, 4)


def noop_trial(spec: dict[str, Any]):
    """The driver's trial function: reports a result at once."""
    acc = fake_accuracy(json.dumps(spec["placement"], sort_keys=True), spec["macs"])
    yield {"event": "started", "host": "bench", "pid": 0, "device": "cpu"}
    result = {
        "status": "ok",
        "accuracy": acc,
        "top5": acc,
        "eval_curve": [[1, acc]],
        "loss_curve": [[0, 2.4]],
        "per_class_accuracy": {},
        "steps_done": 1,
        "clips_per_s": 0.0,
        "train_time_s": 0.0,
        "device": "cpu",
        "precision": "fp32",
    }
    yield {"event": "result", "result": result, "stopped_by": []}


def sampler() -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=SEED, multivariate=True, constant_liar=True)


def start_ray() -> float:
    import ray

    t0 = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=CONCURRENT,
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        _temp_dir=RAY_TMP,
    )

    @ray.remote(num_cpus=1)
    def warm() -> int:
        time.sleep(0.2)
        return os.getpid()

    ray.get([warm.remote() for _ in range(CONCURRENT)])  # start the worker processes
    return time.perf_counter() - t0


class Objective:
    """The plain-Optuna and Tune side: MACs (and the placement's key for the made-up accuracy)
    looked up by the group choices in a plain dict built once for the whole space (1,024
    placements), so that a Tune trial process does not import torch or this package."""

    def __init__(self, space: Any, table: Any) -> None:
        self.groups = [g.name for g in space.groups]
        self.lookup: dict[tuple[str, ...], tuple[int, str]] = {}
        for tokens in itertools.product(*(g.tokens for g in space.groups)):
            p = space.from_group_tokens(list(tokens))
            self.lookup[tokens] = (int(table.cost(p)[0]), json.dumps(p.to_dict(), sort_keys=True))

    def __call__(self, params: dict[str, str]) -> tuple[float, float]:
        macs, key = self.lookup[tuple(params[g] for g in self.groups)]
        return fake_accuracy(key, macs), float(macs)


def run_ours(cfg: Any, url: str, name: str) -> dict[str, Any]:
    from placement_search.study.driver import SearchDriver

    marks: dict[str, float] = {}

    def on_event(kind: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if kind == "start":
            marks.setdefault("first_start", now)
        elif kind in ("end_trial", "reused", "infeasible"):
            marks["last_end"] = now

    drv = SearchDriver(cfg, storage=url, study_name=name, trials=TRIALS, trial_fn=noop_trial, on_event=on_event)
    t0 = time.perf_counter()
    res = drv.run()
    wall = time.perf_counter() - t0
    rows = sum(n for s, n in res.by_status.items() if s != "repeat")  # repeats are not stored
    return {
        "wall": wall,
        "steady": marks["last_end"] - marks["first_start"],
        "dispatched": res.counted,
        "rows": rows,
        "repeats": res.by_status.get("repeat", 0),
        "by_status": res.by_status,
        "space": drv.space,
        "table": drv.target_costs,
    }


def run_plain(url: str, space: Any, objective: Objective) -> dict[str, Any]:
    import optuna
    from optuna.distributions import CategoricalDistribution

    dists = {g.name: CategoricalDistribution(tuple(g.tokens)) for g in space.groups}

    def obj(trial: Any) -> tuple[float, float]:
        return objective({k: trial.suggest_categorical(k, d.choices) for k, d in dists.items()})

    t0 = time.perf_counter()
    study = optuna.create_study(study_name="plain", storage=url, directions=["maximize", "minimize"], sampler=sampler())
    study.optimize(obj, n_trials=TRIALS)
    wall = time.perf_counter() - t0
    return {"wall": wall, "trials": len(study.trials)}


def run_tune(url: str, space: Any, objective: Objective, folder: Path, reuse_actors: bool) -> dict[str, Any]:
    import optuna
    from optuna.distributions import CategoricalDistribution
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    dists = {g.name: CategoricalDistribution(tuple(g.tokens)) for g in space.groups}

    def trainable(config: dict[str, Any]) -> None:
        acc, macs = objective({k: config[k] for k in dists})
        tune.report({"accuracy": acc, "macs": macs})

    class Times(tune.Callback):
        def __init__(self) -> None:
            self.first: float | None = None
            self.last = 0.0

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if self.first is None:
                self.first = time.perf_counter()

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.last = time.perf_counter()

    name = f"tune_reuse_{reuse_actors}".lower()
    storage = optuna.storages.RDBStorage(url)
    times = Times()
    t0 = time.perf_counter()
    searcher = OptunaSearch(
        space=dists,
        metric=["accuracy", "macs"],
        mode=["max", "min"],
        sampler=sampler(),
        study_name=name,
        storage=storage,
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=TRIALS, max_concurrent_trials=CONCURRENT, reuse_actors=reuse_actors
        ),
        run_config=tune.RunConfig(storage_path=str(folder / "tune_results"), name=name, verbose=0, callbacks=[times]),
    )
    with contextlib.redirect_stdout(io.StringIO()):  # Tune prints a table even with verbose=0
        results = tuner.fit()
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=name, storage=url)
    complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False))
    return {
        "wall": wall,
        "steady": times.last - (times.first or t0),
        "errors": results.num_errors,
        "trials": len(results),
        "complete": complete,
    }


def main() -> None:
    import optuna

    from placement_search.study.config import load_study_config
    from placement_search.study.storage import quiet_optuna

    quiet_optuna()
    warnings.filterwarnings("ignore")
    logging.getLogger("ray").setLevel(logging.ERROR)
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    t_all = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench_oh_"))
    (tmp / "overhead.toml").write_text(STUDY.format(trials=TRIALS))
    cfg = load_study_config(tmp / "overhead.toml")
    load = os.getloadavg()[0]
    print(
        f"{TRIALS} trials, tiny space, TPE (multivariate, constant liar), SQLite files in {tmp}, "
        f"optuna {optuna.__version__}; load average {load:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"  ray.init + worker warm-up: {start_ray():.2f} s (excluded from every time)")

    # ours and plain Optuna are cheap: 3 runs each, alternating, median (the machine may be shared)
    runs: list[dict[str, Any]] = []
    plains: list[dict[str, Any]] = []
    for i in range(REPEATS):
        runs.append(run_ours(cfg, f"sqlite:///{tmp / f'ours{i}.db'}", f"overhead{i}"))
        if i == 0:
            objective = Objective(runs[0]["space"], runs[0]["table"])
        plains.append(run_plain(f"sqlite:///{tmp / f'plain{i}.db'}", runs[0]["space"], objective))
    for r in runs:
        r["ms"] = 1000 * r["wall"] / r["dispatched"]
    ours = sorted(runs, key=lambda r: r["ms"])[REPEATS // 2]
    ours_ms = ours["ms"]
    all_ms = ", ".join(f"{r['ms']:.1f}" for r in runs)
    print(
        f"  ours (SearchDriver, {CONCURRENT} concurrent Ray tasks): {ours_ms:7.1f} ms/trial  "
        f"[median of {all_ms}; median run: {ours['dispatched']} Ray trials, {ours['rows']} stored, "
        f"{ours['repeats']} re-proposals turned into neighbours; run() {ours['wall']:.2f} s, "
        f"first start -> last end {1000 * ours['steady'] / ours['dispatched']:.1f} ms/trial]"
    )
    plain_all = sorted(1000 * p["wall"] / p["trials"] for p in plains)
    plain_ms = plain_all[REPEATS // 2]
    print(
        f"  plain Optuna study.optimize (sequential):   {plain_ms:7.1f} ms/trial  "
        f"[median of {', '.join(f'{v:.1f}' for v in plain_all)}; {plains[0]['trials']} trials]"
    )

    tune_ms: dict[bool, float] = {}
    try:
        import ray.tune
        from ray.tune.search.optuna import OptunaSearch  # noqa: F401
    except ImportError as e:
        print(
            f"  Ray Tune: not measured, ray.tune is not importable ({str(e).splitlines()[0]}); "
            "install it with: .venv/bin/pip install -e '.[bench]'   (or: pip install 'ray[tune]')"
        )
    else:
        for reuse in (True, False):
            r = run_tune(f"sqlite:///{tmp / 'tune.db'}", runs[0]["space"], objective, tmp, reuse)
            tune_ms[reuse] = 1000 * r["wall"] / TRIALS
            print(
                f"  Ray Tune + OptunaSearch, reuse_actors={reuse!s:5}: {tune_ms[reuse]:7.1f} ms/trial  "
                f"[{r['trials']} trials, {r['complete']} COMPLETE in its study, {r['errors']} errors; fit() "
                f"{r['wall']:.1f} s, first start -> last end {1000 * r['steady'] / TRIALS:.1f} ms/trial]"
            )

    import ray

    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)  # the SQLite files, trial artifacts, Tune results
    shutil.rmtree(RAY_TMP, ignore_errors=True)
    print(f"  total benchmark time: {time.perf_counter() - t_all:.0f} s")
    print(f"plain Optuna (sequential) / ours: {plain_ms / ours_ms:.1f}x")
    if tune_ms:
        print(f"Ray Tune (reuse_actors=True) / ours: {tune_ms[True] / ours_ms:.1f}x")
        print(f"Ray Tune overhead / ours: {tune_ms[False] / ours_ms:.1f}x (goal >= {GOAL:.0f}x)")
    else:
        print(f"Ray Tune overhead / ours: not measured: pip install -e '.[bench]' (goal >= {GOAL:.0f}x)")


if __name__ == "__main__":
    main()
