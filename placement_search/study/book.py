"""The driver's book of a study: what each placement's outcome was, how many trials count
against the budget, the current front and the early-stopping reference curves. Filled from the
stored trials on resume and from each trial as it ends; nothing here touches storage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..pareto import dominates
from ..placement import placement_key
from .early_stop import Reference
from .records import COUNTED, FINAL, trial_attrs, trial_status

__all__ = ["Book"]


class Book:
    """Args:
    directions: ``"maximize"``/``"minimize"`` per objective, in the study's order.
    """

    def __init__(self, directions: Sequence[str]) -> None:
        self.directions = list(directions)
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
        if key and outcome and status in FINAL and key not in self.outcomes:
            self.outcomes[key] = outcome
            self._add_to_front(outcome)

    def note(self, status: str) -> None:
        """A non-trial event counted by kind (``repeat``, ``reused``, ``interrupted``)."""
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def add_curve(self, number: int, attrs: dict[str, Any], status: str) -> None:
        """A trained trial's held-out accuracy by step: the reference the early-stopping rule uses."""
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

    def on_front(self, values: Sequence[float]) -> bool:
        """Whether a completed trial with these values is Pareto-optimal among those recorded."""
        p = self.minimised(values)
        return not any(dominates(q, p) for q in self._front)

    @property
    def front_size(self) -> int:
        return len(self._front)
