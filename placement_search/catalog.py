"""Cost tables of a space's named placements: the S3D paper's bottom-/top-heavy families and the
published reference models. The ``families`` and ``references`` commands render these."""

from __future__ import annotations

from typing import Any

from .space import SearchSpace

__all__ = ["family_table", "reference_table"]


def family_table(
    space: SearchSpace, *, frames: int | None, size: int | None, classes: int, kind: str | None
) -> list[dict[str, Any]]:
    """Cost of every bottom-/top-heavy placement (the x-axis of the S3D paper's figure)."""
    costs = space.costs(frames=frames, size=size, num_classes=classes)
    rows = []
    for family in ("bottom_heavy", "top_heavy"):
        for k in range(len(space.groups) + 1):
            p = space.family(family, k, kind)
            macs, params = costs.cost(p)
            rows.append(
                {
                    "family": family,
                    "k": k,
                    "name": f"{family}_{k}",
                    "placement": space.placement_string(p),
                    "params": params,
                    "macs": macs,
                    "flops": 2 * macs,
                }
            )
    return rows


def reference_table(space: SearchSpace, *, frames: int | None, size: int | None, classes: int) -> list[dict[str, Any]]:
    """Cost of the published models and uniform placements of a space (the named
    placements other than the bottom-/top-heavy families)."""
    rows = []
    for name, named in space.named.items():
        if name.startswith(("bottom_heavy_", "top_heavy_")):
            continue
        cost = space.cost(named.placement, frames=frames, size=size, num_classes=classes)
        rows.append(
            {
                "space": space.name,
                "name": name,
                "description": named.description,
                "placement": space.placement_string(named.placement),
                "input": list(cost.input),
                "params": cost.params,
                "macs": cost.macs,
                "flops": cost.flops,
            }
        )
    return rows
