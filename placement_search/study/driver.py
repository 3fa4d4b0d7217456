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

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..placement import placement_key
from ..space import SearchSpace, load_space
from .book import Book
from .concluding import Concluding
from .config import StudyConfig, check_study_name, resolve_evaluate_first
from .costing import StudyCosts
from .executor import Executor, InlineExecutor, RayExecutor
from .ladder import Ladder
from .latency_probe import LatencyProbe, idle_probe
from .lease import Lease
from .nodes import check_payload, node_problems
from .opening import artifact_dir, enqueue_first, open_study, recover, trial_params
from .proposer import Proposer
from .records import trial_attrs
from .state import InFlight
from .storage import open_storage, quiet_optuna

__all__ = ["RunResult", "SearchDriver", "canonical_key"]

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


class _Interrupt(Exception):
    pass


def _executor(
    executor: Executor | str | None,
    trial_fn: Callable[[dict[str, Any]], Any] | None,
    cfg: StudyConfig,
    address: str | None,
    dashboard_port: int | None,
) -> Executor:
    """The executor the driver's ``executor`` argument names (see :class:`SearchDriver`)."""
    from .worker import run_trial

    fn = trial_fn or run_trial
    if executor is None or executor == "ray":
        return RayExecutor(fn, cfg.resources, cfg.ray, address, dashboard_port=dashboard_port)
    if executor == "inline":
        return InlineExecutor(fn)
    if isinstance(executor, Executor):
        return executor
    raise ValueError(f"executor: 'ray', 'inline' or an Executor, got {executor!r}")


def _study_space(cfg: StudyConfig, space: SearchSpace | None, space_text: str | None) -> tuple[SearchSpace, str | None]:
    """The study's space and its file's text: as given (a resumed study's own, from the text it
    stored: ``promote``), else the space ``cfg.space`` names, read now."""
    if space is not None:
        return space, space_text
    loaded = load_space(cfg.space)
    path = loaded.path
    return loaded, Path(path).read_text(encoding="utf-8") if path and Path(path).is_file() else None


class SearchDriver(Concluding):
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
        space, space_text: the study's search space and the space file's text, as a resumed study
            stored them (default: the space ``cfg.space`` names, read now). ``promote`` passes
            them, so that a study whose space file has moved can still be promoted.
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
        space: SearchSpace | None = None,
        space_text: str | None = None,
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
        self.executor = _executor(executor, trial_fn, cfg, self.ray_address, ray_dashboard)
        self.executor.check()
        #: latency timed on an idle device, once per placement ([latency] measure = "idle")
        self.probe: LatencyProbe | None = None
        self.on_event = on_event or (lambda kind, info: None)
        self.faults = faults if faults is not None else json.loads(os.environ.get("PLACEMENT_SEARCH_FAULTS", "{}"))
        self.space, self.space_text = _study_space(cfg, space, space_text)
        self.first = resolve_evaluate_first(cfg, self.space)
        # compute at the target and proxy inputs, for every placement, from per-link tables
        self.costs = StudyCosts(cfg, self.space)
        self.target_costs, self.proxy_costs = self.costs.target, self.costs.proxy
        self.target_input, self.proxy_input = self.costs.target_input, self.costs.proxy_input
        self.costs.check_feasible_exists()
        self.inflight: dict[Any, InFlight] = {}
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
        self.study_id = self.storage.get_study_id_from_name(study.study_name)
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
            partial=self._partial_values,
        )
        for t in finished:
            self.book.load(t)
        # a resumed study with rungs or repeats: the sampler sees each placement's best estimate
        self._mirror_stale = self.ladder is not None and bool(finished)

    def _partial_values(self, trial: Any) -> list[float] | None:
        """A stored early-stopped trial's objective values, with its accuracy when it stopped."""
        ua = trial_attrs(trial)
        if ua.get("status") != "early_stopped" or ua.get("accuracy") is None or ua.get("macs") is None:
            return None
        try:
            return self.costs.values(float(ua["accuracy"]), ua)
        except (KeyError, TypeError, ValueError):
            return None

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
        self.probe = idle_probe(
            self.cfg, self.executor, self.space_text, self.target_costs.input_shape, self.book.outcomes
        )

    def _parked(self) -> list[InFlight]:
        return self.probe.parked if self.probe is not None else []

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
