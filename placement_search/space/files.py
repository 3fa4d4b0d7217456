"""Reading and validating space files (the format: see :mod:`placement_search.space`), and
the shipped ``search_spaces/``."""

from __future__ import annotations

import fnmatch
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..backbones import get_backbone, parse_args
from ..errors import UserError
from ..ops import OP_KINDS
from ..placement import Choice, Placement, parse_choice_token
from .model import Group, NamedPlacement, SearchSpace

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "SPACE_SCHEMA_VERSION",
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
    here = Path(__file__).resolve().parents[1]  # the package folder, above this subpackage
    for candidate in (here.parent / "search_spaces", here / "search_spaces"):
        if candidate.is_dir():
            return candidate
    return here.parent / "search_spaces"


def list_spaces() -> list[str]:
    return sorted(p.stem for p in builtin_spaces_dir().glob("*.toml"))


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
