"""The search driver's sustained ask+tell rate in a study that already holds 1,000 trials.

A study of the ``inception`` space (11 decisions, 7.3M placements; compute at 64 x 224 x 224,
proxy clips 8 x 32 x 32) with a MACs budget that every placement meets (so each trial carries
a constraint, as in a budgeted search), multi-objective (accuracy up, MACs down), the driver's
default sampler (multivariate TPE on its in-memory mirror), early stopping on (the default,
so each dispatch carries the reference curves), on a SQLite file.

1. The driver creates the study and runs 2 no-op trials (this also starts the 2 Ray workers).
   Their stored attributes are the template for the pre-fill.
2. Pre-fill: 998 more finished trials (distinct random placements, the same user and system
   attributes the driver writes, a made-up accuracy), written as the driver writes trials
   (``study/records.py``: one ``create_new_trial`` with a template trial each), so the
   study holds 1,000 trials; not timed.
3. Measured: the driver resumes the study (its set-up -- opening the study, reading the
   1,000 trials into its mirror -- is timed separately and printed, not in the rate) and runs
   until 100 more trials are trained, on 2 workers, with a trial function that returns at
   once: each trial is the ask on the mirror, the cost look-up, one ``create_new_trial`` at start,
   a Ray generator task, the result attribute and the final state at the end, and the tell. Every trial the driver adds
   to the study counts, whatever its status (a re-proposed placement is not stored: the driver
   proposes an unevaluated neighbour instead, counted as a repeat). The rate is
   new trials / time from the first proposal to the last trial's end (the driver's end-of-run
   dashboard-figure refresh comes after that and is not in it).
4. Baseline, same run, same SQLite file: plain Optuna at the same study size (1,000 trials of
   the same placements, values and constraint copied into a second study) with its default
   sampler for two objectives (``TPESampler(seed=0)``: independent TPE, constant liar), 100
   iterations of a typical ask-and-tell loop: ``study.ask(fixed_distributions)``, three
   ``set_user_attr``, ``set_constraint``, ``tell`` -- one process, no workers.

Ray is started before anything is timed (``ray.init`` excluded). Goal: >= 50 trials/s for the
driver. ``--profile`` also runs the measured part under cProfile and prints where the time goes
(cumulative ms per trial).

    python benchmarks/search_throughput.py [--profile]

Takes about a minute on 2 CPU cores. The last line printed is the headline.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _driver import STUDY, fake_accuracy, fake_result, noop_trial, start_ray

#: Ray's session folder (short: it holds unix sockets); removed at the end like the study folder
RAY_TMP = tempfile.mkdtemp(prefix="rb", dir="/tmp")

PREFILL = 1000
MEASURED = 100
GOAL = 50.0


def prefill(drv: Any, study: Any, n: int, seed: int = 0) -> list[Any]:
    """``n`` finished trials shaped like the driver's own (template: the study's first trial)."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    template = study.get_trials(deepcopy=False)[0]
    from placement_search.study.opening import group_params
    from placement_search.study.records import trial_attrs

    base_ua = {k: v for k, v in trial_attrs(template).items() if k not in ("named", "retry_of", "values")}
    cons_keys = [k for k in template.system_attrs if k.startswith("constraints")]
    dists = {g.name: CategoricalDistribution(tuple(g.tokens)) for g in drv.space.groups}
    seen = {trial_attrs(t).get("placement_string") for t in study.get_trials(deepcopy=False)}
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        p = drv.space.from_indices([rng.randrange(len(g.tokens)) for g in drv.space.groups])
        costs = drv._costs(p)
        if costs["placement_string"] in seen:
            continue
        seen.add(costs["placement_string"])
        res = fake_result({"placement": p.to_dict(), "macs": costs["macs"]})
        ua = {**base_ua, **costs, **{k: res[k] for k in ("accuracy", "top5", "eval_curve", "loss_curve")}}
        ua["status"] = "ok"
        violation = (costs["macs"] - drv.cfg.constraints.max_macs) / drv.cfg.constraints.max_macs
        sa: dict[str, Any] = {}
        for k in cons_keys:  # "constraints:max_macs" (Optuna 5) or "constraints" (a list, Optuna 4)
            sa[k] = [violation] if k == "constraints" else violation
        out.append(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE,
                values=[res["accuracy"], float(costs["macs"])],
                params=group_params(drv.space, p),
                distributions=dists,
                user_attrs=ua,
                system_attrs=sa,
            )
        )
    bulk_add_trials(study, out)
    return out


def bulk_add_trials(study: Any, trials: list[Any]) -> None:
    """``study.add_trials(trials)`` the way the driver writes a whole trial
    (``placement_search.study.records.write_started``: one ``create_new_trial`` with a template)."""
    from placement_search.study.records import write_started

    for ft in trials:
        write_started(
            study._storage,
            study._study_id,
            state=ft.state,
            params=ft.params,
            distributions=ft.distributions,
            user_attrs=ft.user_attrs,
            system_attrs=ft.system_attrs,
            values=ft.values,
        )


