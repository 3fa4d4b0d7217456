"""The ``arch.json`` document (its schema is described in :mod:`placement_search.architecture`):
the schema version and format, the file names of an exported folder, and reading and validating
a document into an :class:`Architecture`. Like all of it, needs torch alone: no study, Optuna or Ray.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ._version import __version__
from .cost import Cost
from .errors import UserError
from .placement import Placement
from .space import SearchSpace, space_from_dict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ARCH_FILE",
    "ARCH_FORMAT",
    "ARCH_SCHEMA_VERSION",
    "CARD_FILE",
    "CONVENTION",
    "WEIGHTS_FILE",
    "Architecture",
    "parse_architecture",
    "read_architecture",
]

ARCH_SCHEMA_VERSION = 1
ARCH_FORMAT = "placement-search architecture"
ARCH_FILE = "arch.json"
CARD_FILE = "MODEL_CARD.md"
WEIGHTS_FILE = "weights.safetensors"
CONVENTION = "MACs = multiply-adds of conv and linear layers at batch 1; FLOPs = 2 x MACs"


# -- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Architecture:
    """A validated ``arch.json`` (see :func:`read_architecture`).

    Attributes:
        path: the ``arch.json`` file.
        data: the whole document.
        space: the search space rebuilt from the document's space file text.
        placement: the placement, checked against the space.
    """

    path: Path
    data: dict[str, Any]
    space: SearchSpace
    placement: Placement

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def num_classes(self) -> int:
        """Classifier width the architecture was exported for (the study's target classes)."""
        return int(self.data["num_classes"])

    @property
    def input_shape(self) -> tuple[int, int, int, int, int]:
        """The target clip, ``(1, C, T, H, W)``."""
        i = self.data["input"]
        return (1, int(i["channels"]), int(i["frames"]), int(i["size"]), int(i["size"]))

    def build(self, num_classes: int | None = None) -> nn.Module:
        """The ``nn.Module``, randomly initialised."""
        return self.space.build(self.placement, num_classes=self.num_classes if num_classes is None else num_classes)

    def cost(self, num_classes: int | None = None) -> Cost:
        """Params, MACs and FLOPs at the target input, counted on the rebuilt model."""
        _, _, frames, size, _ = self.input_shape
        n = self.num_classes if num_classes is None else num_classes
        return self.space.cost(self.placement, frames=frames, size=size, num_classes=n)


def _field(table: Mapping[str, Any], key: str, kind: type, f: str, prefix: str = "") -> Any:
    """``table[key]``, required, of type ``kind`` (int excludes bool); errors name the file and field."""
    names = {dict: "an object", str: "a string", int: "an integer", list: "a list"}
    if key not in table:
        raise UserError(f"{f}: missing field {prefix + key!r} (expected {names.get(kind, kind.__name__)})")
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UserError(f"{f}: {prefix + key}: expected {names.get(kind, kind.__name__)}, got {value!r}")
    return value


def _positive_field(table: Mapping[str, Any], key: str, f: str, prefix: str = "") -> int:
    value = _field(table, key, int, f, prefix)
    if value < 1:
        raise UserError(f"{f}: {prefix + key}: expected a positive integer, got {value!r}")
    return int(value)


def read_architecture(path: str | Path) -> Architecture:
    """Read and validate an exported ``arch.json``.

    Args:
        path: the exported folder, or its ``arch.json``.

    Raises:
        UserError: naming the file and what is wrong: not JSON, an unknown schema version, a
            missing field, a space file that does not load, a placement that does not fit its space.
    """
    p = Path(path)
    file = p / ARCH_FILE if p.is_dir() else p
    if not file.is_file():
        if p.is_dir():
            raise UserError(
                f"{p}: no {ARCH_FILE} in this folder (expected a folder written by placement-search export)"
            )
        raise UserError(f"{p}: no such file or folder (expected an exported architecture folder or its {ARCH_FILE})")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{file}: cannot read the file: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{file}: not valid JSON ({e}); export the architecture again") from None
    return parse_architecture(data, file)


def parse_architecture(data: Any, file: str | Path = ARCH_FILE) -> Architecture:
    """Validate a parsed ``arch.json`` document (``file`` names it in errors)."""
    f = str(file)
    _check_schema(data, f)
    space = _space_of(data, f)
    placement = _placement_of(data, space, f)
    _check_classes_and_input(data, space, f)
    return Architecture(Path(file), data, space, placement)


def _check_schema(data: Any, f: str) -> None:
    """A JSON object of this schema version and format."""
    if not isinstance(data, dict):
        raise UserError(f"{f}: expected a JSON object, got {type(data).__name__}")
    if "schema_version" not in data:
        raise UserError(
            f"{f}: missing field 'schema_version' (expected {ARCH_SCHEMA_VERSION}); "
            "is this an arch.json written by placement-search export?"
        )
    version = data["schema_version"]
    if type(version) is not int or version != ARCH_SCHEMA_VERSION:
        newer = type(version) is int and version > ARCH_SCHEMA_VERSION
        raise UserError(
            f"{f}: schema_version: expected {ARCH_SCHEMA_VERSION}, got {version!r}"
            + (
                f" (written by a newer placement-search than {__version__}: upgrade it to load this file)"
                if newer
                else " (not an arch.json this version of placement-search can read)"
            )
        )
    fmt = _field(data, "format", str, f)
    if fmt != ARCH_FORMAT:
        raise UserError(f"{f}: format: expected {ARCH_FORMAT!r}, got {fmt!r}")


def _space_of(data: Mapping[str, Any], f: str) -> SearchSpace:
    """The search space rebuilt from the space file text the document carries."""
    space_table = _field(data, "space", dict, f)
    space_name = _field(space_table, "name", str, f, "space.")
    toml_text = _field(space_table, "toml", str, f, "space.")
    try:
        space_data = tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{f}: space.toml: not valid TOML: {e}") from None
    try:
        space = space_from_dict(space_data, None)
    except UserError as e:
        raise UserError(f"{f}: space.toml: {str(e).removeprefix('<space>: ')}") from None
    if space.name != space_name:
        raise UserError(f"{f}: space.name is {space_name!r} but space.toml defines space {space.name!r}")
    return space


def _placement_of(data: Mapping[str, Any], space: SearchSpace, f: str) -> Placement:
    """The placement, checked against the space, whose backbone must be the one the document names."""
    backbone_table = _field(data, "backbone", dict, f)
    backbone_name = _field(backbone_table, "name", str, f, "backbone.")
    backbone_args = _field(backbone_table, "args", dict, f, "backbone.")
    placement = Placement.from_dict(_field(data, "placement", dict, f), f"{f}: placement")
    placement = space.validate(placement, f"{f}: placement")
    backbone = space.backbone_for(placement, f"{f}: placement")
    expected_args = json.loads(json.dumps(backbone.args_dict()))
    if backbone_name != backbone.name or backbone_args != expected_args:
        raise UserError(
            f"{f}: backbone: {backbone_name!r} with args {backbone_args} does not match the backbone of space.toml "
            f"and the placement ({backbone.name!r} with args {expected_args})"
        )
    return placement


def _check_classes_and_input(data: Mapping[str, Any], space: SearchSpace, f: str) -> None:
    """A positive ``num_classes`` and an ``input`` the backbone takes."""
    _positive_field(data, "num_classes", f)
    inp = _field(data, "input", dict, f)
    channels = _positive_field(inp, "channels", f, "input.")
    for key in ("frames", "size"):
        _positive_field(inp, key, f, "input.")
    expected_channels = space.input_shape()[1]
    if channels != expected_channels:
        raise UserError(f"{f}: input.channels: the backbone takes {expected_channels}-channel clips, got {channels}")
