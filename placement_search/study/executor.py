"""Where trials run: an executor takes a trial's spec and hands back its events.

The driver talks to one of these and knows nothing else about where a trial runs:

* :class:`RayExecutor` (the default): each trial is a Ray generator task with the study's
  per-trial resources, on a local Ray instance or a cluster;
* :class:`InlineExecutor`: trials run one at a time in the driver's own process. For replays
  against a ground-truth table (``[proxy] evaluator = "table:..."``), where a trial is a lookup
  and Ray's per-task overhead would dominate, and for tests.

A handle is what :meth:`submit` returns; :meth:`next_event` gives the trial's next event dict and
raises ``StopIteration`` when it has ended (or the trial's own exception, or a Ray error when its
worker died).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import UserError

__all__ = [
    "WORKER_DEATH",
    "Executor",
    "InlineExecutor",
    "RayExecutor",
    "TrialError",
    "classify_error",
]

#: Ray errors that mean the worker (or its node) died rather than the trial's own code failing
#: what a refused join usually needs (docs/cluster.md)
JOIN_HINT = (
    "if the cluster uses token authentication (Ray 2.59 and later turn it on for clusters started with "
    "`ray start`), set RAY_AUTH_MODE=token in this environment, with the cluster's token in RAY_AUTH_TOKEN "
    "or ~/.ray/auth_token (`ray get-auth-token` on the head node prints it); and check that this machine "
    "reaches the address the head node printed (give every node `ray start --node-ip-address`). See docs/cluster.md"
)
WORKER_DEATH = ("WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OutOfMemoryError", "ActorDiedError")


@dataclass(frozen=True)
class TrialError:
    """What an exception from a running trial means for the study.

    ``kind``: ``worker_died`` (the process or node is gone: the trial may run again),
    ``setup`` (a :class:`UserError` raised on a worker: the study's set-up is wrong, every
    trial would fail the same way) or ``failed`` (the trial's own code raised)."""

    kind: str
    name: str
    message: str


def classify_error(e: BaseException) -> TrialError:
    name = type(e).__name__
    if any(c.__name__ in WORKER_DEATH for c in type(e).__mro__):
        return TrialError("worker_died", name, f"the Ray worker died ({name})")
    cause = getattr(e, "cause", None) or e
    if isinstance(cause, UserError):
        return TrialError("setup", type(cause).__name__, str(cause).strip())
    text = str(cause).strip().splitlines()
    return TrialError("failed", type(cause).__name__, f"{type(cause).__name__}: {text[-1] if text else ''}"[:500])


class Executor:
    """The interface (see the module docstring)."""

    def check(self) -> None:
        """Refuse (UserError) a set-up that could never run a trial, before anything is created."""
        return None

    def start(self) -> None:
        raise NotImplementedError

    def slots(self) -> int:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {}

    def submit(self, spec: dict[str, Any]) -> Any:
        raise NotImplementedError

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        raise NotImplementedError

    def next_event(self, handle: Any) -> dict[str, Any]:
        raise NotImplementedError

    def cancel(self, handle: Any) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class RayExecutor(Executor):
    """Trials as Ray generator tasks.

    Args:
        trial_fn: the generator a task runs (:func:`.worker.run_trial`).
        resources: the study's ``[resources]`` (per-trial CPUs, GPUs, memory, concurrency).
        ray_config: the study's ``[ray]`` (size of a new local instance).
        address: ``"local"``: a new local Ray instance; ``"auto"`` or ``host:port``: join that
            cluster; ``None``: join the cluster ``$RAY_ADDRESS`` names (as Ray's own tools do),
            else start a local instance.
    """

    def __init__(
        self, trial_fn: Callable[[dict[str, Any]], Any], resources: Any, ray_config: Any, address: str | None
    ) -> None:
        self.trial_fn = trial_fn
        self.resources = resources
        self.ray_config = ray_config
        if address is None:
            address = os.environ.get("RAY_ADDRESS") or None
            self.address_from = "$RAY_ADDRESS" if address else None
        else:
            self.address_from = "--ray-address"
        self.address = address
        self.own = False
        self._remote: Any = None

    def check(self) -> None:
        """Before anything is created: a new local instance must hold at least one trial."""
        import os

        if self.address not in (None, "", "local"):
            return  # a cluster's size is known once joined
        cpus = self.ray_config.num_cpus or os.cpu_count() or 1
        if self.resources.cpus > cpus:
            where = "[ray] num_cpus" if self.ray_config.num_cpus else "this machine"
            raise UserError(
                f"[resources] cpus = {self.resources.cpus:g} per trial, but {where} has {cpus} CPUs: no trial could "
                "start; lower it (1 is usual on a CPU), or join a larger cluster with --ray-address"
            )

    def start(self) -> None:
        import ray

        if ray.is_initialized():
            return
        kw: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
        if self.address in (None, "", "local"):
            r = self.ray_config
            kw.update(
                address="local", num_cpus=r.num_cpus, num_gpus=r.num_gpus, object_store_memory=r.object_store_memory
            )
        else:
            kw["address"] = self.address
        try:
            ray.init(**kw)
        except ConnectionError as e:
            raise UserError(f"{self.address_from} {self.address}: {str(e).splitlines()[0]}\n{JOIN_HINT}") from None
        self.own = True

    def slots(self) -> int:
        import ray

        r = self.resources
        total = ray.cluster_resources()
        n = int(total.get("CPU", 1) // r.cpus) if r.cpus else 1 << 30
        if r.gpus:
            gpus = total.get("GPU", 0)
            if gpus < r.gpus:
                raise UserError(
                    f"[resources] gpus = {r.gpus} per trial, but the Ray cluster has {gpus:g} GPUs; "
                    "set gpus = 0 to train on CPU"
                )
            n = min(n, int(gpus // r.gpus + 1e-9))
        if r.max_concurrent:
            n = min(n, r.max_concurrent)
        if n < 1:
            raise UserError(
                f"[resources] cpus = {r.cpus} per trial, but the Ray cluster has {total.get('CPU', 0):g} CPUs"
            )
        return n

    def describe(self) -> dict[str, Any]:
        import ray

        local = self.address in (None, "", "local")
        mode = "a new local Ray instance" if local else f"the Ray cluster at {self.address} (from {self.address_from})"
        return {"resources": ray.cluster_resources(), "mode": mode}

    def submit(self, spec: dict[str, Any]) -> Any:
        if self._remote is None:
            import ray

            r = self.resources
            opts: dict[str, Any] = {"num_cpus": r.cpus, "num_gpus": r.gpus, "max_retries": 0}
            if r.memory_gb:
                opts["memory"] = int(r.memory_gb * 2**30)
            self._remote = ray.remote(self.trial_fn).options(**opts)
        return self._remote.remote(spec)

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        import ray

        ready, _ = ray.wait(handles, num_returns=1, timeout=timeout)
        return list(ready)

    def next_event(self, handle: Any) -> dict[str, Any]:
        import ray

        ref = next(handle)
        event: dict[str, Any] = ray.get(ref)
        return event

    def cancel(self, handle: Any) -> None:
        import ray

        try:
            ray.cancel(handle, force=True)
        except Exception:
            pass

    def stop(self) -> None:
        if self.own:
            import ray

            ray.shutdown()
            self.own = False


class InlineExecutor(Executor):
    """Trials one at a time in this process (table replays, tests): no Ray."""

    def __init__(self, trial_fn: Callable[[dict[str, Any]], Any]) -> None:
        self.trial_fn = trial_fn

    def start(self) -> None:
        return None

    def slots(self) -> int:
        return 1

    def describe(self) -> dict[str, Any]:
        return {"resources": {"inline": 1}}

    def submit(self, spec: dict[str, Any]) -> Any:
        return iter(self.trial_fn(spec))

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        return handles[:1]

    def next_event(self, handle: Any) -> dict[str, Any]:
        event: dict[str, Any] = next(handle)
        return event

    def cancel(self, handle: Any) -> None:
        close = getattr(handle, "close", None)
        if close is not None:
            close()

    def stop(self) -> None:
        return None
