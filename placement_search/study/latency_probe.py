"""Latency measured on an idle device (``[latency] measure = "idle"``, the default).

A latency timed by a trial on its own device is timed beside the other trials training there
(four 0.25-GPU trials share one GPU; CPU trials share a node's cores), so it measures the
neighbours as much as the placement. Here a placement's latency is measured instead by a
separate task that holds a whole device of the trials' kind (one whole GPU, or every CPU of a
node), so nothing trains beside it:

* a trial whose placement has no known latency is *parked* (written to storage as RUNNING,
  holding its slot) instead of dispatched;
* once no training trial runs, one measurement task times every parked placement in turn
  (the device is idle: a wave, not one drain per placement), and the parked trials go on:
  trained with the measured latency, or recorded infeasible without training when it is over
  ``max_latency_ms``;
* each placement is measured once per device: the results are kept by placement key (and
  read back from the study's trials on resume), so repeats, promotions and resumed studies
  reuse them. The device's name is recorded with each value (``latency_device``).

The cost: a study with latency trains in waves, the device idle while a wave is measured
(seconds: a forward pass at batch 1 per run). ``measure = "trial"`` keeps the old way.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from .dispatch import proxy_budget

__all__ = ["LatencyProbe", "idle_probe", "measure_latencies"]


def measure_latencies(payload: dict[str, Any]) -> dict[str, Any]:
    """Time every placement of ``payload["placements"]`` (key -> placement dict) in turn on
    this task's device; a plain function that the executor runs with exclusive resources."""
    import torch

    from ..devices import resolve_device
    from ..latency import device_name, measure_latency
    from ..placement import Placement
    from .worker import _space

    if payload.get("threads"):
        torch.set_num_threads(int(payload["threads"]))
    space = _space(payload["space"], payload.get("space_toml"))
    dev = str(resolve_device(payload["device"]))
    out = {}
    for key, placement in payload["placements"].items():
        model = space.build(Placement.from_dict(placement, "latency placement"), num_classes=payload["num_classes"])
        lat = measure_latency(model, payload["input_shape"], device=dev, runs=payload["runs"], warmup=payload["warmup"])
        out[key] = lat.median_ms
        del model
    return {"latency_ms": out, "device": device_name(dev), "host": socket.gethostname()}


class LatencyProbe:
    """The driver's side (see the module docstring).

    Args:
        executor: runs the measurement (:meth:`~.executor.Executor.measure`).
        base: the measurement payload without its placements (space, input, device, runs).
    """

    def __init__(self, executor: Any, base: dict[str, Any]) -> None:
        self.executor = executor
        self.base = base
        #: placement key -> (median ms, device name)
        self.known: dict[str, tuple[float, str]] = {}
        #: trials waiting for their placement's latency
        self.parked: list[Any] = []
        self.handle: Any = None
        #: the running wave: when it started (wall clock) and how many placements it times
        self.started_at = 0.0
        self.todo = 0

    def remember(self, key: str, ms: float, device: str | None) -> None:
        self.known.setdefault(key, (float(ms), device or "?"))

    def lookup(self, key: str) -> tuple[float, str] | None:
        return self.known.get(key)

    def park(self, fl: Any) -> None:
        self.parked.append(fl)

    def due(self, training: int) -> bool:
        """Whether to measure now: trials wait and nothing trains (the device is idle)."""
        return bool(self.parked) and self.handle is None and training == 0

    def start(self) -> None:
        import time

        todo = {fl.key: fl.spec["placement"] for fl in self.parked if fl.key not in self.known}
        self.started_at, self.todo = time.time(), len(todo)
        self.handle = self.executor.measure(measure_latencies, {**self.base, "placements": todo})

    def owns(self, handle: Any) -> bool:
        return self.handle is not None and handle is self.handle

    def finish(self) -> tuple[list[Any], str | None]:
        """The parked trials, once the measurement ended; and an error message if it failed
        (then the trials time their latency themselves, as with ``measure = "trial"``)."""
        handle, self.handle = self.handle, None
        parked, self.parked = self.parked, []
        try:
            result = self.executor.result(handle)
        except Exception as e:
            text = str(e).strip().splitlines()
            return parked, f"{type(e).__name__}: {text[-1] if text else ''}"
        for key, ms in result["latency_ms"].items():
            self.remember(key, ms, result["device"])
        return parked, None

    def cancel(self) -> None:
        if self.handle is not None:
            self.executor.cancel(self.handle)
        self.handle = None
        self.parked = []


def idle_probe(
    cfg: Any, executor: Any, space_text: str | None, input_shape: Sequence[int], outcomes: dict[str, Any]
) -> LatencyProbe | None:
    """The study's probe where latency is measured on an idle device (None otherwise): what to
    measure, and what earlier runs measured (``outcomes``: the book's, by placement key)."""
    if not cfg.needs_latency or cfg.latency.measure != "idle":
        return None
    budget = proxy_budget(cfg)
    probe = LatencyProbe(
        executor,
        {
            "space": cfg.space,
            "space_toml": space_text,
            "input_shape": list(input_shape),
            "num_classes": cfg.target.num_classes,
            "device": budget["device"],
            "runs": cfg.latency.runs,
            "warmup": cfg.latency.warmup,
        },
    )
    for key, outcome in outcomes.items():
        ua = outcome["user_attrs"]
        if ua.get("latency_ms") is not None:
            probe.remember(key, ua["latency_ms"], ua.get("latency_device"))
    return probe
