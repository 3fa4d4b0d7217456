"""Study configuration: ``studies/*.toml``, validated on load.

Every mistake is a :class:`~placement_search.errors.UserError` that names the file, the
field, the bad value and what is allowed. See ``docs/studies.md`` for the whole format;
``studies/quickstart.toml`` is the smallest complete example.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import itertools
import json
import math
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..data.config import DataConfig
from ..errors import UserError
from ..train import ProxyBudget
from .samplers import SAMPLERS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "DEFAULT_STORAGE",
    "OBJECTIVES",
    "SAMPLERS",
    "ArtifactsConfig",
    "Constraints",
    "DataConfig",
    "EarlyStopping",
    "Fidelity",
    "LatencyConfig",
    "RayConfig",
    "Resources",
    "StudyConfig",
    "TargetInput",
    "load_study_config",
    "parse_count",
]

SCHEMA_VERSION = 1
#: the embedded default: a SQLite file in the working directory
DEFAULT_STORAGE = "sqlite:///placement-search.db"
#: objective name -> (Optuna direction, what it is)
OBJECTIVES: dict[str, tuple[str, str]] = {
    "accuracy": ("maximize", "proxy top-1 accuracy on the held-out clips, in [0, 1]"),
    "macs": ("minimize", "multiply-adds at the target input (batch 1)"),
    "params": ("minimize", "parameters"),
    "latency_ms": ("minimize", "median forward time at the target input, batch 1, on the trial's device"),
}

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def count_value(text: str) -> float:
    """``"20G"``, ``"1.5e9"``, ``"750M"`` -> a number; ValueError otherwise."""
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMgGtT]?)\s*", text)
    if not m:
        raise ValueError(text)
    number = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if not math.isfinite(number) or number > 1e30:
        raise ValueError(text)
    return number


def parse_count(value: Any, where: str) -> int:
    """An integer count from ``20000000``, ``"20G"``, ``"1.5e9"``, ``"750M"``."""
    if isinstance(value, bool):
        raise UserError(f'{where}: expected a count such as 20000000 or "20G", got {value!r}')
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = count_value(value)
        except ValueError:
            raise UserError(f'{where}: expected a count such as 20000000 or "20G", got {value!r}') from None
    else:
        raise UserError(f'{where}: expected a count such as 20000000 or "20G", got {value!r}')
    if not math.isfinite(number) or number <= 0 or number > 1e30:
        raise UserError(f"{where}: expected a positive count, got {value!r}")
    return int(number)


# -- sections ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetInput:
    """The input at which compute is measured (and reported): the full-scale model, not the proxy."""

    frames: int | None = None  # None: the space's clip
    size: int | None = None
    num_classes: int = 400

    def check(self, where: str) -> None:
        for name in ("frames", "size", "num_classes"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise UserError(f"{where}.{name}: expected a positive integer, got {v}")


@dataclass(frozen=True)
class Constraints:
    """Budgets. A placement over a MACs or params budget is recorded infeasible without training;
    a latency budget is checked on the worker's device before training."""

    max_macs: int | None = None
    max_params: int | None = None
    max_latency_ms: float | None = None

    def active(self) -> dict[str, float]:
        return {k: float(v) for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class EarlyStopping:
    """Multi-objective early stopping (Optuna has no pruning for multi-objective studies).

    At an intermediate evaluation at step ``s``, a run with accuracy ``a`` and target MACs ``c``
    is stopped when at least ``min_dominating`` finished trials with MACs <= ``c`` had accuracy
    >= ``a + margin`` at the same step, and the study holds at least ``min_trials`` finished
    trials. Stopped trials are recorded PRUNED, with the trials that dominated them.
    """

    enabled: bool = True
    margin: float = 0.05
    min_trials: int = 4
    min_dominating: int = 1

    def check(self, where: str) -> None:
        if not 0.0 <= self.margin <= 1.0:
            raise UserError(f"{where}.margin: expected an accuracy margin in [0, 1], got {self.margin}")
        if self.min_trials < 1 or self.min_dominating < 1:
            raise UserError(f"{where}: min_trials and min_dominating must be >= 1")


@dataclass(frozen=True)
class RayConfig:
    """Where trials run. No address: the cluster ``$RAY_ADDRESS`` names, else a new local Ray instance (``num_cpus``/``num_gpus``: its size,
    default the machine's). ``"auto"`` or ``host:port`` joins an existing cluster."""

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    object_store_memory: int | None = None

    def check(self, where: str) -> None:
        if self.num_cpus is not None and self.num_cpus < 1:
            raise UserError(f"{where}.num_cpus: expected a positive integer, got {self.num_cpus}")
        if self.num_gpus is not None and self.num_gpus < 0:
            raise UserError(f"{where}.num_gpus: expected an integer >= 0, got {self.num_gpus}")


#: how a latency objective or budget is timed (``[latency] measure``)
LATENCY_MEASURES = ("idle", "trial")


@dataclass(frozen=True)
class LatencyConfig:
    """How latency (an objective, or ``max_latency_ms``) is measured.

    ``measure = "idle"`` (default): each distinct placement once, in a separate measurement that
    holds a whole device of the trials' kind (a whole GPU; all CPUs of a node), so that no
    training trial shares it; the driver gathers the placements waiting for a latency and
    measures them together once the device is idle, and remembers each by placement and device.
    ``"trial"``: timed by each trial on its own device before training, beside whatever else
    runs there (faster, noisier; the behaviour before ``[latency]`` existed).
    ``runs``/``warmup``: timed and untimed forward passes (batch 1, target input); the median
    of ``runs`` is the latency."""

    measure: str = "idle"
    runs: int = 10
    warmup: int = 3

    def check(self, where: str) -> None:
        if self.measure not in LATENCY_MEASURES:
            raise UserError(f"{where}.measure: expected one of {', '.join(LATENCY_MEASURES)}, got {self.measure!r}")
        if self.runs < 1 or self.warmup < 0:
            raise UserError(f"{where}: runs must be >= 1 and warmup >= 0, got {self.runs} and {self.warmup}")


@dataclass(frozen=True)
class Resources:
    """Per-trial resources. ``gpus`` may be a fraction: four 0.25-GPU proxies share one GPU.
    ``max_concurrent`` 0: as many trials as the cluster's resources allow. ``retries``: times a
    trial whose Ray worker died is run again before it is recorded failed."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float | None = None
    max_concurrent: int = 0
    retries: int = 2

    def check(self, where: str) -> None:
        if self.cpus <= 0:
            raise UserError(f"{where}.cpus: expected a positive number, got {self.cpus}")
        if self.gpus < 0 or (self.gpus > 1 and self.gpus != int(self.gpus)):
            raise UserError(f"{where}.gpus: expected a fraction in [0, 1] or a whole number, got {self.gpus}")
        if self.memory_gb is not None and self.memory_gb <= 0:
            raise UserError(f"{where}.memory_gb: expected a positive number, got {self.memory_gb}")
        if self.max_concurrent < 0 or self.retries < 0:
            raise UserError(f"{where}: max_concurrent and retries must be >= 0")


@dataclass(frozen=True)
class ArtifactsConfig:
    """Files kept with each trial in Optuna's artifact store (shown by optuna-dashboard):
    ``placement.json``, ``costs.csv`` (per-position cost at the target input), ``curve.csv``
    (training loss and held-out accuracy by step), and the proxy's trained weights
    (``weights.safetensors``) for ``keep_weights``: ``pareto`` (trials on the Pareto front
    when they finish), ``all`` or ``none``. ``path``: the artifact folder (default: next to a
    SQLite file, ``<name>-artifacts``; else ``./placement-search-artifacts``). ``figures_every``:
    seconds between refreshes of the study's dashboard figures while it runs."""

    enabled: bool = True
    path: str | None = None
    keep_weights: Literal["pareto", "all", "none"] = "pareto"
    figures_every: float = 30.0

    def check(self, where: str) -> None:
        if self.figures_every <= 0:
            raise UserError(f"{where}.figures_every: expected a positive number of seconds, got {self.figures_every}")


@dataclass(frozen=True)
class TableBudget:
    """One budget of a ground-truth table: its trainer seeds, proxy budget and data."""

    name: str
    seeds: tuple[int, ...]
    proxy: ProxyBudget
    data: DataConfig

    def identity(self) -> dict[str, Any]:
        """What must not change when a table is extended (else its rows are not comparable)."""
        proxy = {
            k: v
            for k, v in dataclasses.asdict(self.proxy).items()
            if k not in ("seed", "device", "threads", "log_every")
        }
        data = {
            k: v
            for k, v in dataclasses.asdict(self.data).items()
            if k not in ("cache", "cache_dir", "decode_workers")
            and not (k == "flip" and v == "on")  # added later: tables built before have no such key
            and not (k == "flip_map" and v is None)
        }
        return {"proxy": proxy, "data": data}


@dataclass(frozen=True)
class TableConfig:
    """``[table]``: evaluate every placement of a space (or of the sub-space that keeps only the
    op kinds in ``choices``) with several trainer seeds at each budget (``proxy``: the study's
    ``[proxy]`` and ``[data]``; ``reference``: ``[table.reference]``'s overrides of them)."""

    choices: tuple[str, ...] | None = None
    budgets: tuple[TableBudget, ...] = ()

    def budget(self, name: str) -> TableBudget:
        for b in self.budgets:
            if b.name == name:
                return b
        raise UserError(f"[table]: no budget {name!r}; budgets: {', '.join(b.name for b in self.budgets)}")


@dataclass(frozen=True)
class Fidelity:
    """Budgets (rungs) and promotion between them: multi-fidelity, multi-objective.

    Every placement the sampler proposes is trained at ``steps[0]``; the ones on or near the
    non-dominated front of a rung (accuracy against the exact cost, within ``margin``) are
    trained again at the next rung, a share ``promote`` of each rung at most (asynchronous
    successive halving: a rung promotes as soon as it holds enough runs, no worker waits), and a
    placement that reaches the top rung gets ``seeds_at_top`` trainer seeds there. A study with
    one rung and ``seeds_at_top = N`` is ``repeats = N``. See docs/studies.md.

    Attributes:
        steps: the rungs' training steps, ascending; the last is the top budget.
        promote: the largest share of a rung's placements that go up a rung (ASHA's 1/eta).
        seeds_at_top: trainer seeds per placement at the top rung.
        margin: accuracy margin of "near the front": a placement counts as non-dominated unless
            another costs no more and is at least ``margin`` more accurate; ``None`` ("auto"):
            the seed noise measured at the top rung (the pooled standard deviation of the
            placements with several seeds there), 0 until it is measured.
    """

    steps: tuple[int, ...]
    promote: float = 1 / 3
    seeds_at_top: int = 1
    margin: float | None = 0.0

    @property
    def top(self) -> int:
        return self.steps[-1]


@dataclass(frozen=True)
class StudyConfig:
    """A whole study: what to search, on what data, at what cost, where results live."""

    name: str
    space: str
    path: Path | None = None
    description: str = ""
    storage: str = DEFAULT_STORAGE
    sampler: str = "tpe"
    sampler_options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    trials: int = 50
    timeout: float | None = None
    objectives: tuple[str, ...] = ("accuracy", "macs")
    evaluate_first: tuple[str, ...] = ()
    target: TargetInput = TargetInput()
    data: DataConfig = DataConfig()  # noqa: RUF009 - frozen, so one shared default is safe
    proxy: ProxyBudget = field(default_factory=ProxyBudget)
    constraints: Constraints = Constraints()
    early_stopping: EarlyStopping = EarlyStopping()
    ray: RayConfig = RayConfig()
    resources: Resources = Resources()
    latency: LatencyConfig = LatencyConfig()
    artifacts: ArtifactsConfig = ArtifactsConfig()
    table: TableConfig | None = None
    #: trainer seeds per placement at its top budget (``repeats = N``; [fidelity] seeds_at_top)
    repeats: int = 1
    #: budgets and promotion (``[fidelity]``); None: every run at the proxy budget
    fidelity: Fidelity | None = None
    #: how trials are evaluated: ``None`` (train the proxy) or ``"table:PATH"`` (look results up
    #: in a ground-truth table CSV; see placement_search.table)
    evaluator: str | None = None

    @property
    def directions(self) -> list[Any]:
        return [OBJECTIVES[o][0] for o in self.objectives]

    @property
    def ladder(self) -> Fidelity:
        """The study's rungs, one (the proxy budget) when it declares no ``[fidelity]``."""
        if self.fidelity is not None:
            return self.fidelity
        return Fidelity(steps=(self.proxy.steps,), promote=0.0, seeds_at_top=self.repeats)

    @property
    def runs_per_placement(self) -> bool:
        """Whether a placement may be trained more than once (repeats or rungs)."""
        return self.ladder.seeds_at_top > 1 or len(self.ladder.steps) > 1

    @property
    def needs_latency(self) -> bool:
        return "latency_ms" in self.objectives or self.constraints.max_latency_ms is not None

    def identity(self) -> dict[str, Any]:
        """What must not change when a study is resumed (else its trials are not comparable)."""
        return {
            "space": self.space,
            "objectives": list(self.objectives),
            "target": dataclasses.asdict(self.target),
            "data": {
                k: v
                for k, v in dataclasses.asdict(self.data).items()
                # defaults of fields added later (version 1, flip on) are what earlier studies used:
                # their identity has no such key, so they resume
                if k not in ("cache", "cache_dir", "decode_workers")
                and not (k == "version" and v == 1)
                and not (k == "flip" and v == "on")
                and not (k == "flip_map" and v is None)
            },
            "proxy": {
                k: v for k, v in dataclasses.asdict(self.proxy).items() if k not in ("device", "threads", "log_every")
            },
            "constraints": self.constraints.active(),
        }

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path) if self.path else None
        d["objectives"] = list(self.objectives)
        d["evaluate_first"] = list(self.evaluate_first)
        return d


