"""``sampler = "costaware"``: a multi-objective sampler that uses the exact cost of every placement.

Every placement's compute is known before it is trained (the space's cost tables), which no
Optuna sampler uses: they learn cost from the trials like any objective. This one proposes, among
the placements not yet evaluated (all of them in a space of up to ``max_enumerate``; else a
fresh random sample of ``n_candidates``):

1. **startup** (the first ``n_startup_trials``): the placement whose cost is farthest (in log
   cost) from every placement evaluated or running: the cost axis is filled evenly, from the
   cheapest to the dearest, before anything is learned;
2. **then** the placement with the largest **hypervolume improvement** over the current front
   (accuracy up, exact costs down) of an optimistic accuracy, ``mean + kappa * std`` of a
   Bayesian linear model over the per-position choices (one-hot, plus interactions of
   neighbouring positions; the conjugate Gaussian posterior, noise and prior scale by evidence
   maximisation over a small grid). Where no candidate can improve the front, the one with the
   widest posterior (the most to learn).

Accuracy comes from the study's completed trials; in a study with repeats or rungs the driver's
mirror holds each placement's mean at its highest budget, so the model learns from those.
Infeasible placements (over a MACs or params budget) are never proposed. Needs costs known
before training: ``macs`` and ``params`` objectives (a ``latency_ms`` objective is measured, so
it is not used here; the sampler then ranks by MACs).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna

from ..pareto import hypervolume

__all__ = ["CostAwareSampler"]

#: params -> (cost objectives, each minimised; feasible)
CostFn = Callable[[dict[str, str]], tuple[list[float], bool]]


class CostAwareSampler(optuna.samplers.BaseSampler):
    """An Optuna sampler (relative sampling of every decision at once).

    Args:
        groups: decision name -> its choice tokens.
        cost: exact costs of a placement's params (see :data:`CostFn`).
        seed: random seed.
        n_startup_trials: proposals that fill the cost axis before the model is used.
        kappa: optimism of the accuracy model (standard deviations).
        n_candidates: candidates per proposal where the space is too large to enumerate.
        max_enumerate: spaces up to this size are enumerated whole.
    """

    def __init__(
        self,
        groups: dict[str, list[str]],
        cost: CostFn,
        seed: int = 0,
        n_startup_trials: int = 10,
        kappa: float = 1.0,
        n_candidates: int = 2048,
        max_enumerate: int = 20000,
    ) -> None:
        self.groups = {g: list(t) for g, t in groups.items()}
        self.names = list(self.groups)
        self.cost = cost
        self.rng = np.random.default_rng(seed)
        self.n_startup = n_startup_trials
        self.kappa = kappa
        self.n_candidates = n_candidates
        size = math.prod(len(t) for t in self.groups.values())
        self.enumerated: list[tuple[str, ...]] | None = None
        if size <= max_enumerate:
            self.enumerated = list(itertools.product(*self.groups.values()))
        self._costs: dict[tuple[str, ...], tuple[list[float], bool]] = {}
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._dists = {g: optuna.distributions.CategoricalDistribution(tuple(t)) for g, t in self.groups.items()}

    # -- Optuna's sampler interface ------------------------------------------------------------
    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return dict(self._dists)

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
        if not search_space:
            return {}
        choice = self._propose(study)
        return dict(zip(self.names, choice)) if choice is not None else {}

    def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Any, trial: Any) -> None:
        return None

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None

    def reseed_rng(self) -> None:
        self.rng = np.random.default_rng()

    # -- the proposal -------------------------------------------------------------------------
    def _cost_of(self, choice: tuple[str, ...]) -> tuple[list[float], bool]:
        c = self._costs.get(choice)
        if c is None:
            c = self._costs[choice] = self.cost(dict(zip(self.names, choice)))
        return c

    def _candidates(self, taken: set[tuple[str, ...]]) -> list[tuple[str, ...]]:
        if self.enumerated is not None:
            pool = self.enumerated
        else:
            pool = [
                tuple(str(t[self.rng.integers(len(t))]) for t in self.groups.values()) for _ in range(self.n_candidates)
            ]
        return [c for c in dict.fromkeys(pool) if c not in taken and self._cost_of(c)[1]]

    def _propose(self, study: Any) -> tuple[str, ...] | None:
        from optuna.trial import TrialState

        directions = [d.name.lower() for d in study.directions]
        acc_i = directions.index("maximize") if "maximize" in directions else 0
        trials = study.get_trials(deepcopy=False)
        taken: set[tuple[str, ...]] = set()
        observed: list[tuple[tuple[str, ...], float]] = []
        for t in trials:
            if not all(n in t.params for n in self.names):
                continue
            choice = tuple(str(t.params[n]) for n in self.names)
            if t.state != TrialState.WAITING:  # evaluated, failed for good or running
                taken.add(choice)
            if t.state == TrialState.COMPLETE and t.values:
                observed.append((choice, float(t.values[acc_i])))
        cands = self._candidates(taken)
        if not cands:
            return None
        if len(observed) < max(1, self.n_startup):
            return self._fill_cost_axis(cands, taken)
        return self._best_improvement(cands, observed)

    def _fill_cost_axis(self, cands: list[tuple[str, ...]], taken: set[tuple[str, ...]]) -> tuple[str, ...]:
        logc = np.array([math.log(max(self._cost_of(c)[0][0], 1.0)) for c in cands])
        if not taken:
            return cands[int(np.argmin(logc))]  # the cheapest first
        seen = np.array([math.log(max(self._cost_of(c)[0][0], 1.0)) for c in taken])
        gap = np.min(np.abs(logc[:, None] - seen[None, :]), axis=1)
        best = np.flatnonzero(gap >= gap.max() - 1e-12)
        return cands[int(best[self.rng.integers(len(best))])]

    # one-hot features of the choices and of neighbouring pairs of decisions
    def _features(self, choices: Sequence[tuple[str, ...]]) -> np.ndarray:
        cols: list[np.ndarray] = [np.ones(len(choices))]
        arr = np.array(choices, dtype=object).reshape(len(choices), len(self.names))
        for j, g in enumerate(self.names):
            for tok in self.groups[g][1:]:
                cols.append((arr[:, j] == tok).astype(float))
        for j in range(len(self.names) - 1):
            a, b = self.groups[self.names[j]], self.groups[self.names[j + 1]]
            for ta in a[1:]:
                for tb in b[1:]:
                    cols.append(((arr[:, j] == ta) & (arr[:, j + 1] == tb)).astype(float))
        return np.stack(cols, axis=1)

    def _posterior(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """Bayesian linear regression: the (prior precision, noise variance) pair of a small grid
        with the largest evidence; returns the posterior mean, covariance and noise variance."""
        n, d = x.shape
        best = None
        yc = y - y.mean()
        for alpha in (0.1, 1.0, 10.0, 100.0):
            for noise in (1e-4, 1e-3, 1e-2, 3e-2):
                # evidence of y ~ N(0, noise I + X X^T / alpha)
                cov = noise * np.eye(n) + x @ x.T / alpha
                sign, logdet = np.linalg.slogdet(cov)
                if sign <= 0:
                    continue
                ev = -0.5 * (logdet + yc @ np.linalg.solve(cov, yc))
                if best is None or ev > best[0]:
                    best = (ev, alpha, noise)
        assert best is not None
        _, alpha, noise = best
        prec = alpha * np.eye(d) + x.T @ x / noise
        cov = np.linalg.inv(prec)
        mean = cov @ x.T @ yc / noise
        return mean, cov, noise

    def _best_improvement(
        self, cands: list[tuple[str, ...]], observed: list[tuple[tuple[str, ...], float]]
    ) -> tuple[str, ...]:
        x = self._features([c for c, _ in observed])
        y = np.array([a for _, a in observed])
        mean, cov, _ = self._posterior(x, y)
        xc = self._features(cands)
        mu = xc @ mean + y.mean()
        sd = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", xc, cov, xc), 0.0))
        opt = mu + self.kappa * sd
        # the front so far (every objective minimised: -accuracy, costs)
        pts = [(-a, *self._cost_of(c)[0]) for c, a in observed]
        costs = [self._cost_of(c)[0] for c in cands]
        floor = min(-p[0] for p in pts) - 0.05
        ceil = [1.1 * max(max(p[k + 1] for p in pts), max(c[k] for c in costs)) for k in range(len(costs[0]))]
        ref = (-floor, *ceil)
        front = _front(pts)
        base = hypervolume(front, ref)
        gains = np.array([hypervolume([*front, (-float(o), *c)], ref) - base for o, c in zip(opt, costs)])
        if gains.max() <= 0:
            return cands[int(np.argmax(sd))]
        best = np.flatnonzero(gains >= gains.max() - 1e-15)
        return cands[int(best[self.rng.integers(len(best))])]


def _front(points: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    from ..pareto import front

    return [points[i] for i in front(points)]
