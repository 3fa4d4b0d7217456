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

import io
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
#: seconds every node gets to answer the pre-flight check (a cold node imports torch first)
NODE_CHECK_S = 120.0
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


#: characters of a trial's worker output kept (its end: where errors and warnings are)
OUTPUT_TAIL = 4000


class _Tail(io.TextIOBase):
    """A text stream keeping the last :data:`OUTPUT_TAIL` characters, passing them on too."""

    def __init__(self, passthrough: Any) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.passthrough = passthrough

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.size += len(text)
        while self.size - len(self.parts[0]) >= OUTPUT_TAIL:
            self.size -= len(self.parts.pop(0))
        if self.passthrough is not None:  # Ray's own per-worker log file keeps everything
            self.passthrough.write(text)
        return len(text)

    def text(self) -> str:
        return "".join(self.parts)[-OUTPUT_TAIL:].strip()


def with_output(trial_fn: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    """``trial_fn`` with what it prints, warns or logs (WARNING and up) while it runs collected
    and attached to its ``result`` event as ``output``, so it reaches the driver once per trial
    instead of as Ray's per-line log forwarding. For Ray workers, which run one trial at a time."""

    def trial(spec: dict[str, Any]) -> Any:
        import contextlib
        import sys
        import warnings

        out, err = _Tail(sys.__stdout__), _Tail(sys.__stderr__)
        handler = logging.StreamHandler(err)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
                warnings.simplefilter("default")  # each distinct warning once, as Python shows it
                for event in trial_fn(spec):
                    if event.get("event") == "result":
                        text = "\n".join(t for t in (out.text(), err.text()) if t)
                        if text:
                            event = {**event, "output": text[-OUTPUT_TAIL:]}
                    yield event
        finally:
            root.removeHandler(handler)

    trial.__name__ = getattr(trial_fn, "__name__", "trial")
    trial.__qualname__ = trial.__name__
    return trial


@dataclass(frozen=True, eq=False)
class _Deferred:
    """A call made when its result is asked for (an in-process executor's measurement)."""

    fn: Callable[[dict[str, Any]], dict[str, Any]]
    payload: dict[str, Any]


class Executor:
    """The interface (see the module docstring)."""

    def check(self) -> None:
        """Refuse (UserError) a set-up that could never run a trial, before anything is created."""
        return None

    def start(self) -> None:
        raise NotImplementedError

    def check_nodes(self, payload: dict[str, Any]) -> list[Any]:
        """Check the machine(s) trials will run on (see :mod:`.nodes`); returns their
        :class:`~.nodes.NodeReport`\\ s. Here: this process's own machine."""
        from .nodes import NodeReport, node_report

        return [NodeReport(**node_report(payload))]

    def node_gpus(self) -> dict[str, float]:
        """GPUs the executor counts per node id (``""``: this process's machine)."""
        return {}

    def slots(self) -> int:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {}

    def submit(self, spec: dict[str, Any]) -> Any:
        raise NotImplementedError

    def measure(self, fn: Callable[[dict[str, Any]], dict[str, Any]], payload: dict[str, Any]) -> Any:
        """Run ``fn(payload)`` holding a whole device of the trials' kind (nothing trains beside
        it: see :mod:`.latency_probe`); a handle that :meth:`wait` and :meth:`result` take."""
        return _Deferred(fn, payload)

    def result(self, handle: Any) -> dict[str, Any]:
        """What a :meth:`measure` handle's function returned (or its exception)."""
        out: dict[str, Any] = handle.fn(handle.payload)
        return out

    def wait(self, handles: list[Any], timeout: float) -> list[Any]:
        raise NotImplementedError

    def next_event(self, handle: Any) -> dict[str, Any]:
        raise NotImplementedError

    def cancel(self, handle: Any) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


#: modules Ray's dashboard needs beyond the minimal ``ray`` install (``ray[default]`` has them)
DASHBOARD_MODULES = ("aiohttp", "aiohttp_cors", "prometheus_client", "opencensus", "grpc")


def _check_dashboard_installed() -> None:
    import importlib.util

    missing = [m for m in DASHBOARD_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"--ray-dashboard: Ray's dashboard needs packages that are not installed ({', '.join(missing)}); "
            "install them with `pip install 'placement-search[ray-dashboard]'` (that is, ray[default]), "
            "or run without --ray-dashboard"
        )


class RayExecutor(Executor):
    """Trials as Ray generator tasks.

    Args:
        trial_fn: the generator a task runs (:func:`.worker.run_trial`).
        resources: the study's ``[resources]`` (per-trial CPUs, GPUs, memory, concurrency).
        ray_config: the study's ``[ray]`` (size of a new local instance).
        address: ``"local"``: a new local Ray instance; ``"auto"`` or ``host:port``: join that
            cluster; ``None``: join the cluster ``$RAY_ADDRESS`` names (as Ray's own tools do),
            else start a local instance.
        dashboard_port: serve Ray's dashboard on ``127.0.0.1:PORT`` (a new local instance only;
            needs ``ray[default]``). None: no dashboard.
    """

    def __init__(
        self,
        trial_fn: Callable[[dict[str, Any]], Any],
        resources: Any,
        ray_config: Any,
        address: str | None,
        *,
        dashboard_port: int | None = None,
    ) -> None:
        self.trial_fn = trial_fn
        self.dashboard_port = dashboard_port
        self.dashboard_url: str | None = None
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
        self._checked: set[str] = set()  # node ids already checked

    def check(self) -> None:
        """Before anything is created: a new local instance must hold at least one trial."""
        import os

        if self.address not in (None, "", "local"):
            return  # a cluster's size is known once joined
        if self.dashboard_port is not None:
            _check_dashboard_installed()
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
        local = self.address in (None, "", "local")
        if local:
            r = self.ray_config
            kw.update(
                address="local", num_cpus=r.num_cpus, num_gpus=r.num_gpus, object_store_memory=r.object_store_memory
            )
            if self.dashboard_port is not None:
                kw.update(include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=self.dashboard_port)
        else:
            kw["address"] = self.address
        try:
            context = ray.init(**kw)
        except ConnectionError as e:
            raise UserError(f"{self.address_from} {self.address}: {str(e).splitlines()[0]}\n{JOIN_HINT}") from None
        self.own = True
        url = getattr(context, "dashboard_url", None)
        if local and self.dashboard_port is not None and url:
            self.dashboard_url = url if "://" in url else f"http://{url}"

    def check_nodes(self, payload: dict[str, Any]) -> list[Any]:
        """A new local instance runs on this machine: checked in this process (a cache build
        shows its progress bar here). On a cluster: a check task pinned to every alive node not
        checked before (nodes that join later are checked when they appear); the caches a node
        lacks are built there one node at a time, so a cache folder the nodes share is built once."""
        import ray

        if self.address in (None, "", "local"):
            if self._checked:
                return []
            self._checked.add("local")
            return super().check_nodes(payload)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .nodes import NodeReport, node_report

        fn = ray.remote(node_report)
        nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n["NodeID"] not in self._checked]

        def on(node: str, build: bool) -> Any:
            strategy = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
            opts = {"num_cpus": 0, "max_retries": 0, "scheduling_strategy": strategy}
            return fn.options(**opts).remote({**payload, "build_cache": build})

        refs = {on(n, False): n for n in nodes}
        ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=NODE_CHECK_S) if refs else ([], [])
        reports: list[NodeReport] = []
        for ref in ready:
            try:
                reports.append(NodeReport(**ray.get(ref)))
            except Exception as e:  # the node died while checking: Ray moves on without it
                logging.getLogger(__name__).warning("node %s: check failed (%s)", refs[ref][:12], type(e).__name__)
        if late:
            raise UserError(
                "Ray nodes did not answer the pre-flight check within "
                f"{NODE_CHECK_S:.0f} s: {', '.join(refs[r][:12] for r in late)} (busy or unreachable?)"
            )
        if payload.get("build_cache"):
            todo = [i for i, r in enumerate(reports) if r.node and any(not c["ready"] for c in r.caches)]
            log = logging.getLogger("placement_search.cache")
            for k, i in enumerate(todo, 1):  # one node at a time: a shared cache folder is built once
                log.warning("decoded-clip cache: %s (%d of %d nodes to build) ...", reports[i].name, k, len(todo))
                node = reports[i].node
                assert node is not None
                built: dict[str, Any] = ray.get(on(node, True))
                reports[i] = NodeReport(**built)
                how = (
                    f"built in {reports[i].built_s:.0f} s" if reports[i].built_s else "found it built (a shared folder)"
                )
                log.warning("decoded-clip cache: %s %s", reports[i].name, how)
        self._checked.update(r.node for r in reports if r.node)
        return reports

    def node_gpus(self) -> dict[str, float]:
        """GPUs Ray counts on each alive node, by node id (``""``: a local instance's)."""
        import ray

        if self.address in (None, "", "local"):
            return {"": float(ray.cluster_resources().get("GPU", 0))}
        return {n["NodeID"]: float(n["Resources"].get("GPU", 0)) for n in ray.nodes() if n.get("Alive")}

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
        if self.dashboard_url:
            mode += f"; Ray dashboard at {self.dashboard_url}"
        elif self.dashboard_port is not None and not local:
            mode += "; the cluster's Ray dashboard is served by its head node (port 8265 there)"
        return {"resources": ray.cluster_resources(), "mode": mode}

    def submit(self, spec: dict[str, Any]) -> Any:
        if self._remote is None:
            import ray

            r = self.resources
            opts: dict[str, Any] = {"num_cpus": r.cpus, "num_gpus": r.gpus, "max_retries": 0}
            if r.memory_gb:
                opts["memory"] = int(r.memory_gb * 2**30)
            self._remote = ray.remote(with_output(self.trial_fn)).options(**opts)
        return self._remote.remote(spec)

    def measure(self, fn: Callable[[dict[str, Any]], dict[str, Any]], payload: dict[str, Any]) -> Any:
        """A task holding one whole GPU (GPU trials) or every CPU of a node (CPU trials)."""
        import ray

        r = self.resources
        if r.gpus:
            opts: dict[str, Any] = {"num_gpus": 1, "num_cpus": r.cpus}
            threads = r.cpus
        else:
            cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
            opts = {
                "num_cpus": max(cpus) if self.address not in (None, "", "local") else ray.cluster_resources()["CPU"]
            }
            threads = opts["num_cpus"]
        return ray.remote(fn).options(max_retries=1, **opts).remote({**payload, "threads": max(1, int(threads))})

    def result(self, handle: Any) -> dict[str, Any]:
        import ray

        out: dict[str, Any] = ray.get(handle)
        return out

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
