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

from __future__ import annotations

import fnmatch
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from .backbones import Backbone, PositionInfo, get_backbone, parse_args
from .cost import Cost, measure, meta_build
from .errors import UserError
from .ops import OP_KINDS
from .placement import Choice, Placement, parse_choice_token

if TYPE_CHECKING:
    from .enumerate import PlacementCosts

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

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

SPACE_SCHEMA_VERSION = 1
_TOP_KEYS = {
    "schema_version",
    "name",
    "description",
    "backbone",
    "backbone_args",
    "tie",
    "choices",
    "kt",
    "family_kind",
    "positions",
    "groups",
    "placements",
    "clip",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def builtin_spaces_dir() -> Path:
    """The shipped ``search_spaces/`` folder (next to the package in a checkout, inside it when installed)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "search_spaces", here / "search_spaces"):
        if candidate.is_dir():
            return candidate
    return here.parent / "search_spaces"


def list_spaces() -> list[str]:
    return sorted(p.stem for p in builtin_spaces_dir().glob("*.toml"))


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


def _expand_tokens(tokens: Sequence[str], kts: Sequence[int] | None) -> list[str]:
    out: list[str] = []
    for tok in tokens:
        op, _, kt = tok.partition(":")
        if kts is None or op == "2d" or kt:
            new = [tok]
        else:
            new = [f"{op}:{k}" for k in kts]
        out.extend(t for t in new if t not in out)
    return out


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
        from .limits import check_clip

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
        from .enumerate import PlacementCosts

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


# -- loading ----------------------------------------------------------------------------


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: expected a non-empty list of strings, got {value!r}")
    return value


def _kt_list(value: Any, where: str) -> list[int]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 and v % 2 == 1 for v in value)
    ):
        raise UserError(f"{where}: expected a non-empty list of odd integers >= 1, got {value!r}")
    return value


def _check_tokens(tokens: list[str], where: str) -> list[str]:
    tokens = [tok.strip() for tok in tokens]
    for tok in tokens:
        parse_choice_token(tok, 3, where)
    return tokens


def _match(patterns: Sequence[str], names: Sequence[str], where: str) -> list[str]:
    out: list[str] = []
    for pat in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            raise UserError(f"{where}: {pat!r} matches no position; positions are {', '.join(names)}")
        out.extend(h for h in hits if h not in out)
    return out


def load_space(spec: str | Path) -> SearchSpace:
    """Load a space by name (from the shipped ``search_spaces/``) or from a TOML path."""
    path = Path(spec)
    if not (path.suffix == ".toml" or path.exists() or "/" in str(spec)):
        path = builtin_spaces_dir() / f"{spec}.toml"
        if not path.is_file():
            raise UserError(
                f"unknown search space {str(spec)!r}; shipped spaces are {', '.join(list_spaces())} "
                "(or give a path to a .toml file)"
            )
    if not path.is_file():
        raise UserError(f"search-space file {str(path)!r} does not exist or is not a file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a valid TOML file: {e}") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read the search-space file: {e}") from None
    return space_from_dict(data, path)


def space_from_text(text: str, path: Path | None = None, where: str | None = None) -> SearchSpace:
    """A space from a space file's text (as a study or an ``arch.json`` stores it); ``where``
    names the text in errors (default: ``path``)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{where or path or '<space>'}: not valid TOML: {e}") from None
    return space_from_dict(data, path)


def space_from_dict(data: Mapping[str, Any], path: Path | None = None) -> SearchSpace:
    """Validate a parsed space file; errors name the file and the field."""
    f = str(path) if path else "<space>"
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise UserError(f"{f}: unknown field {unknown[0]!r}; allowed fields are {', '.join(sorted(_TOP_KEYS))}")
    version = data.get("schema_version")
    if type(version) is not int or version != SPACE_SCHEMA_VERSION:
        raise UserError(f"{f}: schema_version: expected {SPACE_SCHEMA_VERSION}, got {version!r}")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UserError(f"{f}: name: expected a name of letters, digits, '_', '.', '-', got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise UserError(f"{f}: description: expected a string")
    backbone_name = data.get("backbone")
    if not isinstance(backbone_name, str):
        raise UserError(f"{f}: backbone: expected a backbone name, got {backbone_name!r}")
    cls = get_backbone(backbone_name, f"{f}: backbone")
    table = data.get("backbone_args", {})
    if not isinstance(table, Mapping):
        raise UserError(f"{f}: backbone_args: expected a table")
    backbone = cls(parse_args(cls.Args, table, f"{f}: backbone_args"))
    positions = backbone.positions()
    names = [p.name for p in positions]

    position_tokens = _position_tokens(data, f, names)
    groups = _groups(data, f, positions, position_tokens)
    family_kind, clip = _family_and_clip(data, f)
    space = SearchSpace(
        name=name,
        description=description,
        backbone=backbone,
        backbone_table=table,
        position_tokens=position_tokens,
        groups=groups,
        family_kind=family_kind,
        clip=clip,
        path=path,
    )
    _add_generated(space, f)
    raw = data.get("placements", {})
    if not isinstance(raw, Mapping):
        raise UserError(f"{f}: placements: expected a table of named placements")
    for pname, spec in raw.items():
        if pname in space.named:
            raise UserError(f"{f}: placements.{pname}: the name is taken by a generated placement")
        space.named[pname] = _named(space, pname, spec, f)
    return space


def _position_tokens(data: Mapping[str, Any], f: str, names: list[str]) -> dict[str, list[str]]:
    """The choices at each position: the space's ``choices``/``kt``, then ``[positions.*]``'s."""
    tokens = _check_tokens(_str_list(data.get("choices", ["2d", "3d", "sep"]), f"{f}: choices"), f"{f}: choices")
    kts = _kt_list(data["kt"], f"{f}: kt") if "kt" in data else None
    per_pos = data.get("positions", {})
    if not isinstance(per_pos, Mapping):
        raise UserError(f"{f}: positions: expected a table of position -> {{choices, kt}}")
    position_tokens: dict[str, list[str]] = {n: _expand_tokens(tokens, kts) for n in names}
    for pat, spec in per_pos.items():
        where = f"{f}: positions.{pat}"
        if not isinstance(spec, Mapping) or set(spec) - {"choices", "kt"}:
            raise UserError(f"{where}: expected a table with 'choices' and/or 'kt'")
        for pos in _match([pat], names, where):
            toks = (
                _check_tokens(_str_list(spec["choices"], f"{where}.choices"), f"{where}.choices")
                if "choices" in spec
                else tokens
            )
            pk = _kt_list(spec["kt"], f"{where}.kt") if "kt" in spec else kts
            position_tokens[pos] = _expand_tokens(toks, pk)
    return position_tokens


def _groups(
    data: Mapping[str, Any], f: str, positions: Sequence[Any], position_tokens: dict[str, list[str]]
) -> list[Group]:
    """The decisions: positions tied by ``tie`` and ``[[groups]]``, each offering one choice list."""
    names = [p.name for p in positions]
    tie = data.get("tie", "none")
    if tie not in ("none", "block", "stage"):
        raise UserError(f"{f}: tie: expected one of 'none', 'block', 'stage', got {tie!r}")
    group_of: dict[str, str] = {}
    for p in positions:
        group_of[p.name] = {"none": p.name, "block": p.block, "stage": p.stage}[tie]
    raw_groups = data.get("groups", [])
    if not isinstance(raw_groups, list):
        raise UserError(f"{f}: groups: expected an array of tables ([[groups]])")
    for i, g in enumerate(raw_groups):
        where = f"{f}: groups[{i}]"
        if not isinstance(g, Mapping) or set(g) - {"name", "positions"} or "positions" not in g:
            raise UserError(f"{where}: expected a table with 'positions' (and optionally 'name')")
        members = _match(_str_list(g["positions"], f"{where}.positions"), names, f"{where}.positions")
        gname = g.get("name", members[0])
        if not isinstance(gname, str) or not gname:
            raise UserError(f"{where}.name: expected a non-empty string")
        clash = [n for n, grp in group_of.items() if grp == gname and n not in members]
        if clash:
            raise UserError(
                f"{where}.name: {gname!r} is already the group of {', '.join(clash)} (from tie = {tie!r}); "
                "choose another name or list those positions too"
            )
        for m in members:
            group_of[m] = gname
    groups: list[Group] = []
    seen: dict[str, list[str]] = {}
    for n in names:
        seen.setdefault(group_of[n], []).append(n)
    for gname, members in seen.items():
        toks = position_tokens[members[0]]
        for m in members[1:]:
            if position_tokens[m] != toks:
                raise UserError(
                    f"{f}: group {gname!r}: tied positions {members[0]!r} and {m!r} offer different choices "
                    f"({toks} vs {position_tokens[m]})"
                )
        groups.append(Group(gname, tuple(members), tuple(toks)))
    return groups


def _family_and_clip(data: Mapping[str, Any], f: str) -> tuple[str, tuple[int, int]]:
    family_kind = data.get("family_kind", "3d")
    if not isinstance(family_kind, str) or family_kind not in OP_KINDS or family_kind == "2d":
        raise UserError(
            f"{f}: family_kind: expected a temporal kind ({', '.join(k for k in OP_KINDS if k != '2d')}), got {family_kind!r}"
        )

    clip_table = data.get("clip", {"frames": 16, "size": 112})
    if (
        not isinstance(clip_table, Mapping)
        or set(clip_table) - {"frames", "size"}
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in clip_table.values())
    ):
        raise UserError(
            f"{f}: clip: expected a table {{ frames = T, size = S }} of positive integers, got {clip_table!r}"
        )
    return family_kind, (clip_table.get("frames", 16), clip_table.get("size", 112))


def _in_space(space: SearchSpace, p: Placement) -> bool:
    return not p.backbone and all(c in space.position_choices[n] for n, c in p.choices)


def _add_generated(space: SearchSpace, f: str) -> None:
    offered = set.intersection(*(set(op.partition(":")[0] for op in g.tokens) for g in space.groups))
    for kind in OP_KINDS:
        if kind in offered:
            p = space.from_group_tokens([space.kind_token(g, kind) for g in space.groups], f"{f}: all_{kind}")
            space.named[f"all_{kind}"] = NamedPlacement(
                f"all_{kind}", f"{kind} at every position", p, _in_space(space, p)
            )
    if space.family_kind not in offered:
        raise UserError(
            f"{f}: family_kind {space.family_kind!r} is not offered at every group; offered everywhere: {sorted(offered)}"
        )
    n = len(space.groups)
    for family, text in (
        ("bottom_heavy", "{kind} at the first {k} groups, 2d after"),
        ("top_heavy", "2d at the first {k} groups, {kind} after"),
    ):
        for k in range(n + 1):
            p = space.family(family, k)
            space.named[f"{family}_{k}"] = NamedPlacement(
                f"{family}_{k}", text.format(kind=space.family_kind, k=k), p, _in_space(space, p)
            )


def _named(space: SearchSpace, pname: str, spec: Any, f: str) -> NamedPlacement:
    where = f"{f}: placements.{pname}"
    if not _NAME_RE.match(pname):
        raise UserError(f"{where}: placement names are letters, digits, '_', '.', '-'")
    if isinstance(spec, str):
        spec = {"ops": {"*": spec}}
    if not isinstance(spec, Mapping) or set(spec) - {"ops", "description", "backbone"} or "ops" not in spec:
        raise UserError(f"{where}: expected a token or a table with 'ops' (and optionally 'description', 'backbone')")
    ops = spec["ops"]
    if isinstance(ops, str):
        ops = {"*": ops}
    if not isinstance(ops, Mapping):
        raise UserError(f"{where}.ops: expected a table of position pattern -> op token")
    choices: dict[str, Choice] = {}
    for pat, tok in ops.items():
        if not isinstance(tok, str):
            raise UserError(f"{where}.ops.{pat}: expected an op token like '3d' or 'sep:5', got {tok!r}")
        for pos in _match([pat], space.position_names, f"{where}.ops"):
            if pos not in choices:
                choices[pos] = parse_choice_token(tok, space._info[pos].default_kt, f"{where}.ops.{pat}")
    missing = [n for n in space.position_names if n not in choices]
    if missing:
        raise UserError(f"{where}.ops: no op for position(s) {', '.join(missing)} (add a '*' pattern)")
    backbone = spec.get("backbone", {})
    if not isinstance(backbone, Mapping):
        raise UserError(f"{where}.backbone: expected a table of backbone-argument overrides")
    placement = Placement.from_mapping(space.name, [(n, choices[n]) for n in space.position_names], backbone)
    placement = space.validate(placement, where)
    description = spec.get("description", "")
    if not isinstance(description, str):
        raise UserError(f"{where}.description: expected a string")
    return NamedPlacement(pname, description, placement, _in_space(space, placement))
