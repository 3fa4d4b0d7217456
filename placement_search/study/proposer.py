"""Where the next placement comes from: the study's queue (``evaluate_first`` names, placements
queued again after a crash), one-decision neighbours of repeated proposals, or the sampler,
which runs on an in-memory mirror of the study (same trials, values and constraints) so that
a proposal never reads the whole study from the database."""

from __future__ import annotations

import copy
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..placement import Placement, placement_key
from ..space import SearchSpace
from .samplers import make_sampler

__all__ = ["Proposal", "Proposer", "QueueItem"]

#: a queued (WAITING) row of the study: ``(trial_id, number, params, user_attrs)``
QueueItem = tuple[int, int, dict[str, Any], dict[str, Any]]


@dataclass
class Proposal:
    """One placement to evaluate, as the sampler's mirror trial ``mt`` holds it."""

    mt: Any
    placement: Placement
    key: str
    #: the study's WAITING row it came from (``(trial_id, number)``), or None for a new row
    waiting: tuple[int, int] | None = None
    item: QueueItem | None = None
    #: attributes it carries into its trial (``named``, ``retry_of``, ``neighbour_of``)
    extra: dict[str, Any] = field(default_factory=dict)


class Proposer:
    """Args:
    space: the search space (decisions are its groups).
    sampler: the study's sampler name; ``options`` its ``sampler_options``.
    directions: the objectives' directions.
    seed: the study's seed; moved on with the study's size so that a resume does not replay
        the first run's draws (a fresh study with a given seed is reproducible, and so is a resume).
    """

    def __init__(
        self,
        space: SearchSpace,
        sampler: str,
        options: dict[str, Any],
        directions: Sequence[Any],
        seed: int,
        trials: Sequence[Any],
        queue: Sequence[QueueItem],
    ) -> None:
        import optuna
        from optuna.distributions import CategoricalDistribution

        self.space = space
        self.sampler_name = sampler
        self.dists: dict[str, Any] = {g.name: CategoricalDistribution(tuple(g.tokens)) for g in space.groups}
        seed = (seed + 7919 * len(trials)) % 2**32
        self.rng = random.Random(seed)
        self.storage = optuna.storages.InMemoryStorage()
        groups = {g.name: list(g.tokens) for g in space.groups}
        self.mirror = optuna.create_study(
            storage=self.storage, directions=list(directions), sampler=make_sampler(sampler, options, seed, groups)
        )
        # the sampler's copy carries no intermediate values: multi-objective TPE would sort
        # PRUNED (early-stopped) trials by them and fail (it does so for single-objective only)
        copies = []
        for t in trials:
            c = copy.copy(t)
            c.intermediate_values = {}
            copies.append(c)
        self.mirror.add_trials(copies)
        self.queue: deque[QueueItem] = deque(queue)
        self.neighbours: deque[tuple[dict[str, str], int | None]] = deque()

    def ask(self) -> Proposal:
        """The next placement: the queue first, then a pending neighbour, then the sampler."""
        extra: dict[str, Any] = {}
        item = waiting = None
        if self.queue:
            item = self.queue.popleft()
            trial_id, number, params, ua = item
            waiting = (trial_id, number)
            if "retry_of" in ua:
                extra["retry_of"] = ua["retry_of"]
            if ua.get("named"):
                extra["named"] = ua["named"]
            self.mirror.enqueue_trial(params)
        elif self.neighbours:
            params, origin = self.neighbours.popleft()
            extra["neighbour_of"] = origin
            self.mirror.enqueue_trial(params)
        mt = self.mirror.ask(self.dists)
        placement = self.space.from_group_tokens({g: str(v) for g, v in mt.params.items()}, "sampled placement")
        return Proposal(mt, placement, placement_key(placement), waiting, item, extra)

    def tell(self, mt: Any, state: Any, values: Sequence[float] | None = None) -> None:
        from optuna.trial import TrialState

        if state == TrialState.COMPLETE:
            self.mirror.tell(mt, list(values or []))
        else:
            self.mirror.tell(mt, state=state)

    def frozen(self, mt: Any) -> Any:
        """The mirror's stored copy of a trial (its system attributes: constraints)."""
        return self.storage.get_trial(mt._trial_id)

    def requeue(self, mt: Any, item: QueueItem) -> None:
        """A queued proposal whose twin failed while it waited: drop it from the sampler's copy
        and propose it again next."""
        from optuna.trial import TrialState

        self.mirror.tell(mt, state=TrialState.FAIL)
        self.queue.appendleft(item)

    def repeated(self, mt: Any, taken: set[str], origin: int | None) -> bool:
        """The sampler proposed a placement already evaluated (or running); TPE does this often
        once it has found good regions. The proposal is dropped (told FAIL on the sampler's
        copy, so that each architecture is observed once) and a one-decision neighbour of it
        that is not in ``taken`` is queued instead: local search around what the sampler
        likes, at no sampling cost. Returns False where no neighbour is needed (the grid
        moves on by itself)."""
        from optuna.trial import TrialState

        self.mirror.tell(mt, state=TrialState.FAIL)
        if self.sampler_name == "grid":
            return False
        taken = taken | self.queued_keys()
        groups = list(self.space.groups)
        for _ in range(4 * len(groups)):
            g = groups[self.rng.randrange(len(groups))]
            current = str(mt.params[g.name])
            options = [t for t in g.tokens if t != current]
            if not options:
                continue
            params = {**{k: str(v) for k, v in mt.params.items()}, g.name: options[self.rng.randrange(len(options))]}
            cand = placement_key(self.space.from_group_tokens(params, "neighbour"))
            if cand not in taken:
                self.neighbours.append((params, origin))
                break
        return True

    def queued_keys(self) -> set[str]:
        return {placement_key(self.space.from_group_tokens(p, "neighbour")) for p, _ in self.neighbours}
