"""Running a table build's runs on Ray: the slots kept full, each run followed to its end and
stored, a time limit, and Ctrl-C or SIGTERM ending the sitting with its completed runs kept."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UserError

if TYPE_CHECKING:
    from ..placement import Placement

__all__ = ["BuildResult", "TableJob", "run_on_ray"]


@dataclass(frozen=True)
class TableJob:
    """One run of the table: a placement at a budget with a trainer seed."""

    budget: str
    seed: int
    placement: Placement
    placement_string: str
    proxy_macs: int
    macs: int
    params: int

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.budget, self.seed, self.placement_string)


@dataclass
class BuildResult:
    study: str
    storage: str
    total: int
    done_before: int
    done: int = 0
    imported: int = 0
    failed: int = 0
    interrupted: bool = False
    signal: str | None = None
    elapsed_s: float = 0.0
    stop_reason: str = ""
    by_budget: dict[str, int] = field(default_factory=dict)


class _Stop(Exception):
    pass


def run_on_ray(
    cfg: Any,
    todo: list[TableJob],
    spec_of: Callable[[TableJob], dict[str, Any]],
    record: Callable[..., None],
    result: BuildResult,
    ray_address: str | None,
    timeout: float | None,
    started: float,
    emit: Callable[[str, dict[str, Any]], None],
    trial_fn: Callable[[dict[str, Any]], Any] | None,
) -> None:
    """Run ``todo`` in order on Ray (each run's end stored by ``record``), until every run is
    done, the time limit is reached or a signal stops it; ``result`` says which."""
    from .executor import RayExecutor
    from .worker import run_trial

    executor = RayExecutor(
        trial_fn or run_trial, cfg.resources, cfg.ray, ray_address if ray_address is not None else cfg.ray.address
    )
    executor.check()
    executor.start()
    slots = executor.slots()
    emit("ray", {"slots": slots, **executor.describe()})
    runs = _Runs(executor, iter(todo), spec_of, record)
    try:
        with _signals() as term:
            try:
                _loop(runs, slots, term, result, timeout, started)
            except (KeyboardInterrupt, _Stop) as e:
                result.signal = "SIGTERM" if isinstance(e, _Stop) else "SIGINT"
                for gen in runs.inflight:
                    executor.cancel(gen)
                result.interrupted = True
                result.stop_reason = f"interrupted: {len(runs.inflight)} running run(s) cancelled; completed runs are kept, run the build again to go on"
    finally:
        executor.stop()


@contextmanager
def _signals() -> Iterator[list[int]]:
    """While the build runs, Ctrl-C raises :class:`KeyboardInterrupt` and SIGTERM is noted in
    the list this yields; the old handlers after (signals reach the main thread only)."""
    term: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield term
        return

    def on_term(signum: int, frame: Any) -> None:
        term.append(signum)  # a flag: an exception raised inside Ray's wait becomes a SystemError

    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    old_term = signal.signal(signal.SIGTERM, on_term)
    try:
        yield term
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _loop(runs: _Runs, slots: int, term: list[int], result: BuildResult, timeout: float | None, started: float) -> None:
    """Keep the slots full and follow the runs in flight until none is left to start or
    running; a SIGTERM (``term``) is checked at least once a second."""
    while True:
        if term:
            raise _Stop()
        runs.fill(slots, result, timeout, started)
        if not runs.inflight:
            break
        if term:
            raise _Stop()
        for gen in runs.executor.wait(list(runs.inflight), timeout=1.0):
            runs.advance(gen)
    if not result.stop_reason:
        result.stop_reason = (
            "every run of the table is done" if result.done_before + result.done == result.total else "done"
        )


@dataclass
class _Runs:
    """The sitting's runs: those not started yet, and those in flight (each with its job, its
    start time and what its events said: host, final result)."""

    executor: Any
    todo: Iterator[TableJob]
    spec_of: Callable[[TableJob], dict[str, Any]]
    record: Callable[..., None]
    inflight: dict[Any, tuple[TableJob, float, dict[str, Any]]] = field(default_factory=dict)
    stopping: bool = False

    def fill(self, slots: int, result: BuildResult, timeout: float | None, started: float) -> None:
        """Start runs until every slot is busy; past the time limit, or with no run left, start
        no more."""
        while not self.stopping and len(self.inflight) < slots:
            if timeout is not None and time.monotonic() - started >= timeout:
                self.stopping = True
                result.stop_reason = f"time limit of {timeout:g} s reached"
                break
            job = next(self.todo, None)
            if job is None:
                self.stopping = True
                break
            gen = self.executor.submit(self.spec_of(job))
            self.inflight[gen] = (job, time.monotonic(), {})

    def advance(self, gen: Any) -> None:
        """A run's next event; its end (or failure) recorded."""
        job, t0, info = self.inflight[gen]
        try:
            event = self.executor.next_event(gen)
        except StopIteration:
            del self.inflight[gen]
            final = info.get("final")
            self.record(
                job,
                final,
                None if final else "the worker ended without a result",
                time.monotonic() - t0,
                info.get("host"),
            )
            return
        except Exception as e:
            del self.inflight[gen]
            cause = getattr(e, "cause", None) or e
            if isinstance(cause, UserError):
                raise UserError(
                    f"run {job.placement_string} ({job.budget}, seed {job.seed}) on a worker: {cause}"
                ) from None
            text = str(cause).strip().splitlines()
            why = f"{type(cause).__name__}: {text[-1] if text else ''}"[:500]
            self.record(job, None, why, time.monotonic() - t0, info.get("host"))
            return
        if event.get("event") == "started":
            info["host"] = event.get("host")
        elif event.get("event") == "result":
            info["final"] = event
