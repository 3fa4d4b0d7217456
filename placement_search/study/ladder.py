"""Which placement to train again, at which budget, with which trainer seed: the study's rungs.

A study's budgets are its rungs (``[fidelity] steps``; one rung, the proxy budget, without).
The sampler's proposals are trained at the lowest rung. Whenever a trial slot is free, before
asking the sampler, the driver asks the ladder for a follow-up run, in this order:

1. **more seeds at the top**: a placement with a run at the top rung gets trainer seeds
   ``seed, seed + 1, ...`` there until it has ``seeds_at_top`` (``repeats`` without rungs);
2. **promotion**, from the highest rung down: of the placements with an ok run at rung k, at
   most a share ``promote`` go up to rung k + 1 (asynchronous successive halving, ASHA: a rung
   promotes as soon as it holds enough runs, and no worker waits for a rung to fill). Which
   ones: non-dominated sorting on (mean accuracy at rung k, exact costs), with a margin, and
   NSGA-II's crowding distance within a rank (MO-ASHA's rule, Schmucker et al. 2021): the front
   and the placements within ``margin`` of it first, spread along the cost axis.

Nothing here touches storage: the driver hands in the runs it knows and those in flight.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..pareto import nondominated_order
from .config import Fidelity

__all__ = ["FollowUp", "Ladder", "Run"]


@dataclass(frozen=True)
class Run:
    """One run of a placement: its budget, trainer seed, outcome and accuracy (ok runs)."""

    steps: int
    seed: int
    status: str
    accuracy: float | None = None


@dataclass(frozen=True)
class FollowUp:
    """A run the ladder asks for: placement ``key`` at ``steps`` with trainer ``seed``."""

    key: str
    steps: int
    seed: int
    kind: str  # "repeat" | "promotion"


class Ladder:
    """Args:
    fidelity: the rungs, the share promoted, the seeds at the top and the margin.
    base_seed: the study's trainer seed (``[proxy] seed``): the first seed at every rung.
    """

    def __init__(self, fidelity: Fidelity, base_seed: int) -> None:
        self.f = fidelity
        self.base_seed = base_seed
        #: rung -> (its members and margin, their order): sorting is quadratic, members change rarely
        self._orders: dict[int, tuple[tuple[object, ...], list[int]]] = {}

    def margin(self, runs: Mapping[str, Sequence[Run]]) -> float:
        """The accuracy margin of "near the front": the configured one, or (``auto``) the pooled
        standard deviation of one run at the top rung, over placements with several seeds there."""
        if self.f.margin is not None:
            return self.f.margin
        ss = dof = 0.0
        for rs in runs.values():
            accs = [r.accuracy for r in rs if r.steps == self.f.top and r.status == "ok" and r.accuracy is not None]
            if len(accs) > 1:
                ss += statistics.variance(accs) * (len(accs) - 1)
                dof += len(accs) - 1
        return math.sqrt(ss / dof) if dof else 0.0

    def next(
        self,
        runs: Mapping[str, Sequence[Run]],
        costs: Mapping[str, Sequence[float]],
        taken: Iterable[tuple[str, int, int]] = (),
    ) -> FollowUp | None:
        """The next follow-up run, or None (the sampler's turn).

        Args:
            runs: placement key -> its recorded runs (every outcome).
            costs: placement key -> its cost objectives, each minimised (exact MACs, ...).
            taken: ``(key, steps, seed)`` runs in flight or queued, besides ``runs``.
        """
        busy = set(taken)
        for key, rs in runs.items():
            busy.update((key, r.steps, r.seed) for r in rs)
        top = self.f.top
        seeds = [self.base_seed + j for j in range(self.f.seeds_at_top)]
        # 1. seeds at the top, for placements whose first top run is ok
        for key, rs in runs.items():
            if any(r.steps == top and r.status == "ok" for r in rs):
                for s in seeds:
                    if (key, top, s) not in busy:
                        return FollowUp(key, top, s, "repeat")
        # 2. promotion, from the highest rung down
        margin: float | None = None
        reached: dict[str, int] | None = None
        for k in range(len(self.f.steps) - 2, -1, -1):
            lo, hi = self.f.steps[k], self.f.steps[k + 1]
            members = []
            for key, rs in runs.items():
                accs = [r.accuracy for r in rs if r.steps == lo and r.status == "ok" and r.accuracy is not None]
                if accs and key in costs:
                    members.append((key, statistics.fmean(accs)))
            quota = math.floor(len(members) * self.f.promote + 1e-9)
            if quota < 1:
                continue
            if reached is None:
                reached = {}
                for key, steps, _ in busy:
                    reached[key] = max(steps, reached.get(key, 0))
            up = {key for key, _ in members if reached.get(key, 0) >= hi}
            if len(up) >= quota:
                continue
            if margin is None:
                margin = self.margin(runs)
            for i in self._order(k, members, costs, margin):
                key = members[i][0]
                if key not in up:
                    return FollowUp(key, hi, self.base_seed, "promotion")
        return None

    def _order(
        self, k: int, members: list[tuple[str, float]], costs: Mapping[str, Sequence[float]], margin: float
    ) -> list[int]:
        sig = (tuple(members), margin)
        cached = self._orders.get(k)
        if cached is not None and cached[0] == sig:
            return cached[1]
        points = [(-acc, *costs[key]) for key, acc in members]
        order = nondominated_order(points, [margin] + [0.0] * (len(points[0]) - 1))
        self._orders[k] = (sig, order)
        return order
