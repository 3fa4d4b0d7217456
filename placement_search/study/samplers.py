"""Samplers by name: the ``sampler`` a study file names, the ``sampler_options`` it may set, and
how the driver builds it. Adding a sampler is one entry here (the study-file check, the CLI's
help and the driver all read this table).

Every sampler runs on the driver's in-memory mirror of the study (ask and tell), never in a
worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError

__all__ = ["SAMPLERS", "SamplerEntry", "make_sampler"]


@dataclass(frozen=True)
class SamplerEntry:
    name: str
    description: str
    #: option name -> expected type, as accepted under ``sampler_options``
    options: Mapping[str, type] = field(default_factory=dict)
    #: (options, seed, group tokens by decision, exact costs of params or None) -> an Optuna sampler
    build: Callable[[dict[str, Any], int, dict[str, list[str]], Any], Any] | None = None
    #: whether the sampler learns from PRUNED (early-stopped) trials; one that does not (NSGA-II,
    #: GP, ...) is shown an early-stopped run as COMPLETE with its accuracy when stopped, else
    #: every stopped run would be lost to it (NSGA-II's first generation would never fill)
    learns_from_pruned: bool = False


def _tpe(opts: dict[str, Any], seed: int, _: dict[str, list[str]], __: Any = None) -> Any:
    import optuna

    opts.setdefault("multivariate", True)  # one joint model: the layers of a network interact
    opts.setdefault("constant_liar", True)  # running trials are not proposed again
    return optuna.samplers.TPESampler(seed=seed, **opts)


def _nsga(cls_name: str) -> Callable[[dict[str, Any], int, dict[str, list[str]], Any], Any]:
    def build(opts: dict[str, Any], seed: int, _: dict[str, list[str]], __: Any = None) -> Any:
        import optuna

        mutation = opts.pop("mutation_prob", None)
        return getattr(optuna.samplers, cls_name)(seed=seed, mutation_prob=mutation, **opts)

    return build


def _gp(opts: dict[str, Any], seed: int, _: dict[str, list[str]], __: Any = None) -> Any:
    import optuna

    try:
        import scipy  # noqa: F401
    except ModuleNotFoundError:
        raise UserError("sampler 'gp' needs scipy: pip install scipy") from None
    return optuna.samplers.GPSampler(seed=seed, **opts)


def _random(opts: dict[str, Any], seed: int, _: dict[str, list[str]], __: Any = None) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _grid(opts: dict[str, Any], seed: int, groups: dict[str, list[str]], _: Any = None) -> Any:
    import optuna

    class GridSampler(optuna.samplers.GridSampler):
        """Optuna's grid sampler, without its ``study.stop()`` once the grid is done (it is meant
        for ``study.optimize``; the driver asks and tells, and knows when every placement has been
        evaluated)."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return GridSampler(groups, seed=seed)


def _costaware(opts: dict[str, Any], seed: int, groups: dict[str, list[str]], cost: Any = None) -> Any:
    from .costaware import CostAwareSampler

    if cost is None:
        raise UserError("sampler 'costaware' needs the placements' exact costs (a study's driver gives them)")
    return CostAwareSampler(groups, cost, seed=seed, **opts)


_NSGA_OPTIONS = {"population_size": int, "crossover_prob": float, "swapping_prob": float, "mutation_prob": float}

SAMPLERS: dict[str, SamplerEntry] = {
    e.name: e
    for e in (
        SamplerEntry(
            "tpe",
            "multivariate TPE with constant liar (Optuna's TPESampler)",
            {"n_startup_trials": int, "n_ei_candidates": int, "multivariate": bool, "constant_liar": bool},
            _tpe,
            learns_from_pruned=True,
        ),
        SamplerEntry("nsga2", "NSGA-II (Optuna's NSGAIISampler)", _NSGA_OPTIONS, _nsga("NSGAIISampler")),
        SamplerEntry("nsga3", "NSGA-III (Optuna's NSGAIIISampler)", _NSGA_OPTIONS, _nsga("NSGAIIISampler")),
        SamplerEntry(
            "gp",
            "Gaussian-process Bayesian optimisation (Optuna's GPSampler; needs scipy)",
            {"n_startup_trials": int, "deterministic_objective": bool},
            _gp,
        ),
        SamplerEntry(
            "costaware",
            "fills the cost axis, then the largest hypervolume gain of an optimistic accuracy model over "
            "per-position choices, with every placement's exact cost (placement_search.study.costaware)",
            {"n_startup_trials": int, "kappa": float, "n_candidates": int, "max_enumerate": int},
            _costaware,
        ),
        SamplerEntry("random", "uniform random placements", {}, _random),
        SamplerEntry("grid", "every placement once, in an order shuffled by the seed", {}, _grid),
        SamplerEntry("families", "only the evaluate_first placements (the paper's hand-picked families)", {}, _random),
    )
}


def make_sampler(
    name: str, options: Mapping[str, Any], seed: int, groups: dict[str, list[str]], cost: Any = None
) -> Any:
    """The Optuna sampler for a study's ``sampler`` and ``sampler_options`` (checked when the
    study file was read); ``groups`` maps each decision to its choice tokens; ``cost``: a
    placement's params -> (its cost objectives, each minimised; whether it is feasible), for the
    samplers that use exact costs."""
    entry = SAMPLERS.get(name)
    if entry is None or entry.build is None:
        raise UserError(f"sampler: expected one of {', '.join(SAMPLERS)}, got {name!r}")
    return entry.build(dict(options), seed, groups, cost)