# -- generic table -> dataclass ------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "nothing"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        for a in args:
            try:
                return _coerce(value, a, where)
            except UserError:
                pass
        raise UserError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise UserError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {value!r}")
        return value
    raise UserError(f"{where}: unsupported value {value!r}")  # pragma: no cover


def _unknown(key: str, allowed: list[str], where: str) -> UserError:
    near = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return UserError(f"{where}: unknown field {key!r}{hint}; allowed: {', '.join(allowed)}")


def _section(
    cls: Any,
    table: Any,
    where: str,
    *,
    skip: tuple[str, ...] = (),
    special: Mapping[str, Any] = {},
    check: bool = True,
) -> Any:
    if not isinstance(table, Mapping):
        raise UserError(f"{where}: expected a table of fields, got {table!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in names:
            raise _unknown(key, names, where)
        if key in special:
            kwargs[key] = special[key](value, f"{where}.{key}")
        else:
            kwargs[key] = _coerce(value, hints[key], f"{where}.{key}")
    try:
        obj = cls(**kwargs)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None
    if check and hasattr(obj, "check"):
        obj.check(where)
    return obj


# -- loading ---------------------------------------------------------------------------------

_TOP = {
    "schema_version",
    "name",
    "space",
    "description",
    "storage",
    "sampler",
    "sampler_options",
    "seed",
    "trials",
    "timeout",
    "objectives",
    "evaluate_first",
    "target",
    "data",
    "proxy",
    "constraints",
    "early_stopping",
    "ray",
    "resources",
    "latency",
    "artifacts",
    "table",
    "repeats",
    "fidelity",
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_study_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(
            f"{where}: study name {name!r} must be 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit"
        )
    return name


def _duration(value: Any, where: str) -> float:
    """Seconds from ``300``, ``"300s"``, ``"5m"``, ``"2h"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := re.fullmatch(r"\s*([0-9.]+)\s*([smhd]?)\s*", value)):
        try:
            seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        except ValueError:
            seconds = -1
    else:
        seconds = -1
    if not (math.isfinite(seconds) and seconds > 0):
        raise UserError(f'{where}: expected a positive duration such as 300, "5m" or "2h", got {value!r}')
    return seconds


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and validate a study file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such study file" + (" (it is a folder)" if p.is_dir() else ""))
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{p}: not valid TOML: {e}") from None
    return study_config_from_dict(data, p)


def study_config_from_dict(data: Mapping[str, Any], path: Path | None = None) -> StudyConfig:
    f = str(path) if path else "study"
    base = path.resolve().parent if path else Path.cwd()
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise UserError(f"{f}: schema_version: this placement-search reads version {SCHEMA_VERSION}, got {version!r}")
    for key in data:
        if key not in _TOP:
            raise _unknown(key, sorted(_TOP), f)
    kw: dict[str, Any] = {"path": path.resolve() if path else None}

    name = data.get("name", path.stem if path else None)
    kw["name"] = check_study_name(name, f"{f}: name")
    if "space" not in data:
        raise UserError(f"{f}: space: missing; name a shipped space (e.g. 'tiny', 'inception') or a .toml path")
    space = _coerce(data["space"], str, f"{f}: space")
    if space.endswith(".toml") and not Path(space).is_absolute():
        space = str((base / space).resolve())
    kw["space"] = space
    if "description" in data:
        kw["description"] = _coerce(data["description"], str, f"{f}: description")
    if "storage" in data:
        url = check_storage_url(_coerce(data["storage"], str, f"{f}: storage"), f"{f}: storage")
        kw["storage"] = _sqlite_relative_to(url, base)
    sampler = data.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise UserError(f"{f}: sampler: expected one of {', '.join(SAMPLERS)}, got {sampler!r}")
    kw["sampler"] = sampler
    opts = data.get("sampler_options", {})
    if not isinstance(opts, Mapping):
        raise UserError(f"{f}: sampler_options: expected a table, got {opts!r}")
    kw["sampler_options"] = dict(opts)
    seed = _coerce(data.get("seed", 0), int, f"{f}: seed")
    if not 0 <= seed < 2**32:
        raise UserError(f"{f}: seed: expected an integer in [0, 2^32), got {seed}")
    kw["seed"] = seed
    if "trials" in data:
        trials = _coerce(data["trials"], int, f"{f}: trials")
        if trials < 1:
            raise UserError(f"{f}: trials: expected a positive integer, got {trials}")
        kw["trials"] = trials
    if "timeout" in data:
        kw["timeout"] = _duration(data["timeout"], f"{f}: timeout")

    objectives = data.get("objectives", ["accuracy", "macs"])
    if not isinstance(objectives, list) or not all(isinstance(o, str) for o in objectives):
        raise UserError(f"{f}: objectives: expected a list of names, got {objectives!r}")
    for o in objectives:
        if o not in OBJECTIVES:
            raise UserError(f"{f}: objectives: unknown objective {o!r}; allowed: {', '.join(OBJECTIVES)}")
    if len(set(objectives)) != len(objectives) or "accuracy" not in objectives or len(objectives) < 2:
        raise UserError(
            f"{f}: objectives: expected 'accuracy' and at least one cost ({', '.join(list(OBJECTIVES)[1:])}), "
            f"each once, got {objectives!r}"
        )
    kw["objectives"] = tuple(objectives)

    first = data.get("evaluate_first", [])
    if not isinstance(first, list) or not all(isinstance(n, str) for n in first):
        raise UserError(f"{f}: evaluate_first: expected a list of named placements, got {first!r}")
    kw["evaluate_first"] = tuple(first)

    kw["target"] = _section(TargetInput, data.get("target", {}), f"{f}: [target]")
    data_cfg = _section(DataConfig, data.get("data", {}), f"{f}: [data]", check=False)
    data_cfg = data_cfg.resolved(base)
    data_cfg.check(f"{f}: [data]")
    kw["data"] = data_cfg
    proxy_table = data.get("proxy", {})
    if isinstance(proxy_table, Mapping) and "evaluator" in proxy_table:
        proxy_table = dict(proxy_table)
        kw["evaluator"] = _evaluator(proxy_table.pop("evaluator"), f"{f}: [proxy] evaluator", base)
    kw["proxy"] = _section(ProxyBudget, proxy_table, f"{f}: [proxy]", skip=("threads",))
    kw["constraints"] = _section(
        Constraints,
        data.get("constraints", {}),
        f"{f}: [constraints]",
        special={"max_macs": parse_count, "max_params": parse_count, "max_latency_ms": _positive_float},
    )
    kw["early_stopping"] = _section(EarlyStopping, data.get("early_stopping", {}), f"{f}: [early_stopping]")
    ray_cfg = _section(RayConfig, data.get("ray", {}), f"{f}: [ray]", special={"object_store_memory": parse_count})
    kw["ray"] = ray_cfg
    kw["resources"] = _section(Resources, data.get("resources", {}), f"{f}: [resources]")
    kw["latency"] = _section(LatencyConfig, data.get("latency", {}), f"{f}: [latency]")
    art = _section(ArtifactsConfig, data.get("artifacts", {}), f"{f}: [artifacts]")
    if art.path is not None and not Path(art.path).expanduser().is_absolute():
        art = dataclasses.replace(art, path=str((base / Path(art.path).expanduser()).resolve()))
    kw["artifacts"] = art
    if "repeats" in data:
        repeats = _coerce(data["repeats"], int, f"{f}: repeats")
        if not 1 <= repeats <= 100:
            raise UserError(f"{f}: repeats: expected trainer seeds per placement in [1, 100], got {repeats}")
        kw["repeats"] = repeats
    if "fidelity" in data:
        kw["fidelity"] = _fidelity(data["fidelity"], f"{f}: [fidelity]", kw["proxy"], proxy_table, kw.get("repeats", 1))
        kw["proxy"] = dataclasses.replace(kw["proxy"], steps=kw["fidelity"].steps[0])
    if "table" in data:
        kw["table"] = _table_config(data["table"], f"{f}: [table]", kw["proxy"], kw["data"], base)
    cfg = StudyConfig(**kw)
    if cfg.proxy.device.startswith("cuda") and not cfg.resources.gpus:
        raise UserError(
            f"{f}: [proxy] device = {cfg.proxy.device!r} but [resources] gpus = 0: Ray gives a trial no GPU "
            'unless it asks for one; set [resources] gpus (e.g. 0.25 to share a GPU) or device = "auto"'
        )
    if cfg.sampler == "families" and not cfg.evaluate_first:
        raise UserError(f"{f}: sampler 'families' evaluates exactly the placements of evaluate_first, which is empty")
    _check_sampler_options(cfg, f)
    return cfg


def _fraction(value: Any, where: str) -> float:
    """``0.33``, ``"1/3"``: a share in (0, 1]."""
    v: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        v = float(value)
    elif isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)) and int(m.group(2)):
        v = int(m.group(1)) / int(m.group(2))
    if v is None or not 0.0 < v <= 1.0:
        raise UserError(f'{where}: expected a share in (0, 1] such as 0.33 or "1/3", got {value!r}')
    return v


def _fidelity(table: Any, where: str, proxy: ProxyBudget, proxy_table: Any, repeats: int) -> Fidelity:
    if not isinstance(table, Mapping):
        raise UserError(f"{where}: expected a table, got {table!r}")
    allowed = ["steps", "promote", "seeds_at_top", "margin"]
    for key in table:
        if key not in allowed:
            raise _unknown(key, allowed, where)
    steps = table.get("steps")
    if (
        not isinstance(steps, list)
        or not steps
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in steps)
        or any(a >= b for a, b in itertools.pairwise(steps))
    ):
        raise UserError(f"{where}.steps: expected ascending positive step counts such as [80, 240, 720], got {steps!r}")
    if steps[0] <= proxy.warmup_steps:
        raise UserError(
            f"{where}.steps: the lowest rung ({steps[0]} steps) must be longer than [proxy] warmup_steps ({proxy.warmup_steps})"
        )
    if isinstance(proxy_table, Mapping) and "steps" in proxy_table and proxy_table["steps"] != steps[0]:
        raise UserError(
            f"{where}.steps: the lowest rung is the proxy budget, but [proxy] steps = {proxy_table['steps']!r} "
            f"and [fidelity] steps start at {steps[0]}: leave [proxy] steps out"
        )
    promote = _fraction(table.get("promote", "1/3"), f"{where}.promote")
    seeds = _coerce(table.get("seeds_at_top", repeats), int, f"{where}.seeds_at_top")
    if not 1 <= seeds <= 100:
        raise UserError(f"{where}.seeds_at_top: expected trainer seeds in [1, 100], got {seeds}")
    margin_v = table.get("margin", 0.0)
    margin: float | None
    if margin_v == "auto":
        margin = None
    elif isinstance(margin_v, int | float) and not isinstance(margin_v, bool) and 0.0 <= margin_v < 1.0:
        margin = float(margin_v)
    else:
        raise UserError(f'{where}.margin: expected an accuracy margin in [0, 1) or "auto", got {margin_v!r}')
    return Fidelity(tuple(steps), promote, seeds, margin)


def _evaluator(value: Any, where: str, base: Path) -> str:
    """``"table:PATH"`` (a ground-truth table CSV, relative to the study file) or ``"train"``."""
    text = _coerce(value, str, where)
    if text == "train":
        return text
    if not text.startswith("table:") or not text[len("table:") :].strip():
        raise UserError(
            f'{where}: expected "train" or "table:PATH" (a table CSV from `placement-search table export`), got {text!r}'
        )
    path = Path(text[len("table:") :].strip()).expanduser()
    if not path.is_absolute():
        path = (base / path).resolve()
    if not path.is_file():
        raise UserError(f"{where}: no such table file {path}")
    return f"table:{path}"


def _seeds(value: Any, where: str, first: int) -> tuple[int, ...]:
    """``3`` (seeds first, first+1, first+2) or an explicit list of distinct seeds."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise UserError(f"{where}: expected a positive number of seeds or a list of seeds, got {value}")
        return tuple(first + i for i in range(value))
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if len(set(value)) != len(value) or any(not 0 <= v < 2**63 for v in value):
            raise UserError(f"{where}: expected distinct seeds in [0, 2^63), got {value}")
        return tuple(value)
    raise UserError(f"{where}: expected a positive number of seeds or a list of seeds, got {value!r}")


def _table_config(table: Any, where: str, proxy: ProxyBudget, data: DataConfig, base: Path) -> TableConfig:
    if not isinstance(table, Mapping):
        raise UserError(f"{where}: expected a table of fields, got {table!r}")
    allowed = ["choices", "seeds", "reference"]
    for key in table:
        if key not in allowed:
            raise _unknown(key, allowed, where)
    choices = None
    if "choices" in table:
        c = table["choices"]
        if not isinstance(c, list) or not c or not all(isinstance(x, str) for x in c):
            raise UserError(f'{where}.choices: expected a list of op kinds such as ["2d", "3d", "sep"], got {c!r}')
        choices = tuple(c)
    budgets = [TableBudget("proxy", _seeds(table.get("seeds", 3), f"{where}.seeds", proxy.seed), proxy, data)]
    if "reference" in table:
        ref = table["reference"]
        w = f"{where}.reference"
        if not isinstance(ref, Mapping):
            raise UserError(f"{w}: expected a table of [proxy] and [data] overrides, got {ref!r}")
        proxy_fields = [x.name for x in dataclasses.fields(ProxyBudget) if x.name not in ("threads",)]
        data_fields = ["frames", "size", "eval_clips"]
        overrides_p: dict[str, Any] = {}
        overrides_d: dict[str, Any] = {}
        hints = typing.get_type_hints(ProxyBudget)
        for key, value in ref.items():
            if key == "seeds":
                continue
            if key in data_fields:
                overrides_d[key] = _coerce(value, int, f"{w}.{key}")
            elif key in proxy_fields:
                overrides_p[key] = _coerce(value, hints[key], f"{w}.{key}")
            else:
                raise _unknown(key, ["seeds", *proxy_fields, *data_fields], w)
        try:
            rproxy = dataclasses.replace(proxy, **overrides_p)
        except UserError as e:
            raise UserError(f"{w}: {e}") from None
        rdata = dataclasses.replace(data, **overrides_d)
        rdata.check(w)
        budgets.append(TableBudget("reference", _seeds(ref.get("seeds", 1), f"{w}.seeds", rproxy.seed), rproxy, rdata))
    return TableConfig(choices=choices, budgets=tuple(budgets))


def _positive_float(value: Any, where: str) -> float:
    v = _coerce(value, float, where)
    if v <= 0:
        raise UserError(f"{where}: expected a positive number, got {value!r}")
    return v


def _check_sampler_options(cfg: StudyConfig, f: str) -> None:
    allowed = SAMPLERS[cfg.sampler].options
    for key, value in cfg.sampler_options.items():
        where = f"{f}: sampler_options.{key}"
        if key not in allowed:
            if not allowed:
                raise UserError(f"{where}: sampler {cfg.sampler!r} takes no options")
            raise _unknown(key, sorted(allowed), f"{f}: sampler_options (sampler {cfg.sampler!r})")
        v = _coerce(value, allowed[key], where)
        if allowed[key] is int and v < 1:
            raise UserError(f"{where}: expected a positive integer, got {v}")
        if allowed[key] is float and not 0.0 <= v <= 1.0:
            raise UserError(f"{where}: expected a probability in [0, 1], got {v}")
    if cfg.sampler in ("nsga2", "nsga3") and cfg.sampler_options.get("population_size", 50) < 2:
        raise UserError(f"{f}: sampler_options.population_size: expected at least 2")


#: URL scheme of Optuna's journal storage (an append-only log file), as ``journal:///study.log``
JOURNAL_SCHEME = "journal:///"
JOURNAL_SUFFIXES = (".log", ".journal")


def journal_path(url: str) -> Path | None:
    """The log file of a ``journal:///path`` URL (``journal:////abs/path`` for an absolute one,
    as with SQLite), or None for another kind of storage."""
    return Path(url[len(JOURNAL_SCHEME) :]).expanduser() if url.startswith(JOURNAL_SCHEME) else None


def check_storage_url(url: str, where: str = "--storage") -> str:
    """A storage Optuna can use: a SQLAlchemy URL, or ``journal:///file.log`` for Optuna's journal
    storage. A plain path ending in .db is taken as SQLite, one ending in .log as a journal."""
    if url.startswith(JOURNAL_SCHEME):
        if not url[len(JOURNAL_SCHEME) :].strip():
            raise UserError(f"{where}: {url!r} names no file; expected e.g. journal:///study.log")
        return url
    if "://" not in url:
        if url.endswith((".db", ".sqlite", ".sqlite3")):
            return f"sqlite:///{url}"
        if url.endswith(JOURNAL_SUFFIXES):
            return f"{JOURNAL_SCHEME}{url}"
        raise UserError(
            f"{where}: {url!r} is not a storage URL; expected e.g. sqlite:///study.db, journal:///study.log or "
            "postgresql+psycopg2://user@host/db (a path ending in .db is taken as SQLite, .log as a journal)"
        )
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception as e:
        raise UserError(f"{where}: {url!r} is not a valid SQLAlchemy URL: {e}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql", "mysql", "mariadb"):
        raise UserError(f"{where}: unsupported database {parsed.get_backend_name()!r}; use sqlite, postgresql or mysql")
    if parsed.get_backend_name() == "sqlite" and (not parsed.database or parsed.database == ":memory:"):
        raise UserError(
            f"{where}: {url!r} is an in-memory database: everything the study records would be lost when the "
            "command ends; give a file, e.g. sqlite:///study.db"
        )
    return url


def _sqlite_relative_to(url: str, base: Path) -> str:
    """A SQLite or journal URL with a relative file path, taken against ``base`` (the study file's folder)."""
    from sqlalchemy.engine import make_url

    journal = journal_path(url)
    if journal is not None:
        return url if journal.is_absolute() else f"{JOURNAL_SCHEME}{(base / journal).resolve()}"

    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return url
    path = Path(u.database).expanduser()
    if path.is_absolute():
        return url
    return u.set(database=str((base / path).resolve())).render_as_string(hide_password=False)


def resolve_evaluate_first(cfg: StudyConfig, space: Any) -> list[tuple[str, Any]]:
    """``evaluate_first`` names (globs allowed, e.g. ``bottom_heavy_*``) -> [(name, placement)],
    in the order given; placements outside the searchable space are an error."""
    where = f"{cfg.path or 'study'}: evaluate_first"
    out: list[tuple[str, Any]] = []
    for pattern in cfg.evaluate_first:
        names = [n for n in space.named if fnmatch.fnmatchcase(n, pattern)]
        if not names:
            raise UserError(
                f"{where}: {pattern!r} matches no named placement of space {space.name!r}; "
                f"named placements: {', '.join(space.named)}"
            )
        for n in names:
            npl = space.named[n]
            if not npl.in_space:
                raise UserError(
                    f"{where}: {n!r} is a reference model outside the searchable space {space.name!r} "
                    "(it needs other backbone arguments); list placements the search can pick"
                )
            if n not in [x for x, _ in out]:
                out.append((n, npl.placement))
    return out


def stored_study_config(stored: Mapping[str, Any], where: str) -> StudyConfig:
    """The configuration a study stored when it was created (its ``config`` user attribute,
    :meth:`StudyConfig.to_dict`), read back: what ``promote`` runs a finished study with."""
    if not isinstance(stored, Mapping) or "space" not in stored:
        raise UserError(f"{where}: the study stores no configuration (was it created by placement-search run?)")

    def clean(d: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if v is not None}

    d = clean(stored)
    d.pop("path", None)
    d.pop("table", None)
    d["schema_version"] = SCHEMA_VERSION
    proxy = clean(d.get("proxy", {}))
    proxy.pop("threads", None)
    if "evaluator" in d:
        proxy["evaluator"] = d.pop("evaluator")
    fid = d.get("fidelity")
    if isinstance(fid, Mapping):
        d["fidelity"] = {
            **clean(fid),
            "steps": list(fid["steps"]),
            "margin": "auto" if fid.get("margin") is None else fid["margin"],
        }
    d["proxy"] = proxy
    for section in ("target", "data", "constraints", "early_stopping", "ray", "resources", "latency", "artifacts"):
        if isinstance(d.get(section), Mapping):
            d[section] = clean(d[section])
    try:
        return study_config_from_dict(d, None)
    except UserError as e:
        raise UserError(f"{where}: its stored configuration does not load here: {e}") from None


def config_json(cfg: StudyConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)
