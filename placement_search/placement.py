"""Placements: one op kind (and temporal kernel size) per searchable position.

A :class:`Placement` is plain, frozen data. It is what the search produces, what the
builder reads and what the exporter writes; :meth:`Placement.to_json` and
:meth:`Placement.from_json` round-trip it exactly::

    {"schema_version": 1,
     "space": "resnet18",
     "positions": {"stem": {"op": "3d", "kt": 3},
                   "layer1.0.conv1": {"op": "2d"}, ...},
     "backbone": {"norm_scale": false}}          # optional

``backbone`` holds overrides of the space's backbone arguments. Searched placements never
have any; a few published models need them (DeepMind's I3D has batch norm without a
scale, S3D-G adds feature gating), so the named placements that reproduce them carry them.

Choices are written as short tokens on the command line and in space files: ``2d``,
``3d``, ``sep``, ``2plus1d``, optionally with a temporal kernel size, ``3d:5``. A token
without ``:kt`` takes the position's default temporal kernel size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import UserError
from .ops import OP_KINDS, check_kind

__all__ = ["PLACEMENT_SCHEMA_VERSION", "Choice", "Placement", "parse_choice_token", "placement_key"]

PLACEMENT_SCHEMA_VERSION = 1


@dataclass(frozen=True, order=True)
class Choice:
    """The op at one position: its kind and temporal kernel size (1 for ``2d``)."""

    op: str
    kt: int = 1

    def __post_init__(self) -> None:
        check_kind(self.op)
        if self.op == "2d" and self.kt != 1:
            raise UserError(f"op '2d' has no temporal kernel, got kt={self.kt}")
        if self.kt < 1 or self.kt % 2 == 0:
            raise UserError(f"temporal kernel size must be an odd integer >= 1, got kt={self.kt}")

    @property
    def temporal(self) -> bool:
        return self.op != "2d"

    def token(self, default_kt: int | None = None) -> str:
        """Short form: ``3d`` when ``kt`` is the position default, else ``3d:5``."""
        if self.op == "2d" or self.kt == default_kt:
            return self.op
        return f"{self.op}:{self.kt}"

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op} if self.op == "2d" else {"op": self.op, "kt": self.kt}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Choice:
        if not isinstance(data, Mapping):
            raise UserError(f'{where}: expected an object like {{"op": "3d", "kt": 3}}, got {data!r}')
        extra = set(data) - {"op", "kt"}
        if extra:
            raise UserError(f"{where}: unknown field(s) {sorted(extra)}; allowed fields are 'op', 'kt'")
        op = data.get("op")
        if not isinstance(op, str):
            raise UserError(f"{where}.op: expected one of {sorted(OP_KINDS)}, got {op!r}")
        check_kind(op, f"{where}.op")
        kt = data.get("kt", 1)
        if not isinstance(kt, int) or isinstance(kt, bool):
            raise UserError(f"{where}.kt: expected an odd integer, got {kt!r}")
        try:
            return cls(op, kt)
        except UserError as e:
            raise UserError(f"{where}: {e}") from None


def parse_choice_token(token: str, default_kt: int, where: str) -> Choice:
    """Parse ``2d``, ``sep`` or ``3d:5`` into a :class:`Choice`."""
    op, _, kt_text = token.strip().partition(":")
    if op not in OP_KINDS:
        known = ", ".join(repr(k) for k in OP_KINDS)
        raise UserError(f"{where}: unknown op kind {op!r} in {token!r}; known kinds are {known} (optionally 'KIND:KT')")
    if op == "2d":
        if kt_text and kt_text != "1":
            raise UserError(f"{where}: op '2d' takes no temporal kernel size, got {token!r}")
        return Choice("2d", 1)
    if kt_text:
        try:
            kt = int(kt_text)
        except ValueError:
            raise UserError(f"{where}: temporal kernel size in {token!r} must be an integer") from None
    else:
        kt = default_kt
    try:
        return Choice(op, kt)
    except UserError as e:
        raise UserError(f"{where}: {e}") from None


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class Placement:
    """One :class:`Choice` per searchable position of a space, in network order."""

    space: str
    choices: tuple[tuple[str, Choice], ...]
    backbone: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_mapping(
        cls,
        space: str,
        choices: Mapping[str, Choice] | Iterable[tuple[str, Choice]],
        backbone: Mapping[str, Any] | None = None,
    ) -> Placement:
        items = choices.items() if isinstance(choices, Mapping) else choices
        overrides = tuple((k, _freeze(v)) for k, v in (backbone or {}).items())
        return cls(space, tuple((str(k), v) for k, v in items), overrides)

    def as_dict(self) -> dict[str, Choice]:
        return dict(self.choices)

    def __getitem__(self, position: str) -> Choice:
        for name, choice in self.choices:
            if name == position:
                return choice
        raise KeyError(position)

    @property
    def positions(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.choices)

    def backbone_overrides(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.backbone}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": PLACEMENT_SCHEMA_VERSION,
            "space": self.space,
            "positions": {name: c.to_dict() for name, c in self.choices},
        }
        if self.backbone:
            out["backbone"] = self.backbone_overrides()
        return out

    def to_json(self, *, indent: int | None = None) -> str:
        """Canonical JSON: same placement, same string (positions stay in network order)."""
        if indent is None:
            return json.dumps(self.to_dict(), separators=(",", ":"))
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any, where: str = "placement") -> Placement:
        if not isinstance(data, Mapping):
            raise UserError(f"{where}: expected a JSON object, got {type(data).__name__}")
        extra = set(data) - {"schema_version", "space", "positions", "backbone"}
        if extra:
            raise UserError(
                f"{where}: unknown field(s) {sorted(extra)}; allowed are 'schema_version', 'space', 'positions', 'backbone'"
            )
        version = data.get("schema_version")
        if type(version) is not int or version != PLACEMENT_SCHEMA_VERSION:
            raise UserError(
                f"{where}.schema_version: expected {PLACEMENT_SCHEMA_VERSION}, got {version!r}"
                " (this placement was written by an incompatible version)"
            )
        space = data.get("space")
        if not isinstance(space, str) or not space:
            raise UserError(f"{where}.space: expected the space name as a string, got {space!r}")
        positions = data.get("positions")
        if not isinstance(positions, Mapping) or not positions:
            raise UserError(f"{where}.positions: expected a non-empty object of position -> {{op, kt}}")
        backbone = data.get("backbone", {})
        if not isinstance(backbone, Mapping):
            raise UserError(f"{where}.backbone: expected an object of backbone-argument overrides, got {backbone!r}")
        return cls.from_mapping(
            space,
            [(name, Choice.from_dict(value, f"{where}.positions[{name!r}]")) for name, value in positions.items()],
            backbone,
        )

    @classmethod
    def from_json(cls, text: str, where: str = "placement") -> Placement:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: not valid JSON ({e})") from None
        return cls.from_dict(data, where)


def placement_key(placement: Placement | Mapping[str, Any]) -> str:
    """The canonical key of a placement (or of its stored JSON object): key-sorted, compact
    JSON. Two trials with the same key trained the same network; every comparison of stored
    placements (dedup, resume, figures, export) goes through this one function."""
    data = placement.to_dict() if isinstance(placement, Placement) else placement
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
