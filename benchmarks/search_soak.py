"""Soak test of the search driver: 10,000 trials in one run, driver memory and throughput over time.

Goal (the issue): "10,000 trials with a trainer that returns at once, driver memory flat (report
the RSS at 1k and 10k) and throughput still >= 50 trials/s."

Method. The study of ``benchmarks/search_throughput.py`` (the ``inception`` space, 11 decisions,
7.3M placements; a MACs budget every placement meets, so each trial carries a constraint;
accuracy up, MACs down; the driver's default sampler, multivariate TPE on its in-memory mirror;
early stopping on, so each dispatch carries the reference curves; artifacts on, the default), on
a new SQLite file (the default, embedded storage), 2 Ray workers (``cpus = 1`` each), a trial
function that returns at once (a made-up accuracy from the placement). One
``SearchDriver(...).run()`` from an empty study to ``--trials`` (10,000) counted trials, no
pre-fill: the study grows by the driver's own writes only.

Measured, in this process (the driver's), through the driver's ``on_event`` hook (called on
the driver's thread; every trial the driver adds to the study ends with one ``end_trial`` or
``infeasible`` event; a re-proposed placement is not stored and not counted):

* RSS (``VmRSS`` of ``/proc/self/status``: the Python heap, Ray's core worker, SQLite's cache)
  when the study reaches 1,000 trials (the baseline) and at the end (10,000), and every
  1,000 trials in between (printed as it goes), with the sizes of the driver's per-trial
  structures, and the peak (``VmHWM``) at the end;
* throughput: trials over the first 1,000 (the baseline: from the first proposal, i.e. the
  driver's ``ray`` event, to the 1,000th trial's end; Ray is started before, not timed) and over
  the last 1,000 (the 9,000th trial's end to the 10,000th's), and overall.

Headline (last line): RSS at 10k / RSS at 1k (flat: <= 1.10, this benchmark's threshold), and
throughput over the last 1,000 trials / over the first 1,000, with the absolute values and
the goal check (>= 50 trials/s over the last 1,000).

With ``--trials N`` (a quick check) the RSS baseline stays at 1,000 trials (``N // 2`` when N is
1,000 or less; ``--base`` sets it), and the throughput windows are the first and the last
``min(1000, N // 2)`` trials, so that they never overlap (``--trials 1500``: 750 each).

Ray: as in ``search_throughput.py``, a new local instance (``address="local"``: never another
user's) with its session folder in a short private ``/tmp/rb*`` folder (it holds unix sockets),
removed at the end with the study folder. The study, the trainer and the Ray start are
``benchmarks/_driver.py``'s, shared with ``search_throughput.py``.

    python benchmarks/search_soak.py [--trials N] [--base B]

Typical runtime on 2 CPU cores: 15-25 trials/s over the first 1,000 trials, falling as the study
grows (the sampler and the early-stopping references read every trial the driver holds) to
about 4 trials/s by 10,000, so the default 10,000 trials take about 25 minutes (23 measured,
with other work on the machine); ``--trials 1500`` about a minute and a half. The last line
printed is the headline.
"""

from __future__ import annotations

import argparse
import array
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _driver import STUDY, noop_trial, start_ray

TRIALS = 10_000
BASE = 1_000  # the RSS baseline and the throughput windows, in trials
GOAL = 50.0  # trials/s, over the last window
FLAT = 1.10  # RSS at the end / RSS at the baseline counted as flat
EVERY = 1_000  # progress lines (RSS, rate) every this many trials


