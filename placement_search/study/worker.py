"""What a Ray worker runs for one trial: build the placement, (measure latency,) train the
proxy, and stream events back to the driver.

:func:`run_trial` is a plain generator (the driver wraps it in ``ray.remote``), so it can be
tested and used without Ray. Events are small dicts:

* ``{"event": "started", "host", "pid", "device", "node"}`` (``node``: the Ray node id)
* ``{"event": "latency", "latency_ms", "device"}`` when latency is an objective or a constraint;
  a latency over budget ends the trial here with ``{"event": "infeasible", ...}``
* ``{"event": "eval", "step", "accuracy"}`` at each intermediate evaluation
* ``{"event": "result", "result": TrainResult.to_dict(), "stopped_by": [...]}`` last.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any

__all__ = ["run_trial"]

_SPACES: dict[str, Any] = {}
_DATA: dict[str, Any] = {}


def _space(spec: str, text: str | None = None) -> Any:
    """The trial's search space: from the space file's text the driver sent (so every node
    builds the study's space, whatever its own copy of the file says), else by name or path."""
    import hashlib

    key = hashlib.sha256(text.encode()).hexdigest() if text is not None else spec
    if key not in _SPACES:
        if text is not None:
            from pathlib import Path

            from ..space import space_from_text

            _SPACES[key] = space_from_text(text, Path(spec) if spec.endswith(".toml") else None)
        else:
            from ..space import load_space

            _SPACES[key] = load_space(spec)
    return _SPACES[key]


def make_trial_data(cfg: dict[str, Any]) -> Any:
    """The :class:`ClipData` of a study's ``[data]`` table (kept per worker process)."""
    key = json.dumps(cfg, sort_keys=True)
    if key in _DATA:
        return _DATA[key]
    from ..data.config import DataConfig

    data = DataConfig(**cfg).build()
    _DATA.clear()  # one data set per worker process at a time
    _DATA[key] = data
    return data


def _node() -> str | None:
    """The Ray node this worker runs on (None outside Ray): which node trained a trial."""
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id()) if ray.is_initialized() else None
    except Exception:  # pragma: no cover - an older Ray without the runtime context
        return None


def _fault(spec: dict[str, Any], what: str) -> bool:
    return spec.get("fault") == what


def _early_stop_check(spec: dict[str, Any]) -> Any:
    """``check(step, accuracy)`` -> the trials that dominate the run at that step (stop if any)."""
    from .early_stop import Reference, should_stop

    es = spec.get("early_stopping")
    if not es:
        return lambda step, accuracy: []
    reference = [Reference(r["trial"], r["macs"], {int(k): v for k, v in r["curve"].items()}) for r in es["reference"]]
    counts = {int(k): v for k, v in es["counts"].items()} if "counts" in es else None

    def check(step: int, accuracy: float) -> list[int]:
        return should_stop(
            step,
            accuracy,
            spec["macs"],
            reference,
            margin=es["margin"],
            min_trials=es["min_trials"],
            min_dominating=es["min_dominating"],
            counts=counts,
        )

    return check


