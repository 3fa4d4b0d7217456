"""What the driver's parts share: a trial in flight, and the driver's state.

:class:`~.driver.SearchDriver` is put together from two parts, each a class in its own module:
:class:`~.dispatching.Dispatching` (a proposal becomes a stored trial, then a running or a
recorded one) and :class:`~.concluding.Concluding` (a running trial's events, its end, its
record); the driver itself sets up, loops and stops. :class:`DriverState` declares what they
share, so that each part reads as a unit and the type checker holds them to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..placement import Placement

if TYPE_CHECKING:
    from ..space import SearchSpace
    from .book import Book
    from .config import StudyConfig
    from .costing import StudyCosts
    from .executor import Executor
    from .ladder import Ladder
    from .latency_probe import LatencyProbe
    from .proposer import Proposer

__all__ = ["DriverState", "InFlight"]


@dataclass
class InFlight:
    """A trial the driver dispatched (or parked for its latency) and has not recorded yet."""

    number: int
    trial_id: int
    mirror: Any  # optuna.Trial of the mirror study (None: a follow-up run, not the sampler's)
    key: str
    placement: Placement
    costs: dict[str, Any]
    spec: dict[str, Any]
    gen: Any = None
    attempt: int = 1
    started: float = 0.0
    curve: list[tuple[int, float]] = field(default_factory=list)
    named: str | None = None
    #: the user attributes written at dispatch
    started_attrs: dict[str, Any] = field(default_factory=dict)
    #: constraint system attributes written at dispatch
    constraints: frozenset[str] = frozenset()
    #: what the worker said: its host, the device it timed latency on, its last event
    host: str | None = None
    node: str | None = None  # the Ray node id
    latency_device: str | None = None
    final: dict[str, Any] | None = None
    #: the run: its steps, trainer seed and kind (sampled, repeat, promotion)
    steps: int = 0
    seed: int = 0
    kind: str = "sampled"


class DriverState:
    """The driver's state, set by :class:`~.driver.SearchDriver` (annotations only)."""

    cfg: StudyConfig
    space: SearchSpace
    #: the space file's text, sent with every trial
    space_text: str | None
    costs: StudyCosts
    target_costs: Any
    book: Book
    #: the rungs (repeats, promotion); None: one run per placement
    ladder: Ladder | None
    proposer: Proposer
    executor: Executor
    #: latency timed on an idle device ([latency] measure = "idle"); None otherwise
    probe: LatencyProbe | None
    storage: Any
    study: Any
    study_id: int
    artifact_store: Any
    #: running trials by their executor handle
    inflight: dict[Any, InFlight]
    #: proposals of a placement that is running now: recorded as reused when it ends
    dup_waiting: dict[str, list[tuple[Any, tuple[int, int, dict[str, Any], dict[str, Any]]]]]
    faults: dict[str, str]
    on_event: Callable[[str, dict[str, Any]], None]
    idle_proposals: int
    latency_streak: int
    _mirror_stale: bool
