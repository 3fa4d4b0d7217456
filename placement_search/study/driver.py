"""The search driver: Optuna proposes placements, Ray workers train them, SQL storage keeps them.

One driver per study is the only writer to the study's storage. It asks the sampler for a
placement, measures its compute (before any training), and then either

* records it at once: **reused** (the same placement was already evaluated in this study),
  or **infeasible** (over a MACs or params budget); or
* dispatches a proxy run as a Ray task and records what comes back: ``ok`` (COMPLETE),
  ``early_stopped`` (PRUNED, see :mod:`.early_stop`), ``diverged`` / ``out_of_memory`` /
  ``failed`` / ``worker_died`` (FAIL, with the reason).

Where the time goes, and how the driver keeps up with a large cluster: Optuna's sampler
reads every trial of the study for each proposal, and a SQL storage commits each parameter
and attribute separately (about 25 commits per trial). The driver therefore samples on an
in-memory mirror of the study (the same trials, same sampler, same constraints) and writes
each trial to the storage in two transactions: one when it starts (parameters, placement,
costs, constraints) and one when it ends (results, state, values). A told result is
committed before the next proposal. Multi-objective TPE is run multivariate (one joint
model instead of one per decision), which is also the better model for interacting layers.

Resume: running a study again continues it. Trials left RUNNING by a driver that died are
marked failed (``driver_died``) and their placements queued again; Ctrl-C cancels running
trials, records them (``interrupted``) and queues them for the next run.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..placement import Placement, placement_key
from ..space import SearchSpace, load_space
from .book import Book
from .config import StudyConfig, check_study_name, resolve_evaluate_first
from .costing import StudyCosts
from .dispatch import proxy_budget, trial_files, trial_spec
from .executor import Executor, InlineExecutor, RayExecutor, classify_error
from .ladder import FollowUp, Ladder
from .latency_probe import LatencyProbe
from .lease import Lease
from .nodes import check_payload, node_problems
from .opening import artifact_dir, enqueue_first, open_study, recover, requeue, trial_params
from .proposer import Proposal, Proposer
from .records import run_attrs, run_fields, run_outcome, write_finished, write_trial
from .storage import open_storage, quiet_optuna

__all__ = ["RunResult", "SearchDriver", "canonical_key"]

#: a trial's own worker output (prints, warnings, log records), once per trial
worker_log = logging.getLogger("placement_search.worker")

#: proposals in a row that need no training before the driver decides the sampler is stuck
MAX_IDLE_PROPOSALS = 200
#: how often the trial slots are recomputed from the cluster's resources (nodes join and leave)
SLOTS_EVERY_S = 10.0
#: dispatched placements over the latency budget in a row before the budget is taken as infeasible
MAX_LATENCY_INFEASIBLE = 20


#: the name earlier releases exported for :func:`placement_search.placement.placement_key`
canonical_key = placement_key


@dataclass
class RunResult:
    study: str
    storage: str
    created: bool
    counted: int
    target_trials: int
    by_status: dict[str, int] = field(default_factory=dict)
    stop_reason: str = ""
    interrupted: bool = False
    signal: str | None = None  # "SIGINT" (Ctrl-C) or "SIGTERM" (a job scheduler) when interrupted
    elapsed_s: float = 0.0
    recovered: int = 0


@dataclass
class _InFlight:
    number: int
    trial_id: int
    mirror: Any  # optuna.Trial of the mirror study (None: a follow-up run, not the sampler's)
    key: str
    placement: Placement
    costs: dict[str, Any]
    spec: dict[str, Any]
    gen: Any = None
    attempt: int = 1
    started: float = 0.0
    curve: list[tuple[int, float]] = field(default_factory=list)
    named: str | None = None
    #: the user attributes written at dispatch
    started_attrs: dict[str, Any] = field(default_factory=dict)
    #: constraint system attributes written at dispatch
    constraints: frozenset[str] = frozenset()
    #: what the worker said: its host, the device it timed latency on, its last event
    host: str | None = None
    node: str | None = None  # the Ray node id
    latency_device: str | None = None
    final: dict[str, Any] | None = None
    #: the run: its steps, trainer seed and kind (sampled, repeat, promotion)
    steps: int = 0
    seed: int = 0
    kind: str = "sampled"


class _Interrupt(Exception):
    pass


def _now() -> _dt.datetime:
    return _dt.datetime.now()


class SearchDriver:
    """Runs (or resumes) one study.

    Args:
        cfg: the study configuration.
        storage: storage URL (default: the config's).
        study_name: study name (default: the config's).
        trials: stop once the study holds this many counted trials (trained, stopped early or
            failed for good; reused and infeasible ones are free). Default: the config's.
        timeout: stop proposing after this many seconds of this run; running trials finish.
        ray_address: ``"local"``: a new local Ray instance; ``"auto"`` or an address: join;
            ``None``: the cluster ``$RAY_ADDRESS`` names, else a new local instance.
        on_event: called with ``(kind, info)`` for progress displays.
        faults: test hook, placement string -> ``raise`` | ``diverge`` | ``kill`` (default: the JSON
            object in ``$PLACEMENT_SEARCH_FAULTS``).
        trial_fn: what a Ray task runs for a trial (default :func:`.worker.run_trial`): a generator
            taking the trial's spec and yielding events; benchmarks pass one that returns at once.
        executor: where trials run: ``"ray"`` (default), ``"inline"`` (one at a time in this
            process: table replays and tests), or an :class:`.executor.Executor`.
        publish_figures: called with ``(study, space)`` as trials finish (at most every few
            seconds) and at the end, to refresh live figures; ``placement-search run`` passes
            :func:`placement_search.inspect.figures.push_dashboard_figures` (optuna-dashboard's
            plots). A failure is a warning, never a lost study.
        queued_only: train the study's queued runs (``promote``, re-queued trials) and stop;
            propose nothing new.
        build_cache: build a real-video data set's decoded-clip cache on every node that lacks
            it before training (default: refuse to start, naming the node; ``placement-search
            cache build`` builds it ahead).
        ray_dashboard: serve Ray's dashboard on ``127.0.0.1`` at this port (a new local Ray
            instance; needs ``ray[default]``).
    """

    def __init__(
        self,
        cfg: StudyConfig,
        *,
        storage: str | None = None,
        study_name: str | None = None,
        trials: int | None = None,
        timeout: float | None = None,
        ray_address: str | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        faults: dict[str, str] | None = None,
        trial_fn: Callable[[dict[str, Any]], Any] | None = None,
        executor: Executor | str | None = None,
        publish_figures: Callable[[Any, SearchSpace], Any] | None = None,
        queued_only: bool = False,
        build_cache: bool = False,
        ray_dashboard: int | None = None,
    ) -> None:
        self.trial_fn = trial_fn
        self.build_cache = build_cache
        self.queued_only = queued_only
        self.publish_figures = publish_figures
        self.cfg = cfg
        self.storage_url = storage or cfg.storage
        self.study_name = check_study_name(study_name or cfg.name, "--study-name")
        self.target_trials = trials if trials is not None else cfg.trials
        if self.target_trials < 1:
            raise UserError(f"--trials: expected a positive integer, got {self.target_trials}")
        self.timeout = timeout if timeout is not None else cfg.timeout
        self.ray_address = ray_address if ray_address is not None else cfg.ray.address
        from .worker import run_trial

        fn = trial_fn or run_trial
        if executor is None or executor == "ray":
            self.executor: Executor = RayExecutor(
                fn, cfg.resources, cfg.ray, self.ray_address, dashboard_port=ray_dashboard
            )
        elif executor == "inline":
            self.executor = InlineExecutor(fn)
        elif isinstance(executor, Executor):
            self.executor = executor
        else:
            raise ValueError(f"executor: 'ray', 'inline' or an Executor, got {executor!r}")
        self.executor.check()
        #: latency timed on an idle device, once per placement ([latency] measure = "idle")
        self.probe: LatencyProbe | None = None
        self.on_event = on_event or (lambda kind, info: None)
        self.faults = faults if faults is not None else json.loads(os.environ.get("PLACEMENT_SEARCH_FAULTS", "{}"))
        self.space: SearchSpace = load_space(cfg.space)
        path = self.space.path
        self.space_text = Path(path).read_text(encoding="utf-8") if path and Path(path).is_file() else None
        self.first = resolve_evaluate_first(cfg, self.space)
        # compute at the target and proxy inputs, for every placement, from per-link tables
        self.costs = StudyCosts(cfg, self.space)
        self.target_costs, self.proxy_costs = self.costs.target, self.costs.proxy
        self.target_input, self.proxy_input = self.costs.target_input, self.costs.proxy_input
        self.costs.check_feasible_exists()
        self.inflight: dict[Any, _InFlight] = {}
        self.dup_waiting: dict[str, list[tuple[Any, tuple[int, int, dict[str, Any], dict[str, Any]]]]] = {}
        self.book = Book(cfg.directions, cfg.ladder.steps[0], list(cfg.objectives).index("accuracy"))
        #: the rungs (repeats, promotion); None: one run per placement
        self.ladder = Ladder(cfg.ladder, cfg.proxy.seed) if cfg.runs_per_placement else None
        self._mirror_stale = False
        self.idle_proposals = 0
        self.latency_streak = 0
        self.started = time.monotonic()
        self._last_push = self.started
        self._pushed_at = -1  # number of finished trials at the last figure push

    # -- set-up -------------------------------------------------------------------------------
    def _open_study(self) -> tuple[Any, bool]:
        self.storage = open_storage(self.storage_url, create=True)
        attrs: dict[str, Any] = {
            "target_input": self.target_input,
            "proxy_input": self.proxy_input,
            "proxy_num_classes": self.proxy_costs.num_classes,
        }
        if self.cfg.artifacts.enabled:
            attrs["artifact_dir"] = str(artifact_dir(self.cfg, None, self.storage_url))
        study, created = open_study(
            self.storage,
            name=self.study_name,
            url=self.storage_url,
            cfg=self.cfg,
            space=self.space,
            space_text=self.space_text,
            attrs=attrs,
        )
        self.study = study
        self.study_id = study._study_id
        enqueue_first(study, self.space, self.first)
        self.artifact_store = None
        if self.cfg.artifacts.enabled:
            from optuna.artifacts import FileSystemArtifactStore

            folder = artifact_dir(self.cfg, study.user_attrs.get("artifact_dir"), self.storage_url)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserError(f"[artifacts] path: cannot create {folder}: {e}") from None
            if study.user_attrs.get("artifact_dir") != str(folder):
                study.set_user_attr("artifact_dir", str(folder))
            self.artifact_store = FileSystemArtifactStore(str(folder))
        return study, created

    def _build_mirror(self) -> None:
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state.is_finished()]
        queue = [
            (t._trial_id, t.number, trial_params(t), dict(t.user_attrs))
            for t in sorted(trials, key=lambda t: t.number)
            if t.state == TrialState.WAITING
        ]
        self.proposer = Proposer(
            self.space,
            self.cfg.sampler,
            self.cfg.sampler_options,
            self.cfg.directions,
            self.cfg.seed,
            finished,
            queue,
            cost=self._sampler_cost,
        )
        for t in finished:
            self.book.load(t)
        # a resumed study with rungs or repeats: the sampler sees each placement's best estimate
        self._mirror_stale = self.ladder is not None and bool(finished)

    def _sampler_cost(self, params: dict[str, str]) -> tuple[list[float], bool]:
        """A placement's cost objectives (each minimised; MACs where an objective is measured,
        not known) and whether it is within the budgets: what a cost-aware sampler sees."""
        costs = self.costs.of(self.space.from_group_tokens(params, "sampler candidate"))
        known = [o for o in self.cfg.objectives if o in ("macs", "params")] or ["macs"]
        feasible = all(v <= 0 for v in self.costs.violations(costs).values())
        return [float(costs[o]) for o in known], feasible

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> RunResult:
        quiet_optuna()
        _, created = self._open_study()
        self.lease = Lease(self.study, self.study_name)
        self.lease.claim()
        if not self.queued_only:  # `promote` trains extra runs; the study's own budget stays
            self.study.set_user_attr("target_trials", self.target_trials)
        recovered = recover(self.study, self.storage)
        self._build_mirror()
        self._start_probe()
        self.counted_at_start = self.book.counted
        self.work_at_start = self.book.work
        self._terminate = False
        result = RunResult(self.study_name, self.storage_url, created, self.book.counted, self.target_trials)
        result.recovered = recovered
        self.on_event(
            "open",
            {
                "created": created,
                "recovered": recovered,
                "counted": self.book.counted,
                "queued": len(self.proposer.queue),
            },
        )
        if self._done_reason() is None:
            main = threading.current_thread() is threading.main_thread()
            if main:  # Ctrl-C and SIGTERM stop the study cleanly (signals reach the main thread only)
                old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
                old_term = signal.signal(signal.SIGTERM, self._on_term)
            try:
                self.executor.start()
                if main:  # again: ray.init installs its own SIGTERM handler, which aborts the process
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    signal.signal(signal.SIGTERM, self._on_term)
                self._check_nodes()
                self._loop(result)
            except (KeyboardInterrupt, _Interrupt) as e:
                self._cancel_all()
                result.interrupted = True
                result.signal = "SIGTERM" if isinstance(e, _Interrupt) else "SIGINT"
                result.stop_reason = (
                    f"interrupted ({result.signal}): running trials were cancelled and queued for the next run"
                )
            except BaseException:  # a configuration error found on a worker, a lost pipe, a bug:
                self._cancel_all()  # nothing is left RUNNING
                raise
            finally:
                if main:
                    signal.signal(signal.SIGINT, old_int)
                    signal.signal(signal.SIGTERM, old_term)
                self._push_figures(force=True)
                self.executor.stop()
        else:
            result.stop_reason = self._done_reason() or ""
        self.lease.release()
        result.counted = self.book.counted
        result.by_status = dict(sorted(self.book.by_status.items()))
        result.elapsed_s = time.monotonic() - self.started
        self.on_event("end", asdict(result))
        return result

    def _start_probe(self) -> None:
        """Latency on an idle device: what to measure, and what earlier runs measured."""
        if not self.cfg.needs_latency or self.cfg.latency.measure != "idle":
            return
        budget = proxy_budget(self.cfg)
        self.probe = LatencyProbe(
            self.executor,
            {
                "space": self.cfg.space,
                "space_toml": self.space_text,
                "input_shape": list(self.target_costs.input_shape),
                "num_classes": self.cfg.target.num_classes,
                "device": budget["device"],
                "runs": self.cfg.latency.runs,
                "warmup": self.cfg.latency.warmup,
            },
        )
        for key, outcome in self.book.outcomes.items():
            ua = outcome["user_attrs"]
            if ua.get("latency_ms") is not None:
                self.probe.remember(key, ua["latency_ms"], ua.get("latency_device"))

    def _parked(self) -> list[_InFlight]:
        return self.probe.parked if self.probe is not None else []

    def _latency_measured(self) -> None:
        """A wave of latencies ended: each parked trial trains, or is over the budget."""
        assert self.probe is not None
        started, todo = self.probe.started_at, self.probe.todo
        parked, error = self.probe.finish()
        self.on_event(
            "latency_wave",
            {"start": started, "end": time.time(), "measured": todo, "trials": len(parked), "error": error},
        )
        if error:
            self.on_event(
                "warning",
                {"message": f"the latency measurement failed ({error}); these trials time it on their own device"},
            )
        max_ms = self.cfg.constraints.max_latency_ms
        for fl in parked:
            hit = self.probe.lookup(fl.key)
            if hit is None:  # the measurement failed: the trial times it itself
                fl.spec["latency"] = {**fl.spec["latency"], "known_ms": None}
                self._submit(fl, measured=True)
                continue
            ms, device = hit
            fl.costs["latency_ms"], fl.latency_device = ms, device
            if max_ms is not None and ms > max_ms:
                reason = f"latency {ms:.2f} ms on {device} over max_latency_ms {max_ms:g}"
                fl.final = {"event": "infeasible", "latency_ms": ms, "reason": reason}
                self._conclude(fl, None)
            else:
                self._submit(fl)

    def _check_nodes(self) -> None:
        """Every node not checked yet: same package, data readable, caches built (or built
        now with ``build_cache``), GPUs visible; a problem stops the study before training."""
        if str(self.cfg.evaluator or "").startswith("table:"):
            return  # a table replay reads no data
        payload = check_payload(asdict(self.cfg.data), build_cache=self.build_cache)
        reports = self.executor.check_nodes(payload)
        if not reports:
            return
        where = str(self.cfg.path) if self.cfg.path else "STUDY_TOML"
        problems = node_problems(
            reports, study_toml=where, gpus_per_trial=self.cfg.resources.gpus, ray_gpus=self.executor.node_gpus()
        )
        if problems:
            raise UserError("before the first trial:\n  " + "\n  ".join(problems))
        self.on_event("nodes", {"nodes": [r.to_dict() for r in reports]})

    def _push_figures(self, *, force: bool = False) -> None:
        """Refresh the study's optuna-dashboard figures (Pareto front, hypervolume, placement
        heatmap, families) when trials finished since the last refresh. Never fails the study."""
        self._last_push = time.monotonic()
        finished = sum(self.book.by_status.values())
        if self.publish_figures is None or not self.cfg.artifacts.enabled:
            return
        if finished == self._pushed_at and not force:
            return
        try:
            self.publish_figures(self.study, self.space)
            self._pushed_at = finished
        except Exception as e:  # a figure is not worth a lost study
            self.on_event("warning", {"message": f"could not refresh the dashboard figures: {type(e).__name__}: {e}"})

    def _on_term(self, signum: int, frame: Any) -> None:
        # a flag, not an exception: raised inside Ray's wait, an exception becomes a SystemError;
        # the loop checks it at least once a second
        self._terminate = True

    def _over_budget(self) -> bool:
        """The trial budget is spent (training work, with the running trials' counted in)."""
        running = sum(self.book.weight(fl.steps) for fl in [*self.inflight.values(), *self._parked()])
        return self.book.work + running >= self.target_trials - 1e-9

    def _done_reason(self) -> str | None:
        if self.queued_only:
            if not self.proposer.queue:
                return "every queued run has been dispatched"
        elif self.cfg.sampler == "families":
            # with repeats or rungs, their follow-up runs first (within the trial budget)
            if not self.proposer.queue and (self._over_budget() or not self._follow_up_due()):
                return "every placement of evaluate_first has been evaluated"
        elif self._over_budget():
            return f"reached {self.target_trials} counted trials" + (
                " (training work, in runs at the lowest budget)" if self.ladder is not None else ""
            )
        if self.timeout is not None and time.monotonic() - self.started >= self.timeout:
            return f"time limit of {self.timeout:g} s reached"
        if self.idle_proposals >= MAX_IDLE_PROPOSALS and not self.proposer.queue and not self._follow_up_due():
            return (
                f"the sampler proposed {MAX_IDLE_PROPOSALS} placements in a row that were already evaluated or "
                "infeasible: the space (or its feasible part) looks exhausted"
            )
        sampled_inflight = sum(1 for fl in [*self.inflight.values(), *self._parked()] if fl.kind == "sampled")
        if (
            len(self.book.outcomes) + sampled_inflight >= self.space.size
            and not self.proposer.queue
            and not self._follow_up_due()
        ):
            return "every placement of the space has been evaluated"
        if self.latency_streak >= MAX_LATENCY_INFEASIBLE:
            return (
                f"the last {self.latency_streak} placements trained were all over max_latency_ms "
                f"{self.cfg.constraints.max_latency_ms:g}: the budget looks infeasible on the workers' device"
            )
        return None

    def _loop(self, result: RunResult) -> None:
        slots = self.executor.slots()
        self.on_event("ray", {"slots": slots, **self.executor.describe()})
        checked = time.monotonic()
        stop: str | None = None
        while True:
            if time.monotonic() - checked >= SLOTS_EVERY_S:
                # nodes join and leave a cluster: as many trials in flight as it holds now
                checked = time.monotonic()
                try:
                    now = self.executor.slots()
                except UserError:  # no room at all for a moment (a node left): keep what runs
                    now = slots
                if now != slots:
                    if now > slots:  # a node joined: checked before it trains
                        self._check_nodes()
                    self.on_event("slots", {"from": slots, "to": now})
                    slots = now
            # re-checked every time: a running trial that ends uncounted (over a latency budget)
            # frees its place in the trial budget again
            if self._terminate:
                raise _Interrupt()
            stop = self._done_reason()
            while stop is None and len(self.inflight) + len(self._parked()) < slots:
                if not self._follow_up():
                    self._propose()
                stop = self._done_reason()
            if self.probe is not None and self.probe.due(training=len(self.inflight)):
                self.probe.start()
            if not self.inflight and not self._parked():
                break
            if self._terminate:
                raise _Interrupt()
            handles = list(self.inflight) + ([self.probe.handle] if self.probe and self.probe.handle else [])
            for gen in self.executor.wait(handles, timeout=1.0):
                if self.probe is not None and self.probe.owns(gen):
                    self._latency_measured()
                else:
                    self._advance(gen)
            self.on_event("tick", self.snapshot())
            self.lease.beat()
            if time.monotonic() - self._last_push >= self.cfg.artifacts.figures_every:
                self._push_figures()
        result.stop_reason = stop or ""

    def snapshot(self) -> dict[str, Any]:
        return {
            "counted": self.book.counted,
            "counted_this_run": self.book.counted - getattr(self, "counted_at_start", 0),
            "work": self.book.work,
            "target": self.target_trials,
            "running": len(self.inflight) + len(self._parked()),
            "by_status": dict(self.book.by_status),
            "elapsed_s": time.monotonic() - self.started,
            "timeout": self.timeout,
            "pareto": self.book.front_size,
        }

    # -- proposing ----------------------------------------------------------------------------
    def _propose(self) -> None:
        if self._mirror_stale:
            # the sampler learns from the best fidelity each placement reached
            self.proposer.rebuild({k: self.book.estimate(k) for k in self.book.first_values})
            self._mirror_stale = False
        p = self.proposer.ask()
        if p.mt is None:  # a queued follow-up run (re-queued after a crash, or from `promote`)
            x = p.extra
            steps, seed = (
                int(x.get("budget_steps", self.cfg.proxy.steps)),
                int(x.get("trainer_seed", self.cfg.proxy.seed)),
            )
            fu = FollowUp(p.key, steps, seed, str(x.get("run_kind", "repeat")))
            self._dispatch_follow_up(fu, p.placement, p.waiting, {k: v for k, v in x.items() if k == "retry_of"})
            return
        inflight = any(fl.key == p.key for fl in self.inflight.values())
        if p.waiting is None and (p.key in self.book.outcomes or inflight):
            self._repeat(p)
            return
        costs = self._costs(p.placement)
        if p.key in self.book.outcomes:
            self._record_reused(p.mt, p.waiting, p.key, costs, p.extra)
            return
        if inflight:
            assert p.item is not None  # sampler proposals of running placements are repeats
            self.dup_waiting.setdefault(p.key, []).append((p.mt, p.item))
            self.idle_proposals += 1
            return
        violations = self.costs.violations(costs)
        if any(v > 0 for v in violations.values()):
            self._record_infeasible(p.mt, p.waiting, p.key, costs, violations, p.extra)
            return
        self.idle_proposals = 0
        self._dispatch(p.mt, p.waiting, p.key, p.placement, costs, violations, p.extra)

    # -- follow-up runs (repeats, promotion) ---------------------------------------------------
    def _taken_runs(self) -> set[tuple[str, int, int]]:
        taken = {(fl.key, fl.steps, fl.seed) for fl in self.inflight.values()}
        for _, _, params, ua in self.proposer.queue:
            steps, seed, kind = run_fields(ua)
            if kind != "sampled" and steps is not None and seed is not None:
                key = placement_key(self.space.from_group_tokens({g: str(v) for g, v in params.items()}, "queued run"))
                taken.add((key, steps, seed))
        return taken

    def _follow_up_due(self) -> bool:
        if self.ladder is None:
            return False
        return self.ladder.next(self.book.runs, self.book.costs(), self._taken_runs()) is not None

    def _follow_up(self) -> bool:
        """Dispatch the run the ladder asks for (more seeds at the top, a promotion), if any."""
        if self.ladder is None or self.proposer.queue:  # queued rows (named, re-queued) go first
            return False
        fu = self.ladder.next(self.book.runs, self.book.costs(), self._taken_runs())
        if fu is None:
            return False
        src = self.book.outcomes[fu.key]
        placement = Placement.from_dict(src["user_attrs"]["placement"])
        self._dispatch_follow_up(fu, placement, None, {})
        return True

    def _dispatch_follow_up(
        self, fu: FollowUp, placement: Placement, rdb_waiting: tuple[int, int] | None, extra: dict[str, Any]
    ) -> None:
        """Train a placement again: another trainer seed or a bigger budget. Not the sampler's
        proposal: it has no mirror trial; the sampler sees its effect when the mirror is rebuilt."""
        from optuna.trial import TrialState

        from .opening import group_params

        self.idle_proposals = 0
        costs = self._costs(placement)
        src = self.book.outcomes.get(fu.key)
        first = src["number"] if src is not None else None
        budget = proxy_budget(self.cfg, fu.steps, fu.seed)
        ua = {
            **costs,
            **extra,
            **run_attrs(budget, fu.kind, first),
        }
        if src is not None and src["user_attrs"].get("named"):
            ua["named"] = src["user_attrs"]["named"]
        params = group_params(self.space, placement)
        system = dict(src["system_attrs"]) if src is not None else {}
        trial_id, number = write_trial(
            self.storage,
            self.study_id,
            rdb_waiting,
            state=TrialState.RUNNING,
            params=params,
            distributions=self.proposer.dists,
            user_attrs=ua,
            system_attrs=system,
        )
        spec = self._spec(costs, number, named=True, run=(fu.steps, fu.seed, first if first is not None else number))
        fl = _InFlight(number, trial_id, None, fu.key, placement, costs, spec, named=ua.get("named"))
        fl.steps, fl.seed, fl.kind = fu.steps, fu.seed, fu.kind
        fl.started_attrs = ua
        fl.constraints = frozenset(system)
        self._submit(fl)
        self.on_event(
            "start",
            {
                "number": number,
                "placement": costs["placement_string"],
                "macs": costs["macs"],
                "run": fu.kind,
                "steps": fu.steps,
                "seed": fu.seed,
            },
        )

    def _repeat(self, p: Proposal) -> None:
        self.book.note("repeat")
        origin = self.book.outcomes[p.key]["number"] if p.key in self.book.outcomes else None
        taken = set(self.book.outcomes) | {fl.key for fl in self.inflight.values()}
        if self.proposer.repeated(p.mt, taken, origin):
            self.idle_proposals += 1

    def _costs(self, p: Placement) -> dict[str, Any]:
        return self.costs.of(p)

    # -- writing trials ---------------------------------------------------------------------
    def _write_new(
        self,
        mt: Any,
        rdb_waiting: tuple[int, int] | None,
        state: Any,
        values: list[float] | None,
        user_attrs: dict[str, Any],
    ) -> tuple[int, int]:
        """Write a trial: a new row (one call), or the WAITING row it came from."""
        frozen = self.proposer.frozen(mt)
        return write_trial(
            self.storage,
            self.study_id,
            rdb_waiting,
            state=state,
            params=mt.params,
            distributions=self.proposer.dists,
            user_attrs=user_attrs,
            system_attrs={k: v for k, v in frozen.system_attrs.items() if k != "fixed_params"},
            values=values,
        )

    def _record_reused(
        self, mt: Any, rdb_waiting: tuple[int, int] | None, key: str, costs: dict[str, Any], extra: dict[str, Any]
    ) -> None:
        from optuna.trial import TrialState

        src = self.book.outcomes[key]
        self.idle_proposals += 1
        transient = ("retry_of", "named", "attempts", "reused_from", "reused_status", "values")
        ua = {k: v for k, v in src["user_attrs"].items() if k not in transient}
        ua.update(extra, status="reused", reused_from=src["number"], reused_status=src["status"])
        for k, v in src["system_attrs"].items():  # "constraints:<name>", as Optuna stores them
            mt.set_constraint(k.split(":", 1)[1], float(v))
        state = src["state"]
        values = src["values"] if state == TrialState.COMPLETE else None
        self.proposer.tell(mt, state, values)
        self.book.note("reused")
        if rdb_waiting is None:
            # the sampler proposed a placement it had already seen: it is told the earlier result
            # (on its in-memory copy), and the study keeps each architecture once
            self.on_event("reused", {"number": None, "from": src["number"], "placement": ua.get("placement_string")})
            return
        # a queued trial (named placement, re-queued after a crash) is already a row: complete it
        _, number = self._write_new(mt, rdb_waiting, state, values, ua)
        self.on_event("reused", {"number": number, "from": src["number"], "placement": ua.get("placement_string")})

    def _set_constraints(self, mt: Any, violations: dict[str, float]) -> dict[str, Any]:
        for name, v in violations.items():
            mt.set_constraint(name, float(v))
        return {}

    def _record_infeasible(
        self,
        mt: Any,
        rdb_waiting: tuple[int, int] | None,
        key: str,
        costs: dict[str, Any],
        violations: dict[str, float],
        extra: dict[str, Any],
    ) -> None:
        from optuna.trial import TrialState

        self.idle_proposals += 1
        over = [k for k, v in violations.items() if v > 0]
        c = self.cfg.constraints
        reason = "; ".join(
            f"{k.removeprefix('max_')} {costs[k.removeprefix('max_')]:,} over {k} {getattr(c, k):,}" for k in over
        )
        ua = {**costs, **extra, **self._set_constraints(mt, violations), "status": "infeasible", "reason": reason}
        self.proposer.tell(mt, TrialState.PRUNED, None)
        _, number = self._write_new(mt, rdb_waiting, TrialState.PRUNED, None, ua)
        self.book.record("infeasible", key, self._outcome(number, TrialState.PRUNED, None, ua, mt))
        self.on_event("infeasible", {"number": number, "placement": costs["placement_string"], "reason": reason})

    def _outcome(self, number: int, state: Any, values: Any, ua: dict[str, Any], mt: Any) -> dict[str, Any]:
        frozen = self.proposer.frozen(mt)
        return {
            "number": number,
            "state": state,
            "values": values,
            "status": ua["status"],
            "user_attrs": dict(ua),
            "system_attrs": {k: v for k, v in frozen.system_attrs.items() if k.startswith("constraints:")},
        }

    def _dispatch(
        self,
        mt: Any,
        rdb_waiting: tuple[int, int] | None,
        key: str,
        placement: Placement,
        costs: dict[str, Any],
        violations: dict[str, float],
        extra: dict[str, Any],
    ) -> None:
        from optuna.trial import TrialState

        budget = proxy_budget(self.cfg)
        ua = {
            **costs,
            **extra,
            **self._set_constraints(mt, violations),
            **run_attrs(budget, "sampled"),
        }
        trial_id, number = self._write_new(mt, rdb_waiting, TrialState.RUNNING, None, ua)
        spec = self._spec(costs, number, named=bool(extra.get("named")))
        fl = _InFlight(number, trial_id, mt, key, placement, costs, spec, named=extra.get("named"))
        fl.steps, fl.seed = budget["steps"], budget["seed"]
        fl.started_attrs = ua
        fl.constraints = frozenset(k for k in self.proposer.frozen(mt).system_attrs if k.startswith("constraints:"))
        self._submit(fl)
        self.on_event("start", {"number": number, "placement": costs["placement_string"], "macs": costs["macs"]})

    def _spec(
        self, costs: dict[str, Any], number: int, *, named: bool, run: tuple[int, int, int] | None = None
    ) -> dict[str, Any]:
        return trial_spec(
            self.cfg,
            costs,
            number=number,
            space_text=self.space_text,
            target_shape=tuple(self.target_costs.input_shape),
            reference=self.book.reference,
            named=named,
            fault=self.faults.get(costs["placement_string"]),
            run=run,
        )

    def _submit(self, fl: _InFlight, *, measured: bool = False) -> None:
        lat = fl.spec.get("latency")
        if self.probe is not None and lat and lat.get("known_ms") is None and not measured:
            hit = self.probe.lookup(fl.key)
            # waits for the next wave of measurements on an idle device (a known one too, while
            # a wave gathers: it would keep the device busy)
            if hit is None or self.probe.parked:
                fl.started = time.monotonic()
                self.probe.park(fl)
                return
            fl.spec["latency"] = {**lat, "known_ms": hit[0], "device": hit[1]}
            fl.costs["latency_ms"], fl.latency_device = hit
        fl.gen = self.executor.submit(fl.spec)
        fl.started = time.monotonic()
        fl.curve = []
        self.inflight[fl.gen] = fl

    # -- results ------------------------------------------------------------------------------
    def _advance(self, gen: Any) -> None:
        fl = self.inflight[gen]
        try:
            event = self.executor.next_event(gen)
        except StopIteration:
            self._conclude(fl, None)
            return
        except Exception as e:  # a Ray error: the worker died, or the trial's code raised
            err = classify_error(e)
            if err.kind == "worker_died":
                del self.inflight[gen]
                if fl.attempt <= self.cfg.resources.retries:
                    fl.attempt += 1
                    self.on_event("retry", {"number": fl.number, "attempt": fl.attempt, "error": err.name})
                    self._submit(fl)
                else:
                    self.inflight[gen] = fl
                    reason = f"{err.message} in all {fl.attempt} attempts"
                    self._conclude(fl, {"status": "worker_died", "reason": reason})
            elif err.kind == "setup":
                # the study's set-up, not the placement, is wrong (unreadable data on a worker,
                # a device it does not have): every trial would fail the same way. Stop; the
                # run's clean-up records the running trials and queues them again.
                raise UserError(
                    f"trial {fl.number} ({fl.costs['placement_string']}) on a worker: {err.message}\n"
                    "the study stopped; its running trials are queued again: fix the study file and run it again"
                ) from None
            else:
                self._conclude(fl, {"status": "failed", "reason": err.message})
            return
        kind = event.get("event")
        if kind == "started":
            fl.host = event["host"]
            fl.node = event.get("node")
        elif kind == "latency":
            fl.costs["latency_ms"] = event["latency_ms"]
            fl.latency_device = event["device"]
        elif kind == "eval":
            fl.curve.append((int(event["step"]), float(event["accuracy"])))
            # live learning curves in optuna-dashboard (Trial.report is single-objective only in
            # Optuna; the storage takes intermediate values for any study)
            self.storage.set_trial_intermediate_value(fl.trial_id, int(event["step"]), float(event["accuracy"]))
            self.on_event("eval", {"number": fl.number, "step": event["step"], "accuracy": event["accuracy"]})
        elif kind in ("result", "infeasible"):
            fl.final = event

    def _conclude(self, fl: _InFlight, failure: dict[str, Any] | None) -> None:
        """Record a dispatched trial's end (one transaction) and tell the mirror."""

        self.inflight.pop(fl.gen, None)
        final: dict[str, Any] = fl.final or {}
        ua: dict[str, Any] = {"wall_time_s": round(time.monotonic() - fl.started, 3), "host": fl.host}
        if fl.node:
            ua["node"] = fl.node
        if fl.attempt > 1:
            ua["attempts"] = fl.attempt
        values = None
        if "latency_ms" in fl.costs:
            ua["latency_ms"] = fl.costs["latency_ms"]
            ua["latency_device"] = fl.latency_device
            max_ms = self.cfg.constraints.max_latency_ms
            if max_ms is not None and fl.mirror is not None:
                v = (fl.costs["latency_ms"] - max_ms) / max_ms
                fl.mirror.set_constraint("max_latency_ms", v)
        status, state, result = run_outcome(final, failure, margin=self.cfg.early_stopping.margin)
        ua.update(result)
        if status == "ok":
            values = self.costs.values(result["accuracy"], fl.costs)
        files = self._artifacts(fl, final, ua, values) if self.artifact_store is not None else []
        # constraints set since dispatch (a measured latency): the others are stored already
        frozen_sys = self.proposer.frozen(fl.mirror).system_attrs if fl.mirror is not None else {}
        system_attrs = {k: v for k, v in frozen_sys.items() if k.startswith("constraints:") and k not in fl.constraints}
        write_finished(
            self.storage,
            fl.trial_id,
            state=state,
            result=ua,
            values=values,
            system_attrs=system_attrs,
            files=files,
            artifact_store=self.artifact_store,
        )
        full_ua = {**fl.started_attrs, **ua}
        if fl.mirror is not None:
            self.proposer.tell(fl.mirror, state, values)
            outcome = self._outcome(fl.number, state, values, full_ua, fl.mirror)
        else:
            src = self.book.outcomes.get(fl.key)
            outcome = {
                "number": fl.number,
                "state": state,
                "values": values,
                "status": status,
                "user_attrs": dict(full_ua),
                "system_attrs": dict(src["system_attrs"]) if src is not None else {},
            }
        if self.ladder is not None and fl.mirror is None:
            self._mirror_stale = True  # a follow-up changed a placement's estimate
        self.book.record(status, fl.key, outcome)
        self.latency_streak = self.latency_streak + 1 if status == "infeasible" else 0
        self.book.add_curve(fl.number, full_ua, status)
        self.on_event(
            "end_trial",
            {
                "number": fl.number,
                "status": status,
                "placement": fl.costs["placement_string"],
                "accuracy": ua.get("accuracy"),
                "macs": fl.costs["macs"],
                "wall_time_s": ua["wall_time_s"],
                "reason": ua.get("reason"),
                "run": fl.kind,
                "steps": fl.steps,
                "seed": fl.seed,
                "output": final.get("output"),
            },
        )
        if final.get("output"):  # what the worker printed or warned (Ray keeps its own logs quiet)
            worker_log.info("trial %d on %s:\n%s", fl.number, fl.host or "?", final["output"])
        # duplicates proposed while this one ran
        for mt, item in self.dup_waiting.pop(fl.key, []):
            trial_id, number, _, qua = item
            if fl.key in self.book.outcomes:
                extra: dict[str, Any] = {k: qua[k] for k in ("named", "retry_of") if k in qua}
                self._record_reused(mt, (trial_id, number), fl.key, fl.costs, extra)
            else:  # its twin failed: propose it again in turn (within the trial budget and slots)
                self.proposer.requeue(mt, item)

    def _artifacts(
        self, fl: _InFlight, final: dict[str, Any], ua: dict[str, Any], values: list[float] | None
    ) -> list[tuple[str, bytes, str]]:
        """A finished trial's files for the artifact store (weights as ``keep_weights`` says)."""
        keep = self.cfg.artifacts.keep_weights
        kept = bool(final.get("weights")) and (
            keep == "all" or (keep == "pareto" and values is not None and self.book.on_front(values))
        )
        if kept:
            ua["weights_kept"] = True
        return trial_files(fl.costs["placement"], final, kept)

    def _cancel_all(self) -> None:
        """Ctrl-C / SIGTERM: cancel running trials, record them, queue them for the next run."""
        from optuna.trial import TrialState

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        for gen in list(self.inflight):
            self.executor.cancel(gen)
        self.inflight.clear()
        if self.probe is not None:  # parked trials are RUNNING in storage: recorded below
            self.probe.cancel()
        self.dup_waiting.clear()  # their WAITING rows (if any) stay WAITING: the next run takes them
        # every RUNNING trial of the study is this driver's (one driver per study), including one
        # the interrupt caught between its storage write and its dispatch
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            ua = {"status": "interrupted", "reason": "cancelled by the user (Ctrl-C or SIGTERM)"}
            try:
                write_finished(self.storage, t._trial_id, state=TrialState.FAIL, result=ua)
                requeue(self.study, t)
            except Exception:
                continue  # left RUNNING: the next run recovers it
            self.book.note("interrupted")