def run_driver(cfg: Any, url: str, trials: int, profile: cProfile.Profile | None = None) -> dict[str, Any]:
    from placement_search.study.driver import SearchDriver

    marks: dict[str, Any] = {"events": {}}

    def on_event(kind: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        marks["events"][kind] = marks["events"].get(kind, 0) + 1
        if kind == "ray":
            marks["loop_start"] = now
        elif kind in ("end_trial", "reused", "infeasible"):
            marks["last_end"] = now

    t0 = time.perf_counter()
    drv = SearchDriver(cfg, storage=url, trials=trials, trial_fn=noop_trial, on_event=on_event)
    marks["construct_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    if profile is not None:
        profile.enable()
    try:
        result = drv.run()
    finally:
        if profile is not None:
            profile.disable()
    marks["run_s"] = time.perf_counter() - t1
    marks["setup_s"] = marks.get("loop_start", t1) - t1
    marks["loop_s"] = marks.get("last_end", t1) - marks.get("loop_start", t1)
    marks["result"] = result
    marks["driver"] = drv
    return marks


def plain_optuna(url: str, source: list[Any], drv: Any, n: int) -> tuple[float, int]:
    """Plain ask-and-tell on the same storage, same study size, Optuna's default MO sampler."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    from placement_search.study.records import trial_attrs

    study = optuna.create_study(
        study_name="plain", storage=url, directions=["maximize", "minimize"], sampler=optuna.samplers.TPESampler(seed=0)
    )
    copies = []
    for t in source:
        copies.append(
            optuna.trial.create_trial(
                state=t.state,
                values=t.values,
                params=t.params,
                distributions=t.distributions,
                user_attrs={k: trial_attrs(t)[k] for k in ("placement_string", "macs", "params", "accuracy")},
                system_attrs={"constraints:max_macs": (t.values[1] - 1.2e11) / 1.2e11},
            )
        )
    bulk_add_trials(study, copies)
    dists = {g.name: CategoricalDistribution(tuple(g.tokens)) for g in drv.space.groups}
    max_macs = drv.cfg.constraints.max_macs
    t0 = time.perf_counter()
    for _ in range(n):
        trial = study.ask(dists)
        p = drv.space.from_group_tokens({k: str(v) for k, v in trial.params.items()})
        macs, params = drv.target_costs.cost(p)
        acc = fake_accuracy(p.to_dict(), int(macs))
        trial.set_user_attr("placement_string", drv.space.placement_string(p))
        trial.set_user_attr("macs", int(macs))
        trial.set_user_attr("params", int(params))
        trial.set_constraint("max_macs", (int(macs) - max_macs) / max_macs)
        study.tell(trial, [acc, float(macs)])
    return time.perf_counter() - t0, len(study.get_trials(deepcopy=False))


def storage_only(url: str, template: Any, n: int) -> float:
    """Seconds for ``n`` trials written the way the driver writes them, with nothing else: one
    ``create_new_trial`` with the driver's own template (a stored trial: its params, dispatch
    attributes and constraint), the ``result`` attribute, the final state and values. The
    floor that Optuna's public storage API puts under the driver's time per trial."""
    import optuna

    from placement_search.study.records import RESULT, write_finished, write_started
    from placement_search.study.storage import open_storage

    storage = open_storage(url, create=False)
    study_id = storage.get_study_id_from_name("throughput")
    result = dict(template.user_attrs.get(RESULT) or {})
    started = {k: v for k, v in template.user_attrs.items() if k != RESULT}
    t0 = time.perf_counter()
    for _ in range(n):
        trial_id, _number = write_started(
            storage,
            study_id,
            state=optuna.trial.TrialState.RUNNING,
            params=template.params,
            distributions=template.distributions,
            user_attrs=started,
            system_attrs=template.system_attrs,
        )
        write_finished(storage, trial_id, state=optuna.trial.TrialState.COMPLETE, result=result, values=template.values)
    return time.perf_counter() - t0


def bare_create(url: str, n: int) -> float:
    """Seconds for ``n`` calls of ``create_new_trial`` with nothing in the trial (no params, no
    attributes): the least one SQLite trial costs through Optuna's public storage API."""

    from placement_search.study.storage import open_storage

    storage = open_storage(url, create=False)
    study_id = storage.get_study_id_from_name("throughput")
    t0 = time.perf_counter()
    for _ in range(n):
        storage.create_new_trial(study_id)
    return time.perf_counter() - t0


def print_profile(prof: cProfile.Profile, per: int, top: int = 45) -> None:
    s = io.StringIO()
    st = pstats.Stats(prof, stream=s)
    st.sort_stats("cumulative")
    print(f"\nprofile of the measured driver run (cumulative ms per trial over {per} trials, top {top}):")
    rows = []
    for (file, line, fn), (_cc, nc, _tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        rows.append((ct, nc, f"{Path(file).name}:{line}({fn})"))
    rows.sort(reverse=True)
    for ct, nc, name in rows[:top]:
        print(f"  {ct * 1000 / per:8.2f} ms  {nc / per:8.1f} calls  {name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", action="store_true", help="also print a cProfile of the measured driver run")
    args = ap.parse_args()

    import optuna

    from placement_search.study.config import load_study_config
    from placement_search.study.storage import open_storage, quiet_optuna

    quiet_optuna()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    t_all = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench_tp_"))
    url = f"sqlite:///{tmp / 'study.db'}"
    print(
        f"study: inception space, SQLite {tmp / 'study.db'}, 2 Ray workers (cpus=1 each), optuna {optuna.__version__}; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"  ray.init: {start_ray(RAY_TMP):.2f} s (excluded)")

    def cfg_for(trials: int) -> Any:
        path = tmp / "throughput.toml"
        path.write_text(STUDY.format(name="throughput", trials=trials))
        return load_study_config(path)

    def measure(url: str, label: str) -> tuple[float, Any, Any, int]:
        seed = run_driver(cfg_for(2), url, 2)
        drv = seed["driver"]
        print(f"  [{label}] driver construction (space cost tables): {seed['construct_s']:.2f} s (excluded)")
        study = optuna.load_study(study_name="throughput", storage=open_storage(url, create=False))
        t0 = time.perf_counter()
        filled = prefill(drv, study, PREFILL - len(study.get_trials(deepcopy=False)))
        n_before = len(study.get_trials(deepcopy=False))
        print(
            f"  [{label}] pre-fill: {len(filled)} trials (written as the driver writes them) in "
            f"{time.perf_counter() - t0:.1f} s -> {n_before} trials"
        )
        prof = cProfile.Profile() if args.profile and label == "SQLite" else None
        m = run_driver(cfg_for(n_before + MEASURED), url, n_before + MEASURED, prof)
        n_after = len(optuna.load_study(study_name="throughput", storage=open_storage(url, create=False)).get_trials())
        added = n_after - n_before
        res = m["result"]
        rate = added / m["loop_s"]
        print(
            f"  [{label}] driver resume (open study, read {n_before} trials into the mirror): {m['setup_s']:.2f} s "
            f"(excluded); construction {m['construct_s']:.2f} s (excluded)"
        )
        print(
            f"  [{label}] driver: {added} new trials (trials {n_before}-{n_after - 1}; by status {res.by_status}) in "
            f"{m['loop_s']:.2f} s = {1000 * m['loop_s'] / added:.1f} ms/trial, {rate:.1f} trials/s"
        )
        if prof is not None:
            print_profile(prof, added)
        return rate, drv, study, n_before

    ours, drv, study, n_before = measure(url, "SQLite")
    journal, _, _, _ = measure(f"journal:///{tmp / 'study.log'}", "journal")

    template = next(t for t in reversed(study.get_trials(deepcopy=False)) if t.state.name == "COMPLETE")
    floor_s = storage_only(url, template, MEASURED)
    print(
        f"  [SQLite] the storage writes alone, {MEASURED} trials as the driver writes them ({len(template.params)} params, "
        f"{len(template.user_attrs)} user attributes; create_new_trial, result, state): {1000 * floor_s / MEASURED:.1f} "
        f"ms/trial, at most {MEASURED / floor_s:.1f} trials/s through Optuna's public storage API"
    )
    bare_s = bare_create(url, MEASURED)
    journal_ms, floor_ms = 1000 / journal, 1000 * floor_s / MEASURED
    print(
        f"  [SQLite] at {GOAL:.0f}/s a trial has {1000 / GOAL:.1f} ms; the driver on the cheapest storage (journal) "
        f"takes {journal_ms:.1f} ms, leaving {1000 / GOAL - journal_ms:+.1f} ms for SQLite's writes, which take "
        f"{floor_ms:.1f} ms (an empty create_new_trial alone: {1000 * bare_s / MEASURED:.1f} ms)"
    )
    plain_s, plain_n = plain_optuna(url, [*study.get_trials(deepcopy=False)[:n_before]], drv, MEASURED)
    plain = MEASURED / plain_s
    print(
        f"  plain Optuna ask+tell (default TPESampler, {n_before} -> {plain_n} trials, same SQLite file): "
        f"{1000 * plain_s / MEASURED:.1f} ms/trial, {plain:.1f} trials/s"
    )
    import ray

    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)  # the SQLite files and trial artifacts
    shutil.rmtree(RAY_TMP, ignore_errors=True)
    print(f"  total benchmark time: {time.perf_counter() - t_all:.0f} s; goal >= {GOAL:.0f}/s: ", end="")
    print("met" if ours >= GOAL else "MISSED")
    print(
        f"driver ask+tell at 1,000 trials: SQLite {ours:.1f}/s, journal {journal:.1f}/s vs plain Optuna "
        f"{plain:.1f}/s: {ours / plain:.1f}x (goal >= {GOAL:.0f}/s on SQLite)"
    )


if __name__ == "__main__":
    main()
