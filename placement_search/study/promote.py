"""Re-evaluate a finished study's front: more trainer seeds, a bigger budget.

``placement-search promote --study NAME --top K [--seeds N] [--steps S]`` takes the ``K`` best
placements at the study's top budget, in non-dominated order (the front first, then the
placements nearest it, spread along the cost axis: NSGA-II's rank and crowding distance), and
queues ``N`` runs of each at ``S`` steps (default: the top budget, so more seeds), trainer seeds
``seed, seed + 1, ...`` less those already run. The runs are queued as rows of the study
(WAITING), so a kill loses nothing: ``run`` or ``promote`` again trains what is left. Then the
driver trains them, counted against the trial budget by their steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UserError
from ..pareto import nondominated_order
from ..placement import Placement
from .config import StudyConfig
from .estimates import estimates, top_steps
from .opening import group_params
from .records import run_fields, trial_attrs, trial_status

__all__ = ["QueuedRun", "queue_promotions"]


@dataclass(frozen=True)
class QueuedRun:
    placement: str
    steps: int
    seed: int
    kind: str


def queue_promotions(
    study: Any, cfg: StudyConfig, space: Any, *, top: int, seeds: int, steps: int | None = None
) -> list[QueuedRun]:
    """Queue the runs (see the module's text) and return them; runs already done or queued
    are not queued twice."""
    if top < 1 or seeds < 1:
        raise UserError(f"--top and --seeds: expected positive integers, got {top} and {seeds}")
    trials = study.get_trials(deepcopy=False)
    ests = estimates(trials, study.metric_names)
    if not ests:
        raise UserError(f"study {study.study_name!r} has no completed feasible trial to promote")
    current = top_steps(ests)
    steps = steps if steps is not None else current
    if steps is None or steps < 1:
        raise UserError(f"--steps: expected a positive number of steps, got {steps}")
    if current is not None and steps < current:
        raise UserError(
            f"--steps {steps}: the study's top budget is already {current} steps; promote to it or above "
            "(a front is built from the top budget only)"
        )
    pool = [e for e in ests.values() if e.steps == current]
    signs = [1.0 if d.name.lower() == "minimize" else -1.0 for d in study.directions]
    order = nondominated_order([tuple(s * v for s, v in zip(signs, e.values)) for e in pool])
    chosen = [pool[i] for i in order[:top]]
    from optuna.trial import TrialState

    done: set[tuple[str, int, int]] = set()
    for t in trials:
        ua = trial_attrs(t)
        st, sd, _ = run_fields(ua)
        if ua.get("placement_string") and st is not None and sd is not None:
            if t.state == TrialState.WAITING or trial_status(t, ua) not in (
                "reused",
                "infeasible",
                "interrupted",
                "driver_died",
            ):
                done.add((ua["placement_string"], st, sd))
    out = []
    for e in chosen:
        kind = "promotion" if e.steps is None or steps > e.steps else "repeat"
        params = group_params(space, Placement.from_dict(e.attrs["placement"]))
        for j in range(seeds):
            seed = cfg.proxy.seed + j
            if (e.placement_string, steps, seed) in done:
                continue
            study.enqueue_trial(
                params,
                user_attrs={"budget_steps": steps, "trainer_seed": seed, "run_kind": kind, "run_of": e.trials[0]},
                skip_if_exists=False,
            )
            out.append(QueuedRun(e.placement_string, steps, seed, kind))
    return out
