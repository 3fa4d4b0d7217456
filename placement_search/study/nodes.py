"""Every node checked before its first trial: the same package, the data readable (and its
decoded-clip cache built), the GPUs the study asks for visible to torch.

:func:`node_report` runs on a node (a Ray task pinned to it, or in the driver's own process
for a local instance, which shares the driver's machine) and says what it found;
:func:`node_problems` judges the reports on the driver, so that a problem is one clear error
naming the node instead of the same trial failing on it again and again.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass, field
from typing import Any

from .._version import __version__

__all__ = ["NodeReport", "check_payload", "node_problems", "node_report"]


@dataclass
class NodeReport:
    """What one node has (see :func:`node_report`)."""

    node: str | None  # Ray node id (None: the driver's own process)
    host: str
    version: str  # placement-search on the node
    torch: str
    cuda_devices: int  # what torch sees
    #: one :class:`~placement_search.data.prepare.CacheStatus` dict per cached split
    caches: list[dict[str, Any]] = field(default_factory=list)
    #: the data could not be read (a missing folder, a list file naming no video, ...)
    data_error: str | None = None
    #: seconds this node spent building caches (``build_cache``)
    built_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def name(self) -> str:
        return f"node {self.node[:12]} ({self.host})" if self.node else f"this machine ({self.host})"


def check_payload(data: dict[str, Any], *, build_cache: bool) -> dict[str, Any]:
    """What a node needs to check itself: the study's ``[data]`` (as a dict) and whether to
    build a missing cache in place."""
    return {"data": data, "build_cache": build_cache}


def node_report(payload: dict[str, Any]) -> dict[str, Any]:
    """Check this node (see the module docstring); a plain function, so Ray can run it anywhere."""
    import torch

    from ..data.config import DataConfig
    from ..data.prepare import build_caches, cache_status
    from ..errors import UserError

    node = None
    try:
        import ray

        if ray.is_initialized():
            node = str(ray.get_runtime_context().get_node_id())
    except Exception:  # pragma: no cover - outside Ray
        node = None
    report = NodeReport(
        node=node,
        host=socket.gethostname(),
        version=__version__,
        torch=torch.__version__,
        cuda_devices=torch.cuda.device_count() if torch.cuda.is_available() else 0,
    )
    data = DataConfig(**payload["data"])
    try:
        data.check("[data]")
        caches = cache_status(data)
        if payload.get("build_cache") and not all(c.ready for c in caches):
            caches = build_caches(data)
            report.built_s = sum(c.seconds for c in caches)
        report.caches = [c.to_dict() for c in caches]
    except UserError as e:
        report.data_error = str(e)
    return report.to_dict()


def node_problems(
    reports: list[NodeReport], *, study_toml: str, gpus_per_trial: float, ray_gpus: dict[str, float] | None = None
) -> list[str]:
    """What stops the study from training on these nodes, one line per problem, each naming
    its node and what to do. ``ray_gpus``: GPUs Ray counts per node id."""
    out = []
    for r in reports:
        if r.version != __version__:
            out.append(
                f"{r.name}: placement-search {r.version}, but the driver runs {__version__}; "
                "install the same version on every node"
            )
        if r.data_error:
            out.append(f"{r.name}: cannot read the study's data: {r.data_error}")
        for c in r.caches:
            if not c["ready"]:
                partial = f" ({c['partial']} of {c['videos']} videos done by a stopped build)" if c["partial"] else ""
                out.append(
                    f"{r.name}: the decoded-clip cache of the {c['split']} split ({c['source']}) is not built"
                    f"{partial}; build it first with `placement-search cache build {study_toml}` (on every node of "
                    "the cluster, or once into a shared cache_dir), or pass --build-cache to build it before training"
                )
        counted = (ray_gpus or {}).get(r.node or "", 0.0)
        if gpus_per_trial and counted and r.cuda_devices < counted:
            out.append(
                f"{r.name}: Ray counts {counted:g} GPUs but torch {r.torch} sees {r.cuda_devices}; install a "
                "CUDA build of torch there (or start the node with --num-gpus matching what torch sees)"
            )
    return out
