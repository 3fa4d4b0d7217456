"""Search spaces: a backbone, the choices at each of its positions, ties, named placements.

A space file (``search_spaces/*.toml``)::

    schema_version = 1
    name = "resnet18"
    description = "..."
    backbone = "resnet"
    tie = "block"                       # "none" | "block" | "stage": tie positions into groups
    choices = ["2d", "3d", "sep", "2plus1d"]   # tokens offered at every position
    kt = [3]                            # optional: temporal kernel sizes offered (else the position default)
    family_kind = "3d"                  # temporal kind of the bottom-/top-heavy families
    clip = { frames = 16, size = 112 }  # default clip at which costs are reported

    [backbone_args]                     # the backbone's arguments
    depth = 18

    [positions."conv1"]                 # optional per-position overrides of choices / kt
    kt = [7, 3]

    [[groups]]                          # optional explicit ties (glob patterns allowed)
    name = "head"
    positions = ["layer4.*"]

    [placements.mc3]                    # named placements: glob -> token, first match wins
    description = "MC3 (Tran et al. 2018)"
    ops = { stem = "3d", "layer1.*" = "3d", "*" = "2d" }
    backbone = { }                      # optional backbone-argument overrides

Every space also has the named placements ``all_2d``, ``all_3d``, ``all_sep``
(``all_2plus1d`` where offered), ``bottom_heavy_K`` (the family kind at the first K
groups, 2D after) and ``top_heavy_K`` (2D at the first K groups, the family kind after)
for K = 0 ... number of groups.
"""

from .files import SPACE_SCHEMA_VERSION, builtin_spaces_dir, list_spaces, load_space, space_from_dict, space_from_text
from .model import Group, NamedPlacement, SearchSpace

__all__ = [
    "SPACE_SCHEMA_VERSION",
    "Group",
    "NamedPlacement",
    "SearchSpace",
    "builtin_spaces_dir",
    "list_spaces",
    "load_space",
    "space_from_dict",
    "space_from_text",
]
