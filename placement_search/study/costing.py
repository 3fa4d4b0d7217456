"""A study's exact costs, known before anything trains: params, MACs and FLOPs of every
placement at the target input (what the objectives and constraints use) and at the proxy
input, from the space's per-link cost tables; the constraint violations and objective values
built from them."""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..placement import Placement
from ..space import SearchSpace
from .config import StudyConfig

__all__ = ["StudyCosts"]


class StudyCosts:
    def __init__(self, cfg: StudyConfig, space: SearchSpace) -> None:
        self.cfg = cfg
        self.space = space
        self.target = space.costs(frames=cfg.target.frames, size=cfg.target.size, num_classes=cfg.target.num_classes)
        self.proxy = space.costs(frames=cfg.data.frames, size=cfg.data.size, num_classes=cfg.data.num_classes())
        t, p = self.target.input_shape, self.proxy.input_shape
        self.target_input = f"{t[2]}x{t[3]}x{t[4]}"
        self.proxy_input = f"{p[2]}x{p[3]}x{p[4]}"

    def check_feasible_exists(self) -> None:
        """A ``[constraints]`` budget that no placement meets is an error before anything runs."""
        c = self.cfg.constraints
        if c.max_macs is None and c.max_params is None:
            return
        low = self.target.summary()
        if (c.max_macs is not None and c.max_macs < low["min_macs"]) or (
            c.max_params is not None and c.max_params < low["min_params"]
        ):
            raise UserError(
                f"{self.cfg.path or 'study'}: [constraints]: no placement of space {self.space.name!r} fits "
                f"(cheapest: {low['min_macs']:,} MACs, fewest params: {low['min_params']:,} at {self.target_input})"
            )

    def of(self, p: Placement) -> dict[str, Any]:
        """The placement's costs as a trial stores them."""
        macs, params = self.target.cost(p)
        pmacs, _ = self.proxy.cost(p)
        return {
            "placement": p.to_dict(),
            "placement_string": self.space.placement_string(p),
            "params": int(params),
            "macs": int(macs),
            "flops": 2 * int(macs),
            "proxy_macs": int(pmacs),
            "proxy_flops": 2 * int(pmacs),
            "target_input": self.target_input,
            "proxy_input": self.proxy_input,
        }

    def violations(self, costs: dict[str, Any]) -> dict[str, float]:
        """Optuna constraint values (feasible when <= 0): relative excess over each budget."""
        c = self.cfg.constraints
        out = {}
        if c.max_macs is not None:
            out["max_macs"] = (costs["macs"] - c.max_macs) / c.max_macs
        if c.max_params is not None:
            out["max_params"] = (costs["params"] - c.max_params) / c.max_params
        return out

    def values(self, accuracy: float, costs: dict[str, Any]) -> list[float]:
        """The objective values, in the study's order."""
        m = {
            "accuracy": accuracy,
            "macs": costs["macs"],
            "params": costs["params"],
            "latency_ms": costs.get("latency_ms"),
        }
        return [float(m[o]) for o in self.cfg.objectives]
