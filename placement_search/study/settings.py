"""The typed settings of a study: one frozen dataclass per table of a study file, the whole
:class:`StudyConfig`, and what a storage URL may be.

``config.py`` reads study files into these (and re-exports them); everything that runs or reads
a study takes them from here, typed, never as dicts.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..data.config import DataConfig
from ..errors import UserError
from ..train import ProxyBudget

__all__ = [
    "DEFAULT_STORAGE",
    "JOURNAL_SCHEME",
    "LATENCY_MEASURES",
    "OBJECTIVES",
    "SCHEMA_VERSION",
    "ArtifactsConfig",
    "Constraints",
    "EarlyStopping",
    "Fidelity",
    "LatencyConfig",
    "RayConfig",
    "Resources",
    "StudyConfig",
    "TableBudget",
    "TableConfig",
    "TargetInput",
    "check_storage_url",
    "count_value",
    "journal_path",
    "parse_count",
    "storage_relative_to",
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
    (``weights.safetensors``) for ``keep_weights``: ``pareto`` (trials whose placement is on
    the front when they finish, judged on its mean accuracy at its highest budget, as
    ``pareto`` reports it), ``all`` or ``none``. ``path``: the artifact folder (default: next to a
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
    ``[proxy]`` and ``[data]``; ``reference``: ``[table.reference]``'s overrides of them, the
    budget the analyses judge by; any other ``[table.NAME]``: a candidate proxy, likewise)."""

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


def storage_relative_to(url: str, base: Path) -> str:
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
