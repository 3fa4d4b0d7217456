"""Where the next placement comes from: the study's queue (``evaluate_first`` names, placements
queued again after a crash), the nearest free neighbours of repeated proposals, or the sampler,
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
from .samplers import SAMPLERS, make_sampler

__all__ = ["Proposal", "Proposer", "QueueItem"]

#: a queued (WAITING) row of the study: ``(trial_id, number, params, user_attrs)``
QueueItem = tuple[int, int, dict[str, Any], dict[str, Any]]


@dataclass
class Proposal:
    """One placement to evaluate, as the sampler's mirror trial ``mt`` holds it (None: a queued
    follow-up run, a repeat or promotion, which the sampler does not propose)."""

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
    cost: a placement's params -> (cost objectives, feasible), for samplers that use exact costs.
    partial: a stored early-stopped trial -> its objective values with the accuracy it had when
        stopped (None: not known), for samplers that learn from complete trials only.
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
        cost: Any = None,
        partial: Any = None,
    ) -> None:
        import optuna
        from optuna.distributions import CategoricalDistribution
        from optuna.trial import TrialState

        self.space = space
        self.sampler_name = sampler
        self.dists: dict[str, Any] = {g.name: CategoricalDistribution(tuple(g.tokens)) for g in space.groups}
        seed = (seed + 7919 * len(trials)) % 2**32
        self.rng = random.Random(seed)
        self.storage = optuna.storages.InMemoryStorage()
        groups = {g.name: list(g.tokens) for g in space.groups}
        self.mirror = optuna.create_study(
            storage=self.storage,
            directions=list(directions),
            sampler=make_sampler(sampler, options, seed, groups, cost),
        )
        self.sampler = self.mirror.sampler
        self.directions = list(directions)
        self._token_keys: dict[tuple[str | None, ...], str] = {}
        #: show early-stopped runs as COMPLETE with their accuracy when stopped (see
        #: :attr:`.samplers.SamplerEntry.learns_from_pruned`)
        self.partial_as_complete = sampler in SAMPLERS and not SAMPLERS[sampler].learns_from_pruned
        # the sampler's copy carries no intermediate values: multi-objective TPE would sort
        # PRUNED (early-stopped) trials by them and fail (it does so for single-objective only)
        from .records import run_fields, trial_attrs

        #: the finished trials the sampler has seen, as it saw them (follow-up runs are not
        #: the sampler's: it sees their effect through :meth:`rebuild`)
        self.history: list[Any] = []
        for t in trials:
            if run_fields(trial_attrs(t))[2] != "sampled":
                continue
            c = copy.copy(t)
            c.intermediate_values = {}
            if self.partial_as_complete and partial is not None and t.state == TrialState.PRUNED:
                values = partial(t)
                if values is not None:
                    c.state, c.values = TrialState.COMPLETE, list(values)
            self.history.append(c)
        self.mirror.add_trials(self.history)
        self._keys: dict[int, str] = {}
        #: the sampler's trials in flight (asked, not yet told): they join every rebuilt mirror
        self._running: dict[int, Any] = {}
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
            if ua.get("run_kind") in ("repeat", "promotion"):
                placement = self.space.from_group_tokens({g: str(v) for g, v in params.items()}, "queued run")
                extra = {
                    k: ua[k] for k in ("run_kind", "budget_steps", "trainer_seed", "run_of", "retry_of") if k in ua
                }
                return Proposal(None, placement, placement_key(placement), waiting, item, extra)
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
        self._running[id(mt)] = mt
        placement = self.space.from_group_tokens({g: str(v) for g, v in mt.params.items()}, "sampled placement")
        return Proposal(mt, placement, placement_key(placement), waiting, item, extra)

    def tell(
        self, mt: Any, state: Any, values: Sequence[float] | None = None, partial: Sequence[float] | None = None
    ) -> None:
        """Tell the sampler a trial's end; ``partial``: an early-stopped run's values with its
        accuracy when stopped (told as COMPLETE to a sampler that ignores PRUNED trials)."""
        from optuna.trial import TrialState

        # the mirror it was asked from (an earlier one, if the mirror was rebuilt since)
        self._running.pop(id(mt), None)
        if state == TrialState.PRUNED and partial is not None and self.partial_as_complete:
            state, values = TrialState.COMPLETE, partial
        if state == TrialState.COMPLETE:
            mt.study.tell(mt, list(values or []))
        else:
            mt.study.tell(mt, state=state)
        c = copy.copy(self.frozen(mt))
        c.intermediate_values = {}
        self.history.append(c)

    def frozen(self, mt: Any) -> Any:
        """The mirror's stored copy of a trial (its system attributes: constraints)."""
        return mt.storage.get_trial(mt._trial_id)

    def rebuild(self, estimates: dict[str, list[float] | None]) -> None:
        """A new mirror from the trials the sampler has seen, each completed placement's values
        replaced by ``estimates[key]`` (its mean at the highest budget it reached): the sampler
        learns from the best fidelity each placement reached. The same sampler object carries
        on (its random state, its model settings); trials in flight are told into the mirror
        they were asked from, and join the next rebuild through :attr:`history`."""
        import optuna
        from optuna.trial import TrialState

        copies = []
        for t in self.history:
            c = t
            if t.state == TrialState.COMPLETE and t.values:
                key = self._key(t)
                new = estimates.get(key) if key is not None else None
                if new is not None and list(new) != list(t.values):
                    c = copy.copy(t)
                    c.values = list(new)
            copies.append(c)
        # the trials in flight, as RUNNING (constant liar, the grid's taken points); they are
        # told into the mirror they were asked from and join the next rebuild as finished
        copies += [self.frozen(mt) for mt in self._running.values()]
        self.storage = optuna.storages.InMemoryStorage()
        self.mirror = optuna.create_study(storage=self.storage, directions=self.directions, sampler=self.sampler)
        self.mirror.add_trials(copies)

    def _key(self, t: Any) -> str | None:
        k = self._keys.get(id(t))
        if k is None:
            try:
                p = self.space.from_group_tokens({g: str(v) for g, v in t.params.items()}, "mirror trial")
            except Exception:
                return None
            k = self._keys[id(t)] = placement_key(p)
        return k

    def requeue(self, mt: Any, item: QueueItem) -> None:
        """A queued proposal whose twin failed while it waited: drop it from the sampler's copy
        and propose it again next."""
        from optuna.trial import TrialState

        self._running.pop(id(mt), None)
        mt.study.tell(mt, state=TrialState.FAIL)
        self.queue.appendleft(item)

    def repeated(self, mt: Any, taken: set[str], origin: int | None) -> bool:
        """The sampler proposed a placement already evaluated (or running); TPE does this often
        once it has found good regions. The proposal is dropped (told FAIL on the sampler's
        copy, so that each architecture is observed once) and a one-decision neighbour of it
        that is not in ``taken`` is queued instead: local search around what the sampler
        likes, at no sampling cost. Where every one-decision neighbour tried is taken, one two
        decisions away, then three, and so on: the nearest free placement the tries find. A
        sampler that keeps proposing what it has seen (GP does, on small spaces) would
        otherwise end the study long before its space is exhausted (a GP study of the
        243-placement table stopped after 64 trials, saying the space looked exhausted).
        Returns False where no neighbour is needed (the grid moves on by itself)."""
        from optuna.trial import TrialState

        self._running.pop(id(mt), None)
        mt.study.tell(mt, state=TrialState.FAIL)
        if self.sampler_name == "grid":
            return False
        taken = taken | self.queued_keys()
        groups = list(self.space.groups)
        proposed = {k: str(v) for k, v in mt.params.items()}  # mt.params deep-copies on each read
        for _ in range(4 * len(groups)):
            g = groups[self.rng.randrange(len(groups))]
            current = proposed[g.name]
            options = [t for t in g.tokens if t != current]
            if not options:
                continue
            params = {**proposed, g.name: options[self.rng.randrange(len(options))]}
            cand = self._tokens_key(params)
            if cand not in taken:
                self.neighbours.append((params, origin))
                return True
        # farther out: d decisions changed at once, as many tries at each distance
        free = [g for g in groups if len(g.tokens) > 1]
        for d in range(2, len(free) + 1):
            for _ in range(4 * len(groups)):
                params = dict(proposed)
                for g in self.rng.sample(free, d):
                    options = [t for t in g.tokens if t != proposed[g.name]]
                    params[g.name] = options[self.rng.randrange(len(options))]
                if self._tokens_key(params) not in taken:
                    self.neighbours.append((params, origin))
                    return True
        return True

    def queued_keys(self) -> set[str]:
        return {self._tokens_key(p) for p, _ in self.neighbours}

    def _tokens_key(self, params: dict[str, str]) -> str:
        """The placement key of group tokens (remembered: late in a study most neighbours
        tried are taken, and building each placement is the cost)."""
        tokens = tuple(params.get(g.name) for g in self.space.groups)
        key = self._token_keys.get(tokens)
        if key is None:
            key = self._token_keys[tokens] = placement_key(self.space.from_group_tokens(params, "neighbour"))
        return key
