"""What every backbone provides, and the backbone registry.

A backbone turns a placement (one :class:`~placement_search.placement.Choice` per
position) into an ``nn.Module``. Besides :meth:`Backbone.build` it describes itself as a
*cost chain*: the model cut into links in forward order, each link owned by a few positions
(usually one, none for fixed parts), so that the cost of any placement is the sum of per-link costs, and each link's
cost depends only on its own positions' choices and the shape of its input. The cost module
(:mod:`placement_search.cost`) measures links once and reuses them for every placement.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import nn

from ..errors import UserError
from ..fields import from_table
from ..placement import Choice

__all__ = [
    "BACKBONES",
    "Backbone",
    "Link",
    "PositionInfo",
    "get_backbone",
    "parse_args",
    "register_backbone",
]


@dataclass(frozen=True)
class PositionInfo:
    """A searchable position as its backbone sees it.

    Attributes:
        name: position name, e.g. ``layer2.0.conv1``; unique in the backbone.
        default_kt: temporal kernel size used when a choice token gives none.
        block: the block the position belongs to (for ``tie = "block"``).
        stage: the stage the position belongs to (for ``tie = "stage"``).
        in_channels: input width of the position's conv.
        out_channels: output width of the position's conv.
        spatial_stride: spatial stride of the position.
        modules: module-name prefixes, in the built model, whose parameters and
            multiply-adds are charged to this position.
    """

    name: str
    default_kt: int
    block: str
    stage: str
    in_channels: int
    out_channels: int
    spatial_stride: int
    modules: tuple[str, ...]


@dataclass(frozen=True)
class Link:
    """One link of the cost chain: ``make(choices)`` returns a module mapping the link's
    input to its output (for counting only); ``choices`` maps each of the link's
    ``positions`` (none for fixed links) to its choice."""

    name: str
    positions: tuple[str, ...]
    make: Callable[[Mapping[str, Choice]], nn.Module]


class Backbone(ABC):
    """Base class of backbones; subclasses set ``name`` and ``Args`` (a frozen dataclass)."""

    name: ClassVar[str]
    Args: ClassVar[type]

    def __init__(self, args: Any = None) -> None:
        self.args = self.Args() if args is None else args

    @abstractmethod
    def positions(self) -> list[PositionInfo]:
        """Searchable positions in network order."""

    @abstractmethod
    def build(self, choices: Mapping[str, Choice], *, num_classes: int) -> nn.Module:
        """Build the model for one choice per position (names from :meth:`positions`)."""

    @abstractmethod
    def chain(self, *, num_classes: int) -> list[Link]:
        """The model as a chain of links in forward order (see module docstring)."""

    def args_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self.args):
            v = getattr(self.args, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


BACKBONES: dict[str, type[Backbone]] = {}


def register_backbone(cls: type[Backbone]) -> type[Backbone]:
    BACKBONES[cls.name] = cls
    return cls


def get_backbone(name: str, where: str = "backbone") -> type[Backbone]:
    if name not in BACKBONES:
        raise UserError(f"{where}: unknown backbone {name!r}; known backbones are {', '.join(map(repr, BACKBONES))}")
    return BACKBONES[name]


def parse_args(cls: type, table: Mapping[str, Any], where: str) -> Any:
    """Build the dataclass ``cls`` from a TOML/JSON table, with errors naming the field."""
    return from_table(cls, table, where, check=False)
