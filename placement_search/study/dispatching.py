"""Turning proposals into trials.

The sampler's proposal (or a follow-up run of the rungs, or a queued row) becomes a stored
trial and then one of: **reused** (its placement was evaluated already: recorded at once with
that result), **infeasible** (over a MACs or params budget: recorded at once, never trained),
a **repeat** (a placement proposed again: a neighbour is proposed instead) or **dispatched**
(written RUNNING, its spec sent to the executor, or parked until its latency is measured).
"""

from __future__ import annotations

import time
from typing import Any

from ..placement import Placement, placement_key
from .dispatch import proxy_budget, trial_spec
from .ladder import FollowUp
from .proposer import Proposal
from .records import run_attrs, run_fields, write_trial
from .state import DriverState, InFlight

__all__ = ["Dispatching"]


class Dispatching(DriverState):
    """The driver's part that proposes and dispatches (see the module docstring)."""

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
        fl = InFlight(number, trial_id, None, fu.key, placement, costs, spec, named=ua.get("named"))
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
        fl = InFlight(number, trial_id, mt, key, placement, costs, spec, named=extra.get("named"))
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

    def _submit(self, fl: InFlight, *, measured: bool = False) -> None:
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