def proc_status_mib(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MiB (psutil is not a dependency)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


class Soak:
    """The driver's ``on_event`` hook: trial end times, and RSS at the checkpoints."""

    def __init__(self, trials: int, base: int, every: int) -> None:
        self.trials = trials
        self.base = base
        self.every = every
        #: perf_counter at each trial's end (preallocated: the benchmark's own memory stays flat)
        self.ends = array.array("d", bytes(8 * trials))
        self.n = 0
        self.loop_start: float | None = None
        self.rss: dict[int, float] = {}
        self.sizes: dict[int, dict[str, int]] = {}
        self.events: dict[str, int] = {}
        self.drv: Any = None

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        self.events[kind] = self.events.get(kind, 0) + 1
        if kind == "ray":
            self.loop_start = now
            self.rss[0] = proc_status_mib("VmRSS")
        elif kind in ("end_trial", "infeasible") or (kind == "reused" and info.get("number") is not None):
            if self.n < self.trials:
                self.ends[self.n] = now
            self.n += 1
            if self.n == self.base or self.n % self.every == 0 or self.n == self.trials:
                self.checkpoint()

    def checkpoint(self) -> None:
        n = self.n
        self.rss[n] = proc_status_mib("VmRSS")
        self.sizes[n] = self.driver_sizes()
        if self.loop_start is not None:
            elapsed = self.ends[n - 1] - self.loop_start
            w = min(self.every, n)
            prev = self.ends[n - 1 - w] if n > w else self.loop_start
            rate = w / max(self.ends[n - 1] - prev, 1e-9)
            sizes = ", ".join(f"{k} {v}" for k, v in self.sizes.get(n, {}).items())
            print(
                f"  {n:6d} trials: {elapsed:7.1f} s, last {w} at {rate:5.1f} trials/s, "
                f"RSS {self.rss[n]:7.1f} MiB (driver holds: {sizes})",
                flush=True,
            )

    def driver_sizes(self) -> dict[str, int]:
        """Entries in the driver's per-trial structures (a diagnosis, read from its internals:
        left out, not failed, where they have moved)."""
        d, out = self.drv, {}
        probes = {
            "mirror trials": lambda: len(
                d.proposer.storage.get_all_trials(d.proposer.mirror._study_id, deepcopy=False)
            ),
            "sampler history": lambda: len(d.proposer.history),
            "outcomes": lambda: len(d.book.outcomes),
            "reference curves": lambda: len(d.book.reference),
            "storage cache": lambda: len(d.storage._studies[d.study_id].trials),  # optuna's _CachedStorage
        }
        for name, probe in probes.items():
            try:
                out[name] = int(probe())
            except Exception:
                continue
        return out

    def rate(self, first: int, last: int) -> float:
        """Trials/s over trials ``first+1 .. last`` (1-based; 0: from the first proposal)."""
        assert self.loop_start is not None
        t0 = self.loop_start if first == 0 else self.ends[first - 1]
        return (last - first) / max(self.ends[last - 1] - t0, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=TRIALS, help=f"trials in the soak (default {TRIALS:,})")
    ap.add_argument(
        "--base",
        type=int,
        default=None,
        help=f"the RSS baseline checkpoint, in trials (default {BASE:,}; trials // 2 for {BASE:,} trials or fewer)",
    )
    args = ap.parse_args()
    n_trials = args.trials
    if n_trials < 4:
        ap.error("--trials: at least 4")
    base = args.base if args.base is not None else (BASE if n_trials > BASE else n_trials // 2)
    if not 1 <= base < n_trials:
        ap.error(f"--base: between 1 and --trials - 1 ({n_trials - 1})")
    window = min(BASE, n_trials // 2)  # throughput windows: the first and the last, never overlapping

    import optuna

    from placement_search.study.config import load_study_config
    from placement_search.study.driver import SearchDriver
    from placement_search.study.storage import quiet_optuna

    quiet_optuna()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    t_all = time.perf_counter()
    ray_tmp = tempfile.mkdtemp(prefix="rb", dir="/tmp")  # short: Ray's unix sockets live there
    tmp = Path(tempfile.mkdtemp(prefix="bench_soak_"))
    url = f"sqlite:///{tmp / 'study.db'}"
    import ray

    try:
        print(
            f"soak: {n_trials:,} trials, inception space, SQLite {tmp / 'study.db'}, 2 Ray workers (cpus=1 each), "
            f"no-op trainer; optuna {optuna.__version__}, ray {ray.__version__}, python {sys.version.split()[0]}; "
            f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
            flush=True,
        )
        print(f"  ray.init: {start_ray(ray_tmp):.2f} s (excluded)", flush=True)
        path = tmp / "soak.toml"
        path.write_text(STUDY.format(name="soak", trials=n_trials))
        cfg = load_study_config(path)
        soak = Soak(n_trials, base, EVERY)
        t0 = time.perf_counter()
        drv = SearchDriver(cfg, storage=url, trials=n_trials, trial_fn=noop_trial, on_event=soak)
        soak.drv = drv
        rss_before = proc_status_mib("VmRSS")
        print(
            f"  driver construction (space cost tables): {time.perf_counter() - t0:.2f} s (excluded); "
            f"RSS before the run {rss_before:.1f} MiB",
            flush=True,
        )
        t1 = time.perf_counter()
        result = drv.run()
        run_s = time.perf_counter() - t1
        n = soak.n
        print(
            f"  driver run: {n:,} trials added (by status {result.by_status}; stop: {result.stop_reason}) "
            f"in {run_s:.1f} s; RSS at the first proposal {soak.rss.get(0, float('nan')):.1f} MiB",
            flush=True,
        )
        if n < n_trials:
            raise SystemExit(f"the driver stopped at {n} trials of {n_trials}: {result.stop_reason}")
    finally:
        ray.shutdown()  # this process's own local instance only (never `ray stop`)
        shutil.rmtree(tmp, ignore_errors=True)  # the SQLite file and the trial artifacts
        shutil.rmtree(ray_tmp, ignore_errors=True)

    rss_base, rss_end, peak = soak.rss[base], soak.rss[n_trials], proc_status_mib("VmHWM")
    first, last = soak.rate(0, window), soak.rate(n_trials - window, n_trials)
    overall = soak.rate(0, n_trials)
    growth_kib = (rss_end - rss_base) * 1024 / (n_trials - base)
    print(
        f"  RSS at {base:,} trials {rss_base:.1f} MiB, at {n_trials:,} trials {rss_end:.1f} MiB "
        f"({growth_kib:+.1f} KiB per trial in between); peak (VmHWM) {peak:.1f} MiB"
    )
    print(
        f"  throughput: trials 1-{window:,} {first:.1f} trials/s, trials {n_trials - window + 1:,}-{n_trials:,} "
        f"{last:.1f} trials/s, all {n_trials:,} {overall:.1f} trials/s"
    )
    flat = rss_end / rss_base <= FLAT
    met = last >= GOAL
    print(
        f"  total benchmark time: {time.perf_counter() - t_all:.0f} s; goal >= {GOAL:.0f} trials/s over the last "
        f"{window:,}: {'met' if met else 'not met'} ({last:.1f}); RSS flat (end/base <= {FLAT:.2f}): "
        f"{'yes' if flat else 'no'} ({rss_end / rss_base:.2f})"
    )
    print(
        f"driver soak, {n_trials:,} trials: RSS at {n_trials:,} / at {base:,} = {rss_end / rss_base:.2f} "
        f"({rss_end:.1f} / {rss_base:.1f} MiB); throughput last {window:,} / first {window:,} = {last / first:.2f} "
        f"({last:.1f} / {first:.1f} trials/s; goal >= {GOAL:.0f}: {'met' if met else 'not met'})"
    )


if __name__ == "__main__":
    main()
