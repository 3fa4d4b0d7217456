"""A running trial's events and its end: recorded in one transaction, told to the sampler.

A worker's events (started, latency, eval, result or infeasible) update the trial in flight;
its end (or the worker's death, retried up to ``[resources] retries``) is written to storage
with its files, then told to the sampler's mirror and the book. Ctrl-C / SIGTERM records every
running trial as interrupted and queues it for the next run.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from ..errors import UserError
from .dispatch import trial_files
from .dispatching import Dispatching
from .executor import classify_error
from .opening import requeue
from .records import run_outcome, write_finished
from .state import InFlight

__all__ = ["Concluding"]

#: a trial's own worker output (prints, warnings, log records), once per trial
worker_log = logging.getLogger("placement_search.worker")


class Concluding(Dispatching):
    """The driver's part that follows running trials to their end (see the module docstring)."""

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

    def _conclude(self, fl: InFlight, failure: dict[str, Any] | None) -> None:
        """Record a dispatched trial's end (one transaction), tell the mirror and the book, and
        settle the proposals of the same placement that waited for it."""
        self.inflight.pop(fl.gen, None)
        final: dict[str, Any] = fl.final or {}
        status, state, values, ua = self._record_end(fl, final, failure)
        full_ua = {**fl.started_attrs, **ua}
        if fl.mirror is not None:
            partial = None
            if status == "early_stopped" and ua.get("accuracy") is not None:
                partial = self.costs.values(float(ua["accuracy"]), fl.costs)
            self.proposer.tell(fl.mirror, state, values, partial=partial)
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
        for mt, item in self.dup_waiting.pop(fl.key, []):  # duplicates proposed while this one ran
            trial_id, number, _, qua = item
            if fl.key in self.book.outcomes:
                extra: dict[str, Any] = {k: qua[k] for k in ("named", "retry_of") if k in qua}
                self._record_reused(mt, (trial_id, number), fl.key, fl.costs, extra)
            else:  # its twin failed: propose it again in turn (within the trial budget and slots)
                self.proposer.requeue(mt, item)

    def _record_end(
        self, fl: InFlight, final: dict[str, Any], failure: dict[str, Any] | None
    ) -> tuple[str, Any, list[float] | None, dict[str, Any]]:
        """Write a trial's end to storage: ``(status, state, values, result attributes)``."""
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
                fl.mirror.set_constraint("max_latency_ms", (fl.costs["latency_ms"] - max_ms) / max_ms)
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
        return status, state, values, ua

    def _artifacts(
        self, fl: InFlight, final: dict[str, Any], ua: dict[str, Any], values: list[float] | None
    ) -> list[tuple[str, bytes, str]]:
        """A finished trial's files for the artifact store (weights as ``keep_weights`` says)."""
        keep = self.cfg.artifacts.keep_weights
        kept = bool(final.get("weights")) and (
            keep == "all"
            or (keep == "pareto" and values is not None and self.book.on_estimate_front(fl.key, fl.steps, values))
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