def _table_trial(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A trial answered by a ground-truth table instead of training (``[proxy] evaluator``)."""
    from ..table.evaluator import table_trial

    check = _early_stop_check(spec)
    stopped_by: list[int] = []

    def callback(step: int, accuracy: float) -> bool:
        dom = check(step, accuracy)
        stopped_by.extend(dom)
        return bool(dom)

    for event in table_trial(spec, callback):
        if event["event"] == "result":
            event = {**event, "stopped_by": stopped_by}
        yield event


def run_trial(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Run one trial (see the module docstring for the events)."""

    from ..placement import Placement
    from ..train import ProxyBudget

    if _fault(spec, "kill"):  # test hook: a worker that dies (as on an OOM kill or a lost node)
        os.kill(os.getpid(), 9)
    if _fault(spec, "raise"):
        raise RuntimeError("injected failure (test hook)")
    if str(spec.get("evaluator") or "").startswith("table:"):
        yield from _table_trial(spec)
        return
    space = _space(spec["space"], spec.get("space_toml"))
    placement = Placement.from_dict(spec["placement"], "trial placement")
    budget_kw = dict(spec["proxy"])
    if _fault(spec, "diverge"):
        budget_kw["lr"] = budget_kw["lr"] * 1e12
    budget = ProxyBudget(**budget_kw)
    data = make_trial_data(spec["data"])
    yield {
        "event": "started",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "device": budget.device,
        "node": _node(),
    }

    if spec.get("latency"):
        over = yield from _latency(spec, space, placement, budget)
        if over:
            return

    result, model, stopped_by = yield from _train_in_thread(
        spec, budget, data, lambda: space.build(placement, num_classes=data.num_classes)
    )
    yield _final(spec, space, placement, result, model, stopped_by)


def _train_in_thread(
    spec: dict[str, Any], budget: Any, data: Any, build: Callable[[], Any]
) -> Generator[dict[str, Any], None, tuple[Any, Any, list[int]]]:
    """Train the proxy in a thread, yielding its ``eval`` events as they come; returns the
    :class:`TrainResult`, the model ``build`` made (None if none was) and the trials that
    stopped the run early."""
    from ..train import train_proxy

    events: queue.Queue[dict[str, Any] | None] = queue.Queue()
    stopped_by: list[int] = []
    check = _early_stop_check(spec)

    def callback(step: int, ev: Any) -> bool:
        if step >= budget.steps:
            return False  # the final evaluation
        events.put({"event": "eval", "step": step, "accuracy": ev.top1})
        dom = check(step, ev.top1)
        if dom:
            stopped_by.extend(dom)
            return True
        return False

    built: list[Any] = []

    def factory() -> Any:
        built.append(build())
        return built[-1]

    out: dict[str, Any] = {}

    def work() -> None:
        try:
            out["result"] = train_proxy(factory, data, budget, callback=callback)
        except BaseException as e:  # a UserError from the trainer: report it, do not hang
            out["error"] = e
        finally:
            events.put(None)

    thread = threading.Thread(target=work, name="proxy-train", daemon=True)
    thread.start()
    while (item := events.get()) is not None:
        yield item
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["result"], (built[-1] if built else None), stopped_by


def _final(
    spec: dict[str, Any], space: Any, placement: Any, result: Any, model: Any, stopped_by: list[int]
) -> dict[str, Any]:
    """The ``result`` event, with the cost table (``cost_table``) and the trained weights
    (``keep_weights``, of a run that finished or was stopped early)."""
    final: dict[str, Any] = {"event": "result", "result": result.to_dict(), "stopped_by": stopped_by}
    if spec.get("cost_table"):
        final["cost_table"] = _cost_table(spec, space, placement)
    if spec.get("keep_weights") and model is not None and result.status in ("ok", "stopped"):
        from safetensors.torch import save

        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        final["weights"] = save(state, metadata={"placement": json.dumps(spec["placement"])})
    return final


def _latency(spec: dict[str, Any], space: Any, placement: Any, budget: Any) -> Generator[dict[str, Any], None, bool]:
    """The trial's ``latency`` event (measured on an idle device by the driver, else timed here
    on this trial's device), then ``infeasible`` if it is over the budget; returns whether it was."""
    lat = spec["latency"]
    if lat.get("known_ms") is not None:  # measured on an idle device (study/latency_probe.py)
        ms, device = float(lat["known_ms"]), str(lat.get("device") or "?")
    else:  # [latency] measure = "trial": on this trial's own device, before training
        import torch

        from ..devices import resolve_device
        from ..latency import device_name, measure_latency

        if budget.threads:
            torch.set_num_threads(budget.threads)
        dev = str(resolve_device(budget.device))
        model = space.build(placement, num_classes=spec["target"]["num_classes"])
        ms = measure_latency(
            model, lat["input_shape"], device=dev, runs=lat.get("runs", 10), warmup=lat.get("warmup", 3)
        ).median_ms
        device = device_name(dev)
        del model
    yield {"event": "latency", "latency_ms": ms, "device": device}
    max_ms = lat.get("max_ms")
    if max_ms is not None and ms > max_ms:
        yield {
            "event": "infeasible",
            "latency_ms": ms,
            "reason": f"latency {ms:.2f} ms on {device} over max_latency_ms {max_ms}",
        }
        return True
    return False


def _cost_table(spec: dict[str, Any], space: Any, placement: Any) -> list[dict[str, Any]]:
    """Params, MACs and FLOPs per position at the target input, and the fixed layers'."""
    t = spec["target"]
    cost = space.cost(placement, frames=t["frames"], size=t["size"], num_classes=t["num_classes"])
    return [
        {
            "position": pos,
            "op": placement[pos].op,
            "kt": placement[pos].kt,
            "params": c.params,
            "macs": c.macs,
            "flops": c.flops,
        }
        for pos, c in cost.per_position.items()
    ] + [
        {
            "position": "(fixed: classifier, non-searchable layers)",
            "op": "",
            "kt": "",
            "params": cost.fixed.params,
            "macs": cost.fixed.macs,
            "flops": cost.fixed.flops,
        }
    ]
