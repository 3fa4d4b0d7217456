"""The driver's book of a study: what each placement's outcome was, how many trials count
against the budget, the current front and the early-stopping reference curves. Filled from the
stored trials on resume and from each trial as it ends; nothing here touches storage."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from ..pareto import dominates
from ..placement import placement_key
from .early_stop import Reference
from .ladder import Run
from .records import COUNTED, FINAL, run_fields, trial_attrs, trial_status

#: statuses of a trial that was a run (trained, stopped, failed, cut short, or over a latency
#: budget measured on its worker): the ladder never asks for one of these again
RUN_STATUSES = (*COUNTED, "driver_died", "interrupted", "infeasible")

__all__ = ["Book"]


class Book:
    """Args:
    directions: ``"maximize"``/``"minimize"`` per objective, in the study's order.
    base_steps: the lowest rung's steps: a run of ``s`` steps is ``s / base_steps`` trials' worth
        of training (the trial budget counts work, so a promoted run counts by its steps).
    accuracy_index: where accuracy is among the objectives.
    """

    def __init__(self, directions: Sequence[str], base_steps: int | None = None, accuracy_index: int = 0) -> None:
        self.directions = list(directions)
        self.base_steps = base_steps
        self.acc_i = accuracy_index
        #: placement key -> its training runs (every outcome), for the ladder
        self.runs: dict[str, list[Run]] = {}
        #: placement key -> its objective values from its first ok run (costs exact or measured once)
        self.first_values: dict[str, list[float]] = {}
        #: training work counted against the budget, in runs at ``base_steps``
        self.work = 0.0
        #: placement key -> the first final outcome of that placement (what a repeat reuses)
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.by_status: dict[str, int] = {}
        self.counted = 0
        self.reference: list[Reference] = []
        self._front: list[tuple[float, ...]] = []

    # -- filling ----------------------------------------------------------------------------
    def load(self, trial: Any) -> None:
        """A finished trial read from storage (a resume)."""
        attrs = trial_attrs(trial)
        status = trial_status(trial, attrs)
        outcome = {
            "number": trial.number,
            "state": trial.state,
            "values": trial.values,
            "status": status,
            "user_attrs": attrs,
            "system_attrs": {k: v for k, v in trial.system_attrs.items() if k.startswith("constraints:")},
        }
        p = attrs.get("placement")
        self.record(status, placement_key(p) if p else None, outcome)
        self.add_curve(trial.number, attrs, status)

    def record(self, status: str, key: str | None, outcome: dict[str, Any] | None) -> None:
        """A trial's end: counted by status; its outcome kept when final and first for its placement."""
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if status in COUNTED:
            self.counted += 1
        steps, seed, _ = run_fields(outcome["user_attrs"]) if outcome else (None, None, "")
        if status in COUNTED:
            self.work += self.weight(steps)
        if key and outcome and status in RUN_STATUSES and steps is not None:
            acc = outcome["values"][self.acc_i] if status == "ok" and outcome["values"] else None
            self.runs.setdefault(key, []).append(Run(steps, seed if seed is not None else 0, status, acc))
            if acc is not None and key not in self.first_values:
                self.first_values[key] = list(outcome["values"])
        if key and outcome and status in FINAL and key not in self.outcomes:
            self.outcomes[key] = outcome
            self._add_to_front(outcome)

    def weight(self, steps: int | None) -> float:
        """A run's training work in runs at the lowest rung."""
        if not steps or not self.base_steps:
            return 1.0
        return steps / self.base_steps

    def costs(self) -> dict[str, list[float]]:
        """Placement key -> its cost objectives, each minimised (for the ladder)."""
        return {
            k: [v if d == "minimize" else -v for i, (v, d) in enumerate(zip(vals, self.directions)) if i != self.acc_i]
            for k, vals in self.first_values.items()
        }

    def estimate(self, key: str) -> list[float] | None:
        """A placement's values as the sampler should see them: accuracy the mean of its ok runs
        at the highest budget it reached (None: no ok run)."""
        vals = self.first_values.get(key)
        ok = self._ok_runs(key)
        if vals is None or not ok:
            return None
        out = list(vals)
        out[self.acc_i] = _top_mean(ok)[1]
        return out

    def _ok_runs(self, key: str) -> list[tuple[int, float]]:
        """``(steps, accuracy)`` of a placement's ok runs."""
        return [(r.steps, r.accuracy) for r in self.runs.get(key, ()) if r.status == "ok" and r.accuracy is not None]

    def note(self, status: str) -> None:
        """A non-trial event counted by kind (``repeat``, ``reused``, ``interrupted``)."""
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def add_curve(self, number: int, attrs: dict[str, Any], status: str) -> None:
        """A trained trial's held-out accuracy by step: the reference the early-stopping rule uses."""
        steps, _, kind = run_fields(attrs)
        if kind != "sampled" or (self.base_steps and steps and steps != self.base_steps):
            return  # follow-up runs run their whole budget; curves compare at one budget only
        if status in ("ok", "early_stopped") and attrs.get("eval_curve") and attrs.get("macs") is not None:
            curve = {int(s): float(a) for s, a in attrs["eval_curve"]}
            self.reference.append(Reference(number, int(attrs["macs"]), curve))

    # -- the front ----------------------------------------------------------------------------
    def minimised(self, values: Sequence[float]) -> tuple[float, ...]:
        return tuple(v if d == "minimize" else -v for v, d in zip(values, self.directions))

    def _add_to_front(self, outcome: dict[str, Any]) -> None:
        if outcome["status"] != "ok" or not outcome["values"] or any(c > 0 for c in outcome["system_attrs"].values()):
            return
        p = self.minimised(outcome["values"])
        if p in self._front or any(dominates(q, p) for q in self._front):
            return
        self._front = [q for q in self._front if not dominates(p, q)] + [p]

    def on_estimate_front(self, key: str, steps: int | None, values: Sequence[float]) -> bool:
        """Whether placement ``key``, once a new ok run (``steps``; ``values`` its objective
        values) counts, is on the front of per-placement estimates: each placement's mean
        accuracy at the highest budget it reached, as ``pareto`` reports it, among the
        placements whose highest budget is the same as this one's (a placement whose first
        outcome broke a constraint is not on it). This, not the run's own accuracy, decides
        whether a repeat's or a promoted run's weights are worth keeping."""
        top, mean = _top_mean([*self._ok_runs(key), (steps or 0, float(values[self.acc_i]))])
        mine = list(self.first_values.get(key, values))
        mine[self.acc_i] = mean
        p = self.minimised(mine)
        for k, vals in self.first_values.items():
            ok = self._ok_runs(k)
            if k == key or not ok or self._broke_constraint(k):
                continue
            their_top, their_mean = _top_mean(ok)
            if their_top != top:
                continue
            theirs = list(vals)
            theirs[self.acc_i] = their_mean
            if dominates(self.minimised(theirs), p):
                return False
        return True

    def _broke_constraint(self, key: str) -> bool:
        outcome = self.outcomes.get(key)
        return outcome is not None and any(c > 0 for c in outcome["system_attrs"].values())

    @property
    def front_size(self) -> int:
        return len(self._front)


def _top_mean(runs: list[tuple[int, float]]) -> tuple[int, float]:
    """``(top steps, mean accuracy of the runs at them)`` of ``(steps, accuracy)`` runs."""
    top = max(s for s, _ in runs)
    return top, statistics.fmean(a for s, a in runs if s == top)
