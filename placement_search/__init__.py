"""placement-search: where in a video network do you need temporal convolutions?

The Python API mirrors the command line::

    from placement_search import load_space
    space = load_space("inception")
    model = space.build("s3d", num_classes=400)           # nn.Module
    cost = space.cost("s3d", frames=64, size=224)          # params, MACs, FLOPs (= 2 x MACs)
    costs = space.costs(frames=64, size=224)               # every placement, without building
    costs.count_within(max_macs=30_000_000_000)

    from placement_search.data import make_data
    data = make_data("synthetic")                          # or a folder / list file of videos
    result = train_proxy(lambda: space.build("s3d", num_classes=data.num_classes), data, ProxyBudget())

    from placement_search import load_architecture        # an exported search result
    model = load_architecture("exports/trial-0007", num_classes=400)
"""

from ._version import __version__
from .architecture import load_architecture
from .cost import Cost, measure, meta_build
from .enumerate import PlacementCosts
from .errors import UserError
from .latency import Latency, measure_latency
from .ops import OP_KINDS, TEMPORAL_KINDS, build_op, register_op
from .placement import Choice, Placement
from .space import NamedPlacement, SearchSpace, list_spaces, load_space
from .train import EvalResult, ProxyBudget, TrainResult, train_proxy

__all__ = [
    "OP_KINDS",
    "TEMPORAL_KINDS",
    "Choice",
    "Cost",
    "EvalResult",
    "Latency",
    "NamedPlacement",
    "Placement",
    "PlacementCosts",
    "ProxyBudget",
    "SearchSpace",
    "TrainResult",
    "UserError",
    "__version__",
    "build_op",
    "list_spaces",
    "load_architecture",
    "load_space",
    "measure",
    "measure_latency",
    "meta_build",
    "register_op",
    "train_proxy",
]
