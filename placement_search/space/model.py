"""The search-space data model: :class:`SearchSpace` (a backbone, the choices at each of its
positions, the tied groups, the named placements), its :class:`Group` and :class:`NamedPlacement`.
Spaces are read from their files by :mod:`placement_search.space.files`."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from ..backbones import Backbone, PositionInfo, parse_args
from ..cost import Cost, measure, meta_build
from ..errors import UserError
from ..ops import OP_KINDS
from ..placement import Choice, Placement, parse_choice_token

if TYPE_CHECKING:
    from ..enumerate import PlacementCosts

__all__ = ["Group", "NamedPlacement", "SearchSpace"]


@dataclass(frozen=True)
class Group:
    """Positions that always take the same choice; one decision of the search."""

    name: str
    positions: tuple[str, ...]
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class NamedPlacement:
    name: str
    description: str
    placement: Placement
    in_space: bool  # every choice is offered by the space and there are no backbone overrides


class SearchSpace:
    """A loaded, validated search space. Build with :func:`load_space`."""

    def __init__(
        self,
        *,
        name: str,
        description: str,
        backbone: Backbone,
        backbone_table: Mapping[str, Any],
        position_tokens: Mapping[str, Sequence[str]],
        groups: Sequence[Group],
        family_kind: str,
        clip: tuple[int, int] = (16, 112),
        path: Path | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.backbone = backbone
        self.backbone_table = dict(backbone_table)
        self.path = path
        self.positions: list[PositionInfo] = backbone.positions()
        self._info = {p.name: p for p in self.positions}
        self.groups: list[Group] = list(groups)
        self._group_of = {pos: g for g in self.groups for pos in g.positions}
        self.family_kind = family_kind
        self.clip = clip
        self.position_choices: dict[str, tuple[Choice, ...]] = {}
        for p in self.positions:
            where = f"{self._where}: position {p.name!r}"
            choices = [parse_choice_token(t, p.default_kt, where) for t in position_tokens[p.name]]
            for i, c in enumerate(choices):
                if c in choices[:i]:
                    first = position_tokens[p.name][choices.index(c)]
                    raise UserError(
                        f"{where}: choices {first!r} and {position_tokens[p.name][i]!r} are the same op "
                        f"(the position's default temporal kernel is {p.default_kt}); list each choice once"
                    )
            self.position_choices[p.name] = tuple(choices)
        self.named: dict[str, NamedPlacement] = {}

    # -- basics -------------------------------------------------------------------------
    @property
    def _where(self) -> str:
        return str(self.path) if self.path else f"space {self.name!r}"

    @property
    def position_names(self) -> list[str]:
        return [p.name for p in self.positions]

    @property
    def size(self) -> int:
        """Number of distinct placements the search can pick."""
        return math.prod(len(g.tokens) for g in self.groups)

    def group_of(self, position: str) -> Group:
        return self._group_of[position]

    def group_choice_index(self, placement: Placement, group: Group) -> int | None:
        """Index of the placement's choice for ``group`` in the group's tokens (None if outside)."""
        pos = group.positions[0]
        try:
            return self.position_choices[pos].index(placement[pos])
        except ValueError:
            return None

    # -- placements ---------------------------------------------------------------------
    def from_group_tokens(self, tokens: Mapping[str, str] | Sequence[str], where: str = "placement") -> Placement:
        """Placement from one token per group (a mapping by group name, or a sequence in order)."""
        if not isinstance(tokens, Mapping):
            if len(tokens) != len(self.groups):
                raise UserError(f"{where}: expected {len(self.groups)} choices (one per group), got {len(tokens)}")
            tokens = dict(zip((g.name for g in self.groups), tokens))
        choices: dict[str, Choice] = {}
        for g in self.groups:
            if g.name not in tokens:
                raise UserError(f"{where}: no choice for group {g.name!r}")
            for pos in g.positions:
                choices[pos] = parse_choice_token(
                    tokens[g.name], self._info[pos].default_kt, f"{where}: group {g.name!r}"
                )
        return Placement.from_mapping(self.name, [(p, choices[p]) for p in self.position_names])

    def from_indices(self, indices: Sequence[int]) -> Placement:
        """Placement from one choice index per group."""
        return self.from_group_tokens([g.tokens[i] for g, i in zip(self.groups, indices)])

    def placement_string(self, placement: Placement) -> str:
        """Readable form, one token per group: ``3d 3d 2d sep ...``."""
        return " ".join(placement[g.positions[0]].token(self._info[g.positions[0]].default_kt) for g in self.groups)

    def validate(self, placement: Placement, where: str = "placement", *, in_space: bool = False) -> Placement:
        """Check a placement against this space; returns it in network order.

        Args:
            placement: the placement.
            where: what to call it in error messages.
            in_space: also require every choice to be one the space offers.
        """
        if placement.space != self.name:
            raise UserError(f"{where}: placement is for space {placement.space!r}, not {self.name!r}")
        given = placement.as_dict()
        missing = [p for p in self.position_names if p not in given]
        unknown = [p for p in given if p not in self._info]
        if unknown:
            raise UserError(
                f"{where}: unknown position {unknown[0]!r}; positions of {self.name!r} are {', '.join(self.position_names)}"
            )
        if missing:
            raise UserError(f"{where}: no choice for position(s) {', '.join(missing)}")
        for g in self.groups:
            first = given[g.positions[0]]
            # tied positions take the same token; a token without ':kt' means each position's
            # own default kt, so 3d:7 at conv1 and 3d:3 at conv2c can both be "3d"
            tokens = {first.token(self._info[g.positions[0]].default_kt), first.token()}
            if not any(
                all(given[pos] == parse_choice_token(t, self._info[pos].default_kt, where) for pos in g.positions)
                for t in tokens
            ):
                bad = next(pos for pos in g.positions if given[pos] != first)
                raise UserError(
                    f"{where}: positions {g.positions[0]!r} and {bad!r} are tied in group {g.name!r} "
                    f"but have different choices ({first.token()} vs {given[bad].token()})"
                )
        if in_space:
            for pos in self.position_names:
                if given[pos] not in self.position_choices[pos]:
                    allowed = ", ".join(c.token(self._info[pos].default_kt) for c in self.position_choices[pos])
                    raise UserError(
                        f"{where}: position {pos!r}: {given[pos].token(self._info[pos].default_kt)!r} is not offered; allowed: {allowed}"
                    )
        self.backbone_for(placement, where)
        return Placement(self.name, tuple((p, given[p]) for p in self.position_names), placement.backbone)

    def resolve(self, spec: str | Placement, where: str = "--placement") -> Placement:
        """A placement from a name, JSON text, a JSON file, or tokens (one per group or position)."""
        if isinstance(spec, Placement):
            return self.validate(spec, where)
        text = spec.strip()
        if text in self.named:
            return self.named[text].placement
        if text.startswith("{"):
            return self.validate(Placement.from_json(text, where), where)
        if text.endswith(".json"):
            path = Path(text)
            if not path.is_file():
                raise UserError(f"{where}: placement file {text!r} does not exist")
            try:
                content = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise UserError(f"{where}: cannot read placement file {text!r}: {e}") from None
            return self.validate(Placement.from_json(content, str(path)), str(path))
        tokens = [t for t in re.split(r"[\s,]+", text) if t]
        if len(tokens) > 1 or (len(tokens) == 1 and len(self.groups) == 1):
            if len(tokens) == len(self.groups):
                return self.from_group_tokens(tokens, where)
            if len(tokens) == len(self.positions):
                choices = [
                    (p.name, parse_choice_token(t, p.default_kt, f"{where}: position {p.name!r}"))
                    for p, t in zip(self.positions, tokens)
                ]
                return self.validate(Placement.from_mapping(self.name, choices), where)
            raise UserError(
                f"{where}: {len(tokens)} tokens given; expected {len(self.groups)} (one per group) "
                f"or {len(self.positions)} (one per position)"
            )
        names = ", ".join(self.named)
        raise UserError(
            f"{where}: {text!r} is not a named placement of space {self.name!r}, JSON, a .json file "
            f"or a list of op tokens; named placements are: {names}"
        )

    # -- families -----------------------------------------------------------------------
    def family(self, family: str, k: int, kind: str | None = None) -> Placement:
        """``bottom_heavy`` (temporal at the first ``k`` groups, 2D after) or ``top_heavy``
        (2D at the first ``k`` groups, temporal after), with temporal kind ``kind``."""
        kind = kind or self.family_kind
        if kind not in OP_KINDS or kind == "2d":
            temporal = ", ".join(k for k in OP_KINDS if k != "2d")
            raise UserError(f"family kind: expected a temporal kind ({temporal}), got {kind!r}")
        n = len(self.groups)
        if family not in ("bottom_heavy", "top_heavy"):
            raise UserError(f"family: expected 'bottom_heavy' or 'top_heavy', got {family!r}")
        if not 0 <= k <= n:
            raise UserError(f"family {family}: K must be in 0..{n}, got {k}")
        is_temporal = [i < k if family == "bottom_heavy" else i >= k for i in range(n)]
        tokens = [self.kind_token(g, kind if t else "2d") for g, t in zip(self.groups, is_temporal)]
        return self.from_group_tokens(tokens, f"family {family}_{k}")

    def kind_token(self, group: Group, kind: str) -> str:
        """The group's first offered token of op kind ``kind`` (its first temporal kernel size)."""
        for tok in group.tokens:
            if tok.partition(":")[0] == kind:
                return tok
        raise UserError(
            f"{self._where}: op kind {kind!r} is not offered at group {group.name!r}; offered: {', '.join(group.tokens)}"
        )

    # -- models and costs -----------------------------------------------------------------
    def backbone_for(self, placement: Placement, where: str = "placement") -> Backbone:
        if not placement.backbone:
            return self.backbone
        cls = type(self.backbone)
        table = {**self.backbone_table, **placement.backbone_overrides()}
        backbone = cls(parse_args(cls.Args, table, f"{where}.backbone"))
        if [p.name for p in backbone.positions()] != self.position_names:
            raise UserError(
                f"{where}.backbone: overrides {placement.backbone_overrides()} change the positions of space "
                f"{self.name!r}; only arguments that keep the positions can be overridden"
            )
        return backbone

    def build(self, placement: Placement | str, *, num_classes: int = 400) -> nn.Module:
        """The ``nn.Module`` for a placement (randomly initialised)."""
        p = self.resolve(placement) if isinstance(placement, str) else self.validate(placement)
        return self.backbone_for(p).build(p.as_dict(), num_classes=num_classes)

    def input_shape(self, frames: int | None = None, size: int | None = None) -> tuple[int, int, int, int, int]:
        """Clip tensor shape ``(1, C, T, H, W)``; unset sizes take the space's default clip."""
        frames = self.clip[0] if frames is None else frames
        size = self.clip[1] if size is None else size
        from ..limits import check_clip

        check_clip(frames, size)
        return (1, getattr(self.backbone.args, "in_channels", 3), frames, size, size)

    def cost(
        self, placement: Placement | str, *, frames: int | None = None, size: int | None = None, num_classes: int = 400
    ) -> Cost:
        """Params, MACs and FLOPs of a placement at a clip size, with a per-position and
        per-layer breakdown. Built on the meta device: nothing is allocated."""
        p = self.resolve(placement) if isinstance(placement, str) else self.validate(placement)
        backbone = self.backbone_for(p)
        model = meta_build(backbone.build, p.as_dict(), num_classes=num_classes)
        modules = {info.name: info.modules for info in backbone.positions()}
        return measure(model, self.input_shape(frames, size), modules)

    def costs(self, *, frames: int | None = None, size: int | None = None, num_classes: int = 400) -> PlacementCosts:
        """Cost of every placement of the space, without building them (see :class:`PlacementCosts`)."""
        from ..enumerate import PlacementCosts

        return PlacementCosts(self, self.input_shape(frames, size), num_classes)

    # -- description --------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "path": str(self.path) if self.path else None,
            "backbone": {"name": self.backbone.name, "args": self.backbone.args_dict()},
            "size": self.size,
            "family_kind": self.family_kind,
            "clip": {"frames": self.clip[0], "size": self.clip[1]},
            "positions": [
                {
                    "name": p.name,
                    "block": p.block,
                    "stage": p.stage,
                    "in_channels": p.in_channels,
                    "out_channels": p.out_channels,
                    "spatial_stride": p.spatial_stride,
                    "default_kt": p.default_kt,
                    "group": self._group_of[p.name].name,
                    "choices": [c.token(p.default_kt) for c in self.position_choices[p.name]],
                }
                for p in self.positions
            ],
            "groups": [
                {"name": g.name, "positions": list(g.positions), "choices": list(g.tokens)} for g in self.groups
            ],
            "placements": {
                n: {
                    "description": np.description,
                    "string": self.placement_string(np.placement),
                    "in_space": np.in_space,
                    "placement": np.placement.to_dict(),
                }
                for n, np in self.named.items()
            },
        }
